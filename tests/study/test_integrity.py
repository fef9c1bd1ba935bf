"""No way in through a study directory: damaged files are never used, one writer at a time, hostile
names and titles stay text, and what the operating system refuses is one paragraph, never a traceback."""

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F

from distillbench import atomic
from distillbench.cli import main
from distillbench.data.cifar10 import META_FILE
from distillbench.data.synthetic import dumps_py2
from distillbench.errors import UserError
from distillbench.study.runner import WRITE_PROBE_BYTES, _check_writable
from tests.conftest import study_args

# A small-CNN teacher and its KD student: the smallest study with a teacher's checkpoint in use.
TINY = ["models=[kd_small]", "zoo.kd_small={arch: small_cnn, lr: 0.003, teachers: [small_cnn], title: KD small}",
        "data.train_limit=300", "data.val_size=60", "data.test_limit=100", "train.epochs=2", "comparisons=[]",
        "evaluation.efficiency=false", "evaluation.kd_reference=kd_small"]  # fmt: skip


def _args(cifar_dir, weight_files, cache, out, *sets):
    return study_args(cifar_dir, weight_files, cache, out, *TINY, *sets)


def _run_dir(out, key, seed=0):
    return out / "runs" / key / f"seed-{seed}"


def _logits(out, key):
    with np.load(_run_dir(out, key) / "predictions.npz") as saved:
        return saved["logits"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, cifar_dir, weight_files):
    """The tiny study, finished once; tests damage copies of it."""
    root = tmp_path_factory.mktemp("tiny")
    out = root / "study"
    assert main(_args(cifar_dir, weight_files, root / "cache", out)) == 0
    return out


