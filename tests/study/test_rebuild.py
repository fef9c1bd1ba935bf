"""A stored study rebuilds to the same results.json and report.md (the contract of `report`)."""

import json
import math
import shutil
from pathlib import Path

from distillbench.cli import main

STORED = Path(__file__).parent.parent / "fixtures" / "stored_study"


def _same(rebuilt, stored, where="results"):
    """Equal, floats to 1e-12 relative: numpy's sums round in an order that depends on the CPU's SIMD
    width (a last-bit difference on another machine), never on our code."""
    if isinstance(stored, float) and isinstance(rebuilt, float):
        assert math.isclose(rebuilt, stored, rel_tol=1e-12, abs_tol=1e-15), (where, rebuilt, stored)
    elif isinstance(stored, dict):
        assert isinstance(rebuilt, dict) and list(rebuilt) == list(stored), where
        for key in stored:
            _same(rebuilt[key], stored[key], f"{where}.{key}")
    elif isinstance(stored, list):
        assert isinstance(rebuilt, list) and len(rebuilt) == len(stored), where
        for index, (mine, theirs) in enumerate(zip(rebuilt, stored)):
            _same(mine, theirs, f"{where}[{index}]")
    else:
        assert rebuilt == stored, (where, rebuilt, stored)


def test_stored_study_rebuilds_identically(tmp_path):
    study = tmp_path / "study"
    shutil.copytree(STORED, study)
    (study / "results.json").unlink()
    (study / "report.md").unlink()
    assert main(["report", str(study)]) == 0
    _same(json.loads((study / "results.json").read_text()), json.loads((STORED / "results.json").read_text()))
    assert (study / "report.md").read_text() == (STORED / "report.md").read_text()
    assert (study / "report.html").stat().st_size > 0 and list((study / "figures").glob("*.png"))


def test_stored_runs_are_judged_finished(tmp_path):
    results = json.loads((STORED / "results.json").read_text())
    assert results["study"]["finished"] == ["small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble"]
    assert results["study"]["stale_runs"] == [] and results["study"]["unfinished_runs"] == []
    assert set(results["models"]) == set(results["study"]["finished"])
