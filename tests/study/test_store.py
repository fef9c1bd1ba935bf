"""The store: a run is finished once its predictions are written (last); identities judge it."""

import json

import numpy as np
import pytest
import torch

from distillbench.errors import UserError
from distillbench.study import store as store_module
from distillbench.study.plan import RunSpec
from distillbench.study.store import RunStore, encode_checkpoint


def _save(store: RunStore, run: RunSpec, weight: float = 1.0, **record) -> None:
    store.save(
        run.model,
        run.seed,
        checkpoint=encode_checkpoint({"w": torch.full((2,), weight)}),
        history=[{"epoch": 1, "loss": 0.5}],
        record={"model": run.model, "fingerprint": run.fingerprint, **record},
        test_logits=np.array([[0.0, 1.0], [2.0, 0.0]], dtype=np.float32),
        test_labels=np.array([1, 1]),
        class_names=("a", "b"),
    )


TEACHER = RunSpec("teacher", 0, "fp-teacher", (), "small_cnn")


def _student(store: RunStore) -> RunSpec:
    student = RunSpec("student", 0, "fp-student", ("teacher",), "small_cnn")
    _save(store, student, teacher_checkpoints={"teacher": store.checkpoint_sha256("teacher", 0)})
    return student


def test_saved_run_reads_back(tmp_path):
    store = RunStore(tmp_path)
    assert store.state(TEACHER) == ("missing", None) and store.load("teacher", 0) is None
    _save(store, TEACHER)
    assert store.state(TEACHER) == ("finished", None)
    saved = store.load("teacher", 0)
    np.testing.assert_array_equal(saved.correct, [True, False])
    assert saved.class_names == ["a", "b"] and saved.history == [{"epoch": 1, "loss": 0.5}]
    checkpoint = (tmp_path / "runs" / "teacher" / "seed-0" / "model.pt").read_bytes()
    assert saved.record["checkpoint_sha256"] == store_module.sha256_hex(checkpoint)
    assert torch.equal(store.load_weights("teacher", 0, torch.device("cpu"))["w"], torch.ones(2))


def test_predictions_are_written_last(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    real = store_module.write_bytes

    def fail_on_predictions(path, data):
        if path.name == "predictions.npz":
            raise KeyboardInterrupt  # killed just before the last file
        real(path, data)

    monkeypatch.setattr(store_module, "write_bytes", fail_on_predictions)
    with pytest.raises(KeyboardInterrupt):
        _save(store, TEACHER)
    assert (tmp_path / "runs" / "teacher" / "seed-0" / "run.json").is_file()
    assert store.state(TEACHER) == ("missing", None)


def test_start_makes_a_finished_run_unfinished(tmp_path):
    store = RunStore(tmp_path)
    _save(store, TEACHER)
    store.start("teacher", 0)
    assert store.state(TEACHER) == ("missing", None)


def test_stale_when_the_fingerprint_or_a_teacher_checkpoint_differs(tmp_path):
    store = RunStore(tmp_path)
    _save(store, TEACHER)
    student = _student(store)
    assert store.state(student) == ("finished", None)
    assert store.state(RunSpec("teacher", 0, "fp-other", ())) == ("stale", "trained with a different configuration")
    _save(store, TEACHER, weight=2.0)  # the teacher retrained to other weights
    state, why = store.state(student)
    assert state == "stale" and "retrained after it" in why


def test_plan_round_trip_and_edited_config(tmp_path):
    store = RunStore(tmp_path)
    (tmp_path / "config.yaml").write_text("seeds: [0]\n")
    store.write_plan("seeds: [0]\n", [TEACHER])
    assert store.read_plan() == [TEACHER]
    (tmp_path / "config.yaml").write_text("seeds: [1]\n")
    with pytest.raises(UserError, match="is not the config that .*plan.json was made from"):
        store.read_plan()


def test_unreadable_checkpoint_says_how_to_retrain(tmp_path):
    store = RunStore(tmp_path)
    _save(store, TEACHER)
    (tmp_path / "runs" / "teacher" / "seed-0" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"delete .*seed-0 and run again to retrain teacher \(seed 0\)"):
        store.load_weights("teacher", 0, torch.device("cpu"))


def test_record_of_an_unfinished_run_is_none(tmp_path):
    store = RunStore(tmp_path)
    _save(store, TEACHER)
    assert json.loads((tmp_path / "runs" / "teacher" / "seed-0" / "run.json").read_text())["model"] == "teacher"
    (tmp_path / "runs" / "teacher" / "seed-0" / "predictions.npz").unlink()
    assert store.record("teacher", 0) is None
