"""The study's time left: from its finished runs, per model, else per architecture; unknown models
named, not guessed; batched groups and workers shared out."""

import pytest

from distillbench.study.plan import RunSpec
from distillbench.study.progress import TimeLeft, duration_text, run_seconds


def _runs(seeds: int = 3) -> list[RunSpec]:
    return [
        RunSpec(model, seed, "f", teachers, arch)
        for seed in range(seeds)
        for model, teachers, arch in (
            ("small_cnn", (), "small_cnn"),
            ("resnet50", (), "resnet50"),
            ("kd_resnet50", ("resnet50",), "small_cnn"),
        )
    ]


def test_the_estimate_follows_the_finished_runs():
    runs = _runs()
    now = [0.0]
    left = TimeLeft(runs, clock=lambda: now[0])
    assert left.estimate() == (0.0, ["small_cnn", "resnet50", "kd_resnet50"])
    assert "known once a run of each model has finished" in left.line()

    left.finished(runs[0], 60.0)  # small_cnn seed 0: the student is estimated from its architecture
    assert left.estimate() == (2 * 60.0 + 3 * 60.0, ["resnet50"])
    left.finished(runs[1], 600.0)
    left.finished(runs[2], 90.0)
    now[0] = 750.0
    assert left.estimate() == (2 * 60.0 + 2 * 600.0 + 2 * 90.0, [])
    assert left.estimate(workers=2) == ((2 * 60.0 + 2 * 600.0 + 2 * 90.0) / 2, [])
    assert left.line() == "study: 6 run(s) left, about 25m; 12m so far"

    for run in runs[3:]:
        left.finished(run, 1.0)
    assert left.line() == ""


def test_started_runs_count_once_they_finish():
    runs = _runs(seeds=1)
    left = TimeLeft(runs)
    left.started_run(runs[0])
    left.look(lambda run: None)  # still training
    assert left.estimate()[1] == ["small_cnn", "resnet50", "kd_resnet50"]
    left.look(lambda run: 42.0)
    assert left.seconds == {("small_cnn", 0): 42.0} and left.started == []


def test_a_run_costs_its_share_of_its_group():
    assert run_seconds({"train_seconds": 30.0, "prepare_seconds": 6.0, "trained_with": None}) == 36.0
    assert run_seconds({"train_seconds": 30.0, "prepare_seconds": 6.0, "trained_with": ["a", "b", "c"]}) == 12.0


@pytest.mark.parametrize(("seconds", "text"), [(4.4, "4s"), (59.0, "59s"), (61.0, "1m"), (3900.0, "1h05m")])
def test_durations_read_as_a_person_says_them(seconds, text):
    assert duration_text(seconds) == text
