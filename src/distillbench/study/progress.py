"""How long the rest of a study will take, said before each run it trains.

The estimate comes from the runs that have finished: a run left is expected to take as long as the
mean of its model's finished runs (any seed, of this session or an earlier one: a resumed study
knows its models' durations before it trains anything), else of the finished runs of its
architecture (a KD student costs about what the small CNN does). A model with neither is named as
not timed yet rather than guessed; its first run fills the gap. A run's duration is its training
and preparation seconds (run.json), divided among the runs of its batched group, which trained in
the same seconds. With several worker processes the runs left share them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from distillbench.study.plan import RunKey, RunSpec


def run_seconds(record: Mapping[str, Any]) -> float:
    """What one finished run cost, from its run.json: training and preparation, divided among the
    runs of its batched group (``trained_with``)."""
    seconds = float(record.get("train_seconds") or 0.0) + float(record.get("prepare_seconds") or 0.0)
    return seconds / max(1, len(record.get("trained_with") or ()))


def duration_text(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``: a duration as a person reads it."""
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{seconds:.0f}s"
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class TimeLeft:
    """The runs of one plan, the seconds of those finished, and the estimate of the rest."""

    def __init__(self, runs: Iterable[RunSpec], clock: Callable[[], float] = time.monotonic):
        self.runs = list(runs)
        self.seconds: dict[RunKey, float] = {}
        self.started: list[RunSpec] = []  # runs sent to train, not yet seen finished
        self.clock, self.since = clock, clock()

    def finished(self, run: RunSpec, seconds: float) -> None:
        self.seconds[run.key] = seconds

    def started_run(self, run: RunSpec) -> None:
        self.started.append(run)

    def look(self, seconds_if_finished: Callable[[RunSpec], float | None]) -> None:
        """Note the started runs that have finished since (``seconds_if_finished``: None while not)."""
        for run in list(self.started):
            seconds = seconds_if_finished(run)
            if seconds is not None:
                self.finished(run, seconds)
                self.started.remove(run)

    def estimate(self, workers: int = 1) -> tuple[float, list[str]]:
        """Seconds the unfinished runs should take on ``workers`` processes, and the models of runs
        that cannot be estimated yet."""
        by_model: dict[str, list[float]] = {}
        by_arch: dict[str, list[float]] = {}
        for run in self.runs:
            if run.key in self.seconds:
                by_model.setdefault(run.model, []).append(self.seconds[run.key])
                by_arch.setdefault(run.arch, []).append(self.seconds[run.key])
        total, unknown = 0.0, []
        for run in self.runs:
            if run.key not in self.seconds:
                known = by_model.get(run.model) or (by_arch.get(run.arch) if run.arch is not None else None)
                if known:
                    total += statistics.fmean(known)
                elif run.model not in unknown:
                    unknown.append(run.model)
        return total / max(1, workers), unknown

    def line(self, workers: int = 1) -> str:
        """``study: 12 run(s) left, about 40m (+ vgg16's, not timed yet); 5m so far``; '' when none is left."""
        left = sum(run.key not in self.seconds for run in self.runs)
        if not left:
            return ""
        seconds, unknown = self.estimate(workers)
        if len(unknown) == len({run.model for run in self.runs if run.key not in self.seconds}):
            guess = "time left known once a run of each model has finished"
        else:
            guess = f"about {duration_text(seconds)}"
            guess += f" (+ {', '.join(unknown)}: not timed yet)" if unknown else ""
        return f"study: {left} run(s) left, {guess}; {duration_text(self.clock() - self.since)} so far"
