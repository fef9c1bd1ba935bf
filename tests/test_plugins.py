"""Plugins: a module outside the package registers a dataset, an architecture and a distillation
method; a study uses them on worker processes and ``report`` rebuilds it afterwards."""

from __future__ import annotations

import json
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import distillbench.plugins as plugins
from distillbench.cli import main
from distillbench.data import DATASETS
from distillbench.models import ARCHITECTURES
from distillbench.training.distill import METHODS


def write_plugin(directory: Path, suffix: str) -> Path:
    """A plugin module whose registered names end in ``suffix`` (names register once per process)."""
    path = directory / f"lab_plugin_{suffix}.py"
    path.write_text(
        textwrap.dedent(f'''
        """A lab's own dataset, architecture and method."""
        from typing import Literal

        import numpy as np
        import torch.nn.functional as F
        from torch import nn

        from distillbench.data import DatasetArrays, register_dataset
        from distillbench.models import register_architecture
        from distillbench.models.classifier import Classifier, Float32Linear, Preprocess
        from distillbench.training.distill import DistillMethod, register_method


        def read_colours(cfg):
            rng = np.random.default_rng(0)

            def split(n):
                labels = np.arange(n) % 3
                images = rng.integers(0, 60, (n, 3, 8, 8), dtype=np.uint8)
                images[np.arange(n), labels] += 150  # class k: channel k bright
                return images, labels.astype(np.int64)

            return DatasetArrays(*split(240), *split(60), ("red", "green", "blue"), "plugin colours", True)


        def build_linear(spec, weights, image_shape, num_classes):
            channels, height, width = image_shape
            body = nn.Sequential(nn.Flatten(), Float32Linear(channels * height * width, num_classes))
            return Classifier(nn.Sequential(Preprocess(spec.input_norm)), body)


        class MatchLogits(DistillMethod):
            method: Literal["match_{suffix}"] = "match_{suffix}"

            def sample_loss(self, student, teacher, labels, epoch):
                matched = F.mse_loss(student, teacher, reduction="none").mean(-1)
                return F.cross_entropy(student, labels, reduction="none") + matched


        register_dataset("colours_{suffix}", read_colours)
        register_architecture("linear_{suffix}", build_linear)
        register_method(MatchLogits)
        ''')
    )
    return path


def study_config(directory: Path, suffix: str, *, plugin: str | None, workers: int) -> Path:
    path = directory / "study.yaml"
    path.write_text(
        textwrap.dedent(f"""
        name: plugged
        plugins: {json.dumps([plugin] if plugin else [])}
        models: [teacher, student]
        seeds: [0]
        data: {{dataset: colours_{suffix}, val_size: 60}}
        train: {{epochs: 2, batch_size: 32}}
        weights: {{}}
        zoo:
          teacher: {{arch: linear_{suffix}, lr: 0.01}}
          student: {{arch: linear_{suffix}, lr: 0.01, teachers: [teacher], distill: match_{suffix}}}
        comparisons: []
        evaluation: {{efficiency: false, figures: false, scratch: teacher, kd_reference: student}}
        perf: {{workers: {workers}, threads: 2, cache_dir: {directory / "cache"}}}
        """)
    )
    return path


def test_a_plugin_file_reaches_worker_processes_and_report(tmp_path, capsys, monkeypatch):
    plugin = write_plugin(tmp_path, "a")
    config = study_config(tmp_path, "a", plugin=str(plugin), workers=2)
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--out", str(out), "--device", "cpu"]) == 0
    assert "Training on 2 worker processes" in capsys.readouterr().out  # so the workers imported the plugin
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student"}
    assert results["study"]["class_names"] == ["red", "green", "blue"]
    assert results["models"]["student"]["arch"] == "linear_a"

    # A fresh process knows nothing of the plugin: here, forget it (module and registrations), so that
    # report must import it again from what the study's config names.
    module = plugins._loaded[str(plugin)]
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.delitem(sys.modules, module.__name__)
    for registry, name in ((ARCHITECTURES, "linear_a"), (DATASETS, "colours_a"), (METHODS, "match_a")):
        monkeypatch.delitem(registry, name)
    (out / "results.json").unlink()
    assert main(["report", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["models"] == results["models"]
    assert "linear_a" in ARCHITECTURES and "match_a" in METHODS  # imported again by report
    for registry, name in ((ARCHITECTURES, "linear_a"), (DATASETS, "colours_a"), (METHODS, "match_a")):
        del registry[name]  # report's registrations: monkeypatch puts the first import's back


def test_one_plugin_file_spelt_two_ways_is_imported_once(tmp_path, monkeypatch):
    plugin = write_plugin(tmp_path, "d")
    monkeypatch.chdir(tmp_path)
    first, second = plugins.load_plugins([plugin.name, str(plugin)])  # relative, then absolute
    assert first is second and "linear_d" in ARCHITECTURES
    # A config's own plugin file is found beside the config, wherever the command runs from.
    config = study_config(tmp_path, "d", plugin=plugin.name, workers=1)
    monkeypatch.chdir(tmp_path.parent)
    from distillbench.study.resolve import load_study_config

    assert load_study_config(config).plugins == [str(plugin)]


def test_plugin_option_adds_a_module_to_the_config(tmp_path, monkeypatch):
    write_plugin(tmp_path, "b")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = study_config(tmp_path, "b", plugin=None, workers=1)
    out = tmp_path / "out"
    args = ["run", "--config", str(config), "--out", str(out), "--device", "cpu", "--plugin", "lab_plugin_b"]
    assert main(args) == 0
    assert "lab_plugin_b" in (out / "config.yaml").read_text()  # recorded: report and workers import it too
    assert "linear_b" in ARCHITECTURES and "colours_b" in DATASETS and "match_b" in METHODS


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        ("no_such_lab_module", "no module of that name can be imported here"),
        ("missing_file.py", "no such file"),
        ("not a module", "give a module name"),
    ],
)
def test_a_plugin_that_cannot_be_imported_is_one_paragraph(tmp_path, capsys, plugin, message):
    assert main(["run", "--out", str(tmp_path / "out"), "--plugin", plugin]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_a_plugin_that_raises_names_the_plugin_and_the_error(tmp_path, capsys):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('the lab forgot a file')\n")
    assert main(["run", "--out", str(tmp_path / "out"), "--plugin", str(broken)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "broken_plugin.py" in err and "RuntimeError: the lab forgot a file" in err and "Traceback" not in err


def test_installed_packages_register_through_the_entry_point_group(tmp_path, monkeypatch):
    write_plugin(tmp_path, "c")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = EntryPoint(name="lab", value="lab_plugin_c", group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [entry] if group == plugins.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    plugins.load_plugins()
    assert "linear_c" in ARCHITECTURES and "colours_c" in DATASETS and "match_c" in METHODS
