"""A stored study rebuilds to the same results.json and report.md (the contract of `report`)."""

import json
import shutil
from pathlib import Path

from distillbench.cli import main

STORED = Path(__file__).parent.parent / "fixtures" / "stored_study"


def test_stored_study_rebuilds_identically(tmp_path):
    study = tmp_path / "study"
    shutil.copytree(STORED, study)
    (study / "results.json").unlink()
    (study / "report.md").unlink()
    assert main(["report", str(study)]) == 0
    rebuilt = json.loads((study / "results.json").read_text())
    assert rebuilt == json.loads((STORED / "results.json").read_text())
    assert (study / "results.json").read_bytes() == (STORED / "results.json").read_bytes()
    assert (study / "report.md").read_text() == (STORED / "report.md").read_text()
    assert (study / "report.html").stat().st_size > 0 and list((study / "figures").glob("*.png"))


def test_stored_runs_are_judged_finished(tmp_path):
    results = json.loads((STORED / "results.json").read_text())
    assert results["study"]["finished"] == ["small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble"]
    assert results["study"]["stale_runs"] == [] and results["study"]["unfinished_runs"] == []
    assert set(results["models"]) == set(results["study"]["finished"])
