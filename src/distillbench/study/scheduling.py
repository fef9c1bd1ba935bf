"""The order in which a plan's runs train, shared by every executor (in-process, worker processes,
Ray tasks): each run as soon as its teachers are done, earliest in the plan first, optionally
gathered into batched groups of runs that can train as one model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from distillbench.study.plan import Plan, RunKey, RunSpec
from distillbench.study.recipe import Recipes

Unit = list[RunSpec]  # what one executor slot trains at once: a run, or a batched group of runs
Grouping = Callable[[list[RunSpec]], list[Unit]]


def batch_groups(runs: Iterable[RunSpec], recipes: Recipes) -> list[Unit]:
    """``runs`` gathered into groups that can train as one batched model: runs whose recipes have
    the same ``group_key`` (architecture and settings apart from teachers, title and method); plan
    order kept, within and across groups. A feature method's run is a unit of its own: its loop
    needs the stages of its own network, which a batched model does not have."""
    groups: dict[str, Unit] = {}
    for run in runs:
        method = recipes[run.model].method
        alone = method is not None and method.needs_features
        groups.setdefault(f"alone:{run.model}:{run.seed}" if alone else recipes[run.model].group_key(), []).append(run)
    return list(groups.values())


def grouping_for(recipes: Recipes, batched: bool) -> Grouping | None:
    """The grouping ``perf.batched`` asks for: batched groups, or None (one run per unit)."""
    return (lambda runs: batch_groups(runs, recipes)) if batched else None


class Scheduler:
    """The order in which runs train: each as soon as its teachers are done, earliest in the plan
    first (so without batching, seed by seed). ``begin(run)`` judges a run when it becomes ready
    (its teachers are final by then) and says whether it needs training; ``grouping`` (batched
    groups) gathers every ready run that does into units, one unit per run otherwise."""

    def __init__(self, plan: Plan, begin: Callable[[RunSpec], bool], grouping: Grouping | None = None):
        self.plan, self.begin, self.grouping = plan, begin, grouping
        self.done: set[RunKey] = set()
        self.training: set[RunKey] = set()
        self.to_train: list[RunSpec] = []  # judged, waiting for a slot (batched mode)

    @property
    def finished(self) -> bool:
        return len(self.done) == len(self.plan.runs)

    @property
    def left(self) -> int:
        return len(self.plan.runs) - len(self.done)

    def next_unit(self) -> Unit | None:
        """The next unit to train, or None while nothing more is ready."""
        while self._judge_ready():
            pass
        if not self.to_train:
            return None
        unit = self.grouping(self.to_train)[0] if self.grouping is not None else self.to_train[:1]
        keys = {run.key for run in unit}
        self.to_train = [run for run in self.to_train if run.key not in keys]
        self.training |= keys
        return unit

    def _judge_ready(self) -> bool:
        """Judge the runs that became ready; whether to look again (a skipped run may have made its
        students ready). Without grouping one run is judged at a time, so the log follows the
        training order."""
        waiting = {run.key for run in self.to_train}
        fresh = [run for run in self.plan.ready(self.done) if run.key not in self.training | waiting]
        if self.grouping is None:
            fresh = fresh[:1]
        for run in fresh:
            if self.begin(run):
                self.to_train.append(run)
            else:
                self.done.add(run.key)
        return bool(fresh) and not (self.grouping is None and self.to_train)

    def completed(self, unit: Unit) -> None:
        for run in unit:
            self.training.discard(run.key)
            self.done.add(run.key)

    def seed_complete(self, seed: int) -> bool:
        return all(run.key in self.done for run in self.plan.runs if run.seed == seed)

    def check_finished(self) -> None:
        """Raise if runs are left once nothing more is ready: it cannot happen with a valid plan
        (every teacher is in it), so it is a bug, not a user's error."""
        if not self.finished:
            raise RuntimeError("runs are left whose teachers are not in the plan")