@pytest.fixture
def study_copy(tiny_study, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(tiny_study, out)
    return out


def test_a_damaged_teacher_checkpoint_is_retrained_never_distilled(
    study_copy, tiny_study, tmp_path, cifar_dir, weight_files, capsys
):
    """64 KB flipped in the teacher's model.pt and the student's predictions gone (as after a crash):
    the teacher is retrained (same config, same arithmetic: the same weights) and the student distils
    the retrained teacher, recording the hash of the file it read."""
    model = _run_dir(study_copy, "small_cnn") / "model.pt"
    with open(model, "r+b") as handle:
        handle.seek(200_000)
        handle.write(bytes(65_536))
    (_run_dir(study_copy, "kd_small") / "predictions.npz").unlink()
    capsys.readouterr()
    assert main(_args(cifar_dir, weight_files, tmp_path / "cache", study_copy)) == 0
    log = capsys.readouterr().out
    assert "small_cnn (retraining: its files do not verify: model.pt does not match its checksum" in log
    record = json.loads((_run_dir(study_copy, "kd_small") / "run.json").read_text())
    assert record["teacher_checkpoints"]["small_cnn"] == hashlib.sha256(model.read_bytes()).hexdigest()
    np.testing.assert_array_equal(_logits(study_copy, "kd_small"), _logits(tiny_study, "kd_small"))


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {
    "predictions.npz truncated": ("predictions.npz", lambda p: p.write_bytes(p.read_bytes()[:300])),
    "predictions.npz flipped": ("predictions.npz", _flip),
    "run.json key flipped": ("run.json", lambda p: p.write_text(p.read_text().replace('"best_epoch"', '"best_epocH"'))),
    "run.json not a mapping": ("run.json", lambda p: p.write_text('"a string"')),
    "history.csv cut mid-row": ("history.csv", lambda p: p.write_text(p.read_text()[:-9])),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_run_whose_files_do_not_verify_is_listed_by_report_and_retrained_by_run(
    study_copy, tiny_study, tmp_path, cifar_dir, weight_files, capsys, damage
):
    name, change = DAMAGE[damage]
    change(_run_dir(study_copy, "kd_small") / name)
    assert main(["report", str(study_copy)]) == 0
    stale = json.loads((study_copy / "results.json").read_text())["study"]["stale_runs"]
    assert len(stale) == 1 and stale[0].startswith("kd_small seed 0 (its files do not verify: "), stale
    assert "kd_small" not in json.loads((study_copy / "results.json").read_text())["models"]
    assert "Stale runs, not shown" in (study_copy / "report.md").read_text()
    capsys.readouterr()
    assert main(_args(cifar_dir, weight_files, tmp_path / "cache", study_copy)) == 0
    log = capsys.readouterr().out
    assert "small_cnn: already finished" in log and "kd_small (retraining: its files do not verify" in log
    results = json.loads((study_copy / "results.json").read_text())
    assert results["study"]["stale_runs"] == [] and "kd_small" in results["models"]
    np.testing.assert_array_equal(_logits(study_copy, "kd_small"), _logits(tiny_study, "kd_small"))


HOLD_LOCK = """
import sys, time
from distillbench.study.lock import directory_lock
with directory_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_one_writer_at_a_time_and_a_killed_holder_frees_the_study(
    study_copy, tmp_path, cifar_dir, weight_files, capsys
):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(study_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = _args(cifar_dir, weight_files, tmp_path / "cache", study_copy, "train.epochs=3")
        before = (study_copy / "config.yaml").read_text()
        for command in (args, ["report", str(study_copy)]):
            assert main(command) == 2
            err = capsys.readouterr().err.replace("\n", " ")
            assert f"is being written by another distillbench (pid {holder.pid} on " in err, err
            assert "Traceback" not in err
        assert (study_copy / "config.yaml").read_text() == before  # the refused run wrote nothing
    finally:
        holder.kill()  # SIGKILL: the lock goes with the process, nothing is left to clean up
        holder.wait()
    assert main(["report", str(study_copy)]) == 0


def test_leftovers_of_killed_writes_are_removed_and_a_live_writers_are_kept(
    study_copy, tmp_path, cifar_dir, weight_files
):
    cache = tmp_path / "cache"
    cache.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has exited
    leftovers = [
        _run_dir(study_copy, "small_cnn") / ".model.pt.123.abcd1234.tmp",
        study_copy / f".results.json.{dead}.x1y2z3.tmp",
        study_copy / ".report.md.oldstyle.tmp",  # written before temporary names held a pid
        cache / f".0123abcd.pt.{dead}.q9w8e7.tmp",
    ]
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # another study's process
    try:
        live = cache / f".4567cdef.pt.{writer.pid}.r5t6y7.tmp"  # it is writing this cache entry right now
        for path in [*leftovers, live]:
            path.write_bytes(bytes(1000))
        old = time.time() - 2 * 3600  # a dead writer's file is removed once it is an hour old
        os.utime(leftovers[-1], (old, old))
        os.utime(live, (old, old))
        assert main(_args(cifar_dir, weight_files, cache, study_copy)) == 0
        assert not any(path.exists() for path in leftovers)
        assert live.exists()
    finally:
        writer.kill()
        writer.wait()


def test_hostile_model_keys_never_become_paths(tmp_path, cifar_dir, weight_files, capsys):
    out = tmp_path / "inside" / "out"
    for key in ("../../escaped", str(tmp_path / "absolute")):
        sets = [f'zoo={{"{key}": {{arch: small_cnn, lr: 0.001}}}}', f'models=["{key}"]']
        assert main(_args(cifar_dir, weight_files, tmp_path / "cache", out, *sets)) == 2
        err = capsys.readouterr().err.replace("\n", " ")
        assert "is not a valid name" in err and "Traceback" not in err
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "absolute").exists()
    assert not out.exists()


class _Markup(HTMLParser):
    """Every element, attribute and script of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.attributes, self.scripts, self.text = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        self.scripts += tag == "script"

    def handle_data(self, data):
        self.text.append(data)


HOSTILE_TITLE = "<img src=x onerror=alert(1)> [click](javascript:alert(2)) | `x` \\ $5"
HOSTILE_CLASS = "<script>alert(3)</script>"


def test_titles_and_class_names_stay_text_in_the_report(tmp_path, cifar_dir, weight_files):
    data = tmp_path / "data"
    shutil.copytree(cifar_dir, data)
    names = ["airplane", HOSTILE_CLASS, "bird", "cat", "deer", "dog", "frog", "horse", "ship", "[t](javascript:x)"]
    (data / META_FILE).write_bytes(dumps_py2({"num_cases_per_batch": 400, "label_names": names, "num_vis": 3072}))
    out = tmp_path / "out"
    sets = [f"zoo.small_cnn.title={json.dumps(HOSTILE_TITLE)}", "models=[small_cnn]", "train.epochs=1",
            "evaluation.figures=true"]  # fmt: skip
    assert main(study_args(data, weight_files, tmp_path / "cache", out, *TINY, *sets)) == 0
    page = _Markup()
    page.feed((out / "report.html").read_text())
    assert page.scripts == 1  # the report's own table sorter, nothing else
    assert "img" in page.tags  # the figures, embedded ...
    assert all(value.startswith("data:image/png;base64,") for tag, name, value in page.attributes if name == "src")
    assert not [a for a in page.attributes if a[1].startswith("on")], page.attributes  # no event handler
    assert "a" not in page.tags  # no link at all: the report has none, a title cannot make one
    assert page.tags.count("img") == 5  # accuracy and the model's four (no efficiency here): none broken
    text = "".join(page.text)  # ... and the hostile strings, shown as text
    assert "<img src=x onerror=alert(1)> [click](javascript:alert(2))" in text and HOSTILE_CLASS in text
    assert (out / "figures" / "small_cnn_per_class.png").stat().st_size > 0  # the "$" drew as text


def _inject_os_error(monkeypatch, code, when):
    """``os.replace`` (the last step of every atomic write) fails with ``code`` for paths ``when`` accepts."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if when(Path(dst)):
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize(
    "code, advice",
    [(errno.ENOSPC, "the disk is full"), (errno.EPERM, "not permitted"), (errno.EISDIR, "a directory is in the way")],
)
def test_what_the_operating_system_refuses_is_one_paragraph_and_resumable(
    tmp_path, cifar_dir, weight_files, monkeypatch, capsys, code, advice
):
    out = tmp_path / "out"
    args = _args(cifar_dir, weight_files, tmp_path / "cache", out)
    _inject_os_error(monkeypatch, code, lambda path: path.name == "run.json" and "kd_small" in str(path))
    assert main(args) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert err.startswith(f"error: Could not write {_run_dir(out, 'kd_small') / 'run.json'} (") and advice in err
    assert "Traceback" not in err
    assert not list(out.rglob("*.tmp"))  # the failed write left nothing behind
    assert (_run_dir(out, "small_cnn") / "predictions.npz").exists()  # finished before: kept
    assert not (_run_dir(out, "kd_small") / "predictions.npz").exists()
    monkeypatch.undo()
    assert main(args) == 0
    assert (_run_dir(out, "kd_small") / "predictions.npz").exists()


def test_the_writability_check_finds_a_full_disk(tmp_path, monkeypatch):
    """It writes (and syncs) a megabyte: an empty file would pass on a full disk."""
    written = []

    def full(fd):
        written.append(os.fstat(fd).st_size)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("distillbench.study.runner.os.fsync", full)
    with pytest.raises(UserError, match=r"the output directory \(--out\): cannot write to .*No space left on device"):
        _check_writable(tmp_path / "out", "the output directory (--out)")
    assert written == [WRITE_PROBE_BYTES] and not list((tmp_path / "out").iterdir())


def test_a_broken_cache_is_skipped_with_a_warning(tiny_study, tmp_path, cifar_dir, weight_files, capfd):
    """The cache is optional: an unwritable cache directory, or directories where its files should be,
    cost time, not the study."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = tmp_path / "out"
    assert main(_args(cifar_dir, weight_files, blocker / "cache", out)) == 0
    assert "WARNING: perf.cache_dir: cannot write to" in capfd.readouterr().out
    np.testing.assert_array_equal(_logits(out, "kd_small"), _logits(tiny_study, "kd_small"))

    cache = tmp_path / "cache"
    assert main(_args(cifar_dir, weight_files, cache, tmp_path / "first")) == 0
    entries = list(cache.glob("*.pt"))
    assert entries
    for entry in entries:  # a directory where each cache file should be
        entry.unlink()
        entry.mkdir()
    out = tmp_path / "second"
    assert main(_args(cifar_dir, weight_files, cache, out)) == 0
    log = capfd.readouterr().out
    assert "is unreadable (IsADirectoryError); recomputing it" in log
    assert "WARNING: the disk cache is switched off for this study: Could not write" in log
    np.testing.assert_array_equal(_logits(out, "kd_small"), _logits(tiny_study, "kd_small"))


def test_a_diverging_run_stops_with_its_name_and_epoch(tmp_path, cifar_dir, weight_files, monkeypatch, capsys):
    def diverging(label_smoothing):
        return lambda idx, x, y, logits, epoch: F.cross_entropy(logits, y) * float("nan")

    monkeypatch.setattr("distillbench.study.inputs.smoothed_cross_entropy", diverging)
    out = tmp_path / "out"
    assert main(_args(cifar_dir, weight_files, tmp_path / "cache", out)) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "small_cnn seed 0 diverged: its training loss became nan in epoch 1" in err
    assert "lower it (zoo.<model>.lr)" in err and "Traceback" not in err
    assert not (_run_dir(out, "small_cnn") / "predictions.npz").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--seeds", "1000000000"], "--seeds 1000000000: give a number of seeds from 1 to 1000"),
        (["synth-data", "{tmp}/d", "--train", "-5"], "synth-data --train -5: give a number of images from 20"),
        (["synth-data", "{tmp}/d", "--test", "0"], "synth-data --test 0: give a number of images from 10"),
    ],
)
def test_absurd_counts_on_the_command_line_are_refused(tmp_path, capsys, argv, message):
    assert main([part.replace("{tmp}", str(tmp_path)) for part in argv]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_an_unexpected_os_error_is_still_one_paragraph(tmp_path, capsys, monkeypatch):
    def refuse(args):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr("distillbench.cli._synth", refuse)
    assert main(["synth-data", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == textwrap.fill(
            f"error: The operating system refused an operation on {tmp_path / 'x'} (Permission denied, EACCES): "
            "permission denied: make it writable for you (or choose another directory) and run again. Files written "
            "before are intact (every write is atomic), and a study resumes where it stopped.",
            width=100,
            break_on_hyphens=False,
            break_long_words=False,
        )
        + "\n"
    )
