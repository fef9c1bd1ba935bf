"""The store: a run is finished once its predictions are written (last); identities judge it."""

import hashlib
import json
import re

import numpy as np
import pytest
import torch

from distillbench.errors import UserError
from distillbench.study import store as store_module
from distillbench.study.plan import RunSpec
from distillbench.study.store import RunCheckpoints, RunStore, encode_checkpoint


def _save(store: RunStore, run: RunSpec, weight: float = 1.0, parts: bytes | None = None, **record) -> None:
    fields = {"model": run.model, "seed": run.seed, "fingerprint": run.fingerprint, "teachers": list(run.teachers),
              "teacher_checkpoints": {}, "arch": "small_cnn", "weights": None, "params": 2, "trainable_params": 2,
              "epochs_trained": 2, "best_epoch": 1, "train_seconds": 0.1}  # fmt: skip
    store.save(
        run.model,
        run.seed,
        checkpoints=RunCheckpoints(encode_checkpoint({"w": torch.full((2,), weight)}), parts),
        history=[{"epoch": 1, "loss": 0.5, "val_accuracy": 0.25}, {"epoch": 2, "loss": 0.4, "val_accuracy": 0.75}],
        record={**fields, **record},
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
    assert saved.class_names == ["a", "b"] and saved.history[0] == {"epoch": 1, "loss": 0.5, "val_accuracy": 0.25}
    assert store.kept_val_accuracy("teacher", 0) == 0.25  # the best epoch's (1), not the last
    folder = tmp_path / "runs" / "teacher" / "seed-0"
    for name, field in (("model.pt", "checkpoint_sha256"), ("history.csv", "history_sha256"),
                        ("predictions.npz", "predictions_sha256")):  # fmt: skip
        assert saved.record[field] == hashlib.sha256((folder / name).read_bytes()).hexdigest(), name
    content = {k: v for k, v in saved.record.items() if k != "record_sha256"}
    canonical = json.dumps(content, sort_keys=True).encode()
    assert saved.record["record_sha256"] == hashlib.sha256(canonical).hexdigest()
    weights, digest = store.load_weights("teacher", 0, torch.device("cpu"))
    assert torch.equal(weights["w"], torch.ones(2)) and digest == saved.record["checkpoint_sha256"]


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


def test_a_damaged_checkpoint_is_never_loaded(tmp_path):
    """A checkpoint is verified against its run.json whenever it is loaded; ``run`` judges the run
    stale (it loads checkpoints), ``report`` still shows its verified results."""
    store = RunStore(tmp_path)
    _save(store, TEACHER)
    path = tmp_path / "runs" / "teacher" / "seed-0" / "model.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"model\.pt does not match the sha256 in its run\.json .*retrains teacher"):
        store.load_weights("teacher", 0, torch.device("cpu"))
    assert store.state(TEACHER) == ("finished", None)
    state, why = store.state(TEACHER, checkpoint=True)
    assert state == "stale" and "model.pt does not match its checksum" in why


def _flip_byte(path, where=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_record(path, change):
    record = json.loads(path.read_text())
    path.write_text(json.dumps(change(record)))


DAMAGE = {
    "predictions truncated": ("predictions.npz", lambda p: p.write_bytes(p.read_bytes()[:100]), "predictions.npz"),
    "predictions flipped": ("predictions.npz", _flip_byte, "predictions.npz does not match its checksum"),
    "run.json cut": ("run.json", lambda p: p.write_text(p.read_text()[:-40]), "run.json is unreadable"),
    "run.json key flipped": (
        "run.json", lambda p: p.write_text(p.read_text().replace('"best_epoch"', '"bezt_epoch"')), "lacks best_epoch"
    ),
    "run.json not a mapping": ("run.json", lambda p: p.write_text("[1, 2]"), "holds a list"),
    "run.json value edited": (
        "run.json", lambda p: _edit_record(p, lambda r: {**r, "best_epoch": 2}), "run.json does not match"
    ),
    "run.json holding NaN": ("run.json", lambda p: p.write_text(p.read_text().replace('"best_epoch": 1', '"best_epoch": NaN')), "run.json does not match"),
    "history cut mid-row": ("history.csv", lambda p: p.write_text(p.read_text()[:-7]), "history.csv does not match"),
    "history digit changed": (
        "history.csv", lambda p: p.write_text(p.read_text().replace("0.75", "0.95")), "history.csv does not match"
    ),
}  # fmt: skip


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_run_whose_files_do_not_verify_is_stale_and_unread(tmp_path, damage):
    store = RunStore(tmp_path)
    _save(store, TEACHER)
    student = _student(store)
    name, change, problem = DAMAGE[damage]
    change(tmp_path / "runs" / "teacher" / "seed-0" / name)
    state, why = store.state(TEACHER)
    assert state == "stale" and why.startswith("its files do not verify") and problem in why, why
    assert store.record("teacher", 0) is None and store.load("teacher", 0) is None
    # Its student is stale too: the teacher it distilled no longer verifies.
    assert store.state(student)[0] == "stale"


def test_record_of_an_unfinished_run_is_none(tmp_path):
    store = RunStore(tmp_path)
    _save(store, TEACHER)
    assert json.loads((tmp_path / "runs" / "teacher" / "seed-0" / "run.json").read_text())["model"] == "teacher"
    (tmp_path / "runs" / "teacher" / "seed-0" / "predictions.npz").unlink()
    assert store.record("teacher", 0) is None


@pytest.mark.parametrize(
    "plan, problem",
    [
        ("[1]", "holds a list"),
        ('{"format": 1, "config_sha256": "{sha}", "runs": [{"seed": 0}]}', "is damaged (KeyError"),
        (
            '{"format": 1, "config_sha256": "{sha}", "runs": [{"model": "../../x", "seed": 0, "fingerprint": "f", '
            '"teachers": []}]}',
            "'../../x' is not a valid name",
        ),
        (
            '{"format": 1, "config_sha256": "{sha}", "runs": [{"model": "m", "seed": 0, "fingerprint": "../x", '
            '"teachers": []}]}',
            "'../x' is not a valid name",
        ),
    ],
    ids=["not a mapping", "a key missing", "a path for a model", "a path for a fingerprint"],
)
def test_a_damaged_or_hostile_plan_is_a_clear_error(tmp_path, plan, problem):
    (tmp_path / "config.yaml").write_text("seeds: [0]\n")
    sha = hashlib.sha256(b"seeds: [0]\n").hexdigest()
    (tmp_path / "plan.json").write_text(plan.replace("{sha}", sha))
    with pytest.raises(UserError, match=re.escape(problem)):
        RunStore(tmp_path).read_plan()


@pytest.mark.parametrize("pool", ["/tmp/elsewhere/runs", "../../../runs", "../../runs"])
def test_a_plan_cannot_point_its_pool_outside_its_sweep(tmp_path, pool):
    """A sweep's point keeps its runs in ../../runs beside the sweep's sweep.yaml, and nowhere else:
    a plan.json naming another pool (or this one, without a sweep around it) is refused."""
    point = tmp_path / "sweep" / "points" / "p"
    point.mkdir(parents=True)
    (point / "config.yaml").write_text("seeds: [0]\n")
    sha = hashlib.sha256(b"seeds: [0]\n").hexdigest()
    (point / "plan.json").write_text(json.dumps({"format": 1, "config_sha256": sha, "pool": pool, "runs": []}))
    with pytest.raises(UserError, match="as its sweep's pool of runs"):
        RunStore(point).read_plan()
    if pool == "../../runs":  # with the sweep around it, the one right place is accepted
        (tmp_path / "sweep" / "sweep.yaml").write_text("seeds: [0]\n")
        store = RunStore(point)
        assert store.read_plan() == [] and store.pool == tmp_path / "sweep" / "runs"


def test_learned_parts_are_saved_verified_carried_and_never_left_behind(tmp_path):
    store = RunStore(tmp_path)
    parts = encode_checkpoint({"conv.weight": torch.ones(3)})
    _save(store, TEACHER, parts=parts)
    paths = store.paths("teacher", 0)
    assert paths.distill_parts.read_bytes() == parts
    assert store.record("teacher", 0)["distill_parts_sha256"] == hashlib.sha256(parts).hexdigest()
    files = store.export_run("teacher", 0)
    assert files["distill_parts.pt"] == parts

    elsewhere = RunStore(tmp_path / "elsewhere")  # a worker's files, written where the study is
    elsewhere.import_run("teacher", 0, files)
    assert elsewhere.verify("teacher", 0, checkpoint=True).record is not None
    elsewhere.paths("teacher", 0).distill_parts.write_bytes(b"damaged")
    assert "distill_parts.pt does not match" in elsewhere.verify("teacher", 0, checkpoint=True).problem
    assert elsewhere.verify("teacher", 0).record is not None  # report needs the results only

    _save(store, TEACHER)  # retrained by a method without learned parts: the old parts file goes
    assert not paths.distill_parts.exists() and "distill_parts.pt" not in store.export_run("teacher", 0)
    assert "distill_parts_sha256" not in store.record("teacher", 0)
    elsewhere.import_run("teacher", 0, store.export_run("teacher", 0))
    assert not elsewhere.paths("teacher", 0).distill_parts.exists()
