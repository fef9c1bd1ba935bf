"""Resume after an interruption, retrain on a changed config, and clear errors from the CLI."""

import shutil

import pytest

from distillbench.cli import main
from distillbench.study.store import RunStore
from distillbench.training import loop
from tests.conftest import study_args

# The subset test_workers uses too: the frozen features of it are computed once per session.
SMALL_DATA = ["data.train_limit=600", "data.val_size=100", "data.test_limit=200"]


def _mtimes(out, keys, seed=0):
    return {k: (out / "runs" / k / f"seed-{seed}" / "model.pt").stat().st_mtime_ns for k in keys}


def test_interrupted_study_resumes_where_it_stopped(tmp_path, cifar_dir, weight_files, cache_dir, monkeypatch, capsys):
    out = tmp_path / "study"
    args = study_args(
        cifar_dir, weight_files, cache_dir, out, "models=[kd_resnet50,small_cnn]", "train.epochs=2", *SMALL_DATA
    )
    real_fit = loop.fit
    calls, interrupt = [], [True]

    def fit_then_interrupt(*a, **k):
        calls.append(k["name"])
        if k["name"] == "small_cnn" and interrupt:
            interrupt.pop()
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the third model
        return real_fit(*a, **k)

    monkeypatch.setattr("distillbench.study.execute.fit", fit_then_interrupt)
    assert main(args) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert calls == ["resnet50", "kd_resnet50", "small_cnn"]  # the teacher was added and trained first
    assert not (out / "runs" / "small_cnn" / "seed-0" / "predictions.npz").exists()
    finished = _mtimes(out, ["resnet50", "kd_resnet50"])

    calls.clear()
    assert main(args) == 0
    assert calls == ["small_cnn"]  # only the unfinished model
    assert _mtimes(out, ["resnet50", "kd_resnet50"]) == finished
    assert "already finished" in capsys.readouterr().out

    # A changed KD setting retrains the student, not its teacher.
    calls.clear()
    assert main([*args, "--set", "kd.alpha=0.9"]) == 0
    assert calls == ["kd_resnet50"]


def test_a_multi_seed_study_resumes_at_the_run_it_stopped_in(tmp_path, cifar_dir, weight_files, cache_dir, monkeypatch):
    out = tmp_path / "study"
    args = [
        *study_args(cifar_dir, weight_files, cache_dir, out, "models=[kd_resnet50]", "train.epochs=1", *SMALL_DATA),
        "--seeds",
        "2",
    ]
    real_fit = loop.fit
    calls, interrupt = [], [True]

    def fit_then_interrupt(*a, **k):
        calls.append((k["name"], k["seed"]))
        if (k["name"], k["seed"]) == ("kd_resnet50", 1) and interrupt:
            interrupt.pop()
            raise KeyboardInterrupt
        return real_fit(*a, **k)

    monkeypatch.setattr("distillbench.study.execute.fit", fit_then_interrupt)
    assert main(args) == 130
    assert calls == [("resnet50", 0), ("kd_resnet50", 0), ("resnet50", 1), ("kd_resnet50", 1)]  # seed by seed
    finished = {**_mtimes(out, ["resnet50", "kd_resnet50"]), "resnet50-1": _mtimes(out, ["resnet50"], seed=1)}
    calls.clear()
    assert main(args) == 0
    assert calls == [("kd_resnet50", 1)]
    assert {**_mtimes(out, ["resnet50", "kd_resnet50"]), "resnet50-1": _mtimes(out, ["resnet50"], seed=1)} == finished
    # A third seed trains only the new runs.
    calls.clear()
    assert main([*args, "--seeds", "3"]) == 0
    assert calls == [("resnet50", 2), ("kd_resnet50", 2)]


def test_stale_finished_run_is_not_trusted(tmp_path, cifar_dir, weight_files, cache_dir, monkeypatch):
    out = tmp_path / "study"
    args = study_args(cifar_dir, weight_files, cache_dir, out, "models=[small_cnn]", "train.epochs=1", *SMALL_DATA)
    assert main(args) == 0
    calls = []
    real_fit = loop.fit
    monkeypatch.setattr("distillbench.study.execute.fit", lambda *a, **k: calls.append(k["name"]) or real_fit(*a, **k))
    assert main([*args, "--set", "train.epochs=2"]) == 0
    assert calls == ["small_cnn"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "train.epohcs=3"], "did you mean train.epochs"),
        (["--set", "models=[small_cnn,efficientnet]"], "unknown model 'efficientnet'"),
        (
            ["--set", "weights.vgg16=/nonexistent/vgg16.pt", "--set", "models=[vgg16]"],
            "/nonexistent/vgg16.pt is not a file",
        ),
        (["--config", "/nonexistent/study.yaml"], "does not exist"),
        (["--seeds", "0"], "--seeds 0: give a number of seeds from 1 to 1000"),
    ],
)
def test_bad_input_exits_nonzero_without_traceback(
    tmp_path, cifar_dir, weight_files, cache_dir, capsys, extra, message
):
    code = main([*study_args(cifar_dir, weight_files, cache_dir, tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err.replace("\n", " ") and "Traceback" not in err


def test_missing_data_dir_is_explained(tmp_path, capsys, weight_files, cache_dir):
    code = main(study_args(tmp_path / "nowhere", weight_files, cache_dir, tmp_path / "o"))
    err = capsys.readouterr().err.replace("\n", " ")
    assert code == 2 and "does not exist" in err and "--data-dir" in err


def test_corrupt_data_file_is_named(tmp_path, cifar_dir, weight_files, cache_dir, capsys):
    data = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir, data)
    (data / "data_batch_4").write_bytes(b"\x80\x02}q\x00")
    code = main(study_args(data, weight_files, cache_dir, tmp_path / "o"))
    err = capsys.readouterr().err.replace("\n", " ")
    assert code == 2 and "data_batch_4" in err and "Traceback" not in err


def test_report_of_a_non_study_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_report_with_an_invalid_saved_config(tmp_path, capsys):
    text = "train:\n  epochs: -1\n"
    (tmp_path / "config.yaml").write_text(text)
    RunStore(tmp_path).write_plan(text, [])
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "train.epochs" in err and "Traceback" not in err
