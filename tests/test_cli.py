"""The command line as a newcomer meets it: ``--version``, a study named after its config file,
the same did-you-mean from ``sweep`` as from ``run``, a missing extra that says how to install it
from anywhere, and a ``report`` that says what it is doing."""

from __future__ import annotations

import sys

import pytest

import distillbench
from distillbench.cli import main
from distillbench.config import load_config, name_from_stem
from distillbench.errors import UserError
from tests.conftest import study_args


def test_version_names_the_package_and_its_torch(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"distillbench {distillbench.__version__} (torch ") and "Python 3." in out


def test_a_study_is_named_after_its_config_file_unless_it_names_itself(tmp_path):
    unnamed = tmp_path / "my-kd study.yaml"
    unnamed.write_text("train: {epochs: 2}\n")
    assert load_config(unnamed).name == "my-kd-study"
    assert load_config(unnamed, ["name=other"]).name == "other"  # --set still wins
    named = tmp_path / "file.yaml"
    named.write_text("name: mine\n")
    assert load_config(named).name == "mine"
    assert load_config().name == "paper"  # no file: the paper's protocol
    assert load_config("configs/paper.yaml").name == "paper"
    assert [name_from_stem(stem) for stem in (".hidden", "-x", "", "a" * 80)] == [
        "study.hidden",
        "study-x",
        "study",
        "a" * 64,
    ]


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        (
            ["--set", "train.epoch=3", "--grid", "kd.temperature=[1,2]"],
            "train.epoch: unknown key (did you mean train.epochs?)",
        ),
        (["--grid", "kd.temprature=[1,2]"], "kd.temprature: unknown key (did you mean kd.temperature?)"),
        (["--grid", "zoo.small_cnn.lrr=[0.1]"], "zoo.small_cnn.lrr: unknown key (did you mean zoo.small_cnn.lr?)"),
    ],
)
def test_sweep_says_did_you_mean_as_run_does(options, hint, tmp_path, capsys):
    assert main(["sweep", *options, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert hint in err and "Traceback" not in err
    if options[0] == "--set":  # the same words as run's
        assert main(["run", *options[:2], "--out", str(tmp_path / "out")]) == 2
        assert hint in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "out").exists()


def test_missing_extras_say_how_to_install_them_from_anywhere(monkeypatch):
    from distillbench.study.ray_executor import import_ray
    from distillbench.study.tracking import check_tracking

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra sees
    for module in ("mlflow", "mlflow.tracking"):  # both: an earlier test may have imported the submodule
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match=r"pip install 'distillbench\[ray\]'"):
        import_ray()
    with pytest.raises(UserError, match=r"pip install 'distillbench\[mlflow\]'"):
        check_tracking(load_config(overrides=["tracking.backend=mlflow"]))


def test_report_says_what_it_is_doing(tmp_path, cifar_dir, weight_files, cache_dir, capsys):
    out = tmp_path / "study"
    tiny = ("models=[small_cnn]", "train.epochs=1", "data.train_limit=300", "data.val_size=100")
    assert main([*study_args(cifar_dir, weight_files, cache_dir, out, *tiny, "evaluation.efficiency=false")]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"Rebuilding the report of {out}: verifying its saved runs" in said
    assert "Report rebuilt in " in said and "1 of 1 models finished" in said
