"""A run's result depends on its identity only: not on what ran before it, not on a stale cache,
and a run whose identity no longer matches the study is never shown as its result."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from distillbench.cli import main
from distillbench.config import PerfConfig, load_config
from distillbench.data import load_study_data
from distillbench.errors import UserError
from distillbench.study.plan import Planner
from distillbench.study.ray_executor import train_task
from distillbench.training import loop
from distillbench.training.runtime import Runtime, threads_per_run
from tests.conftest import study_args

SMALL = ["data.train_limit=300", "data.val_size=60", "data.test_limit=100", "evaluation.efficiency=false",
         "perf.precision=fp32", "train.epochs=2"]  # fmt: skip


def _args(cifar_dir, weight_files, cache, out, *sets):
    return study_args(cifar_dir, weight_files, cache, out, *SMALL, *sets)


def _logits(out, key, seed=0):
    with np.load(out / "runs" / key / f"seed-{seed}" / "predictions.npz") as saved:
        return saved["logits"]


def test_input_normalisation_is_part_of_the_feature_cache_key(tmp_path, cifar_dir, weight_files, capsys):
    """Two studies share a cache directory and differ only in ResNet50's input normalisation: the
    second must compute its own frozen features, not reuse the first's."""
    cache = tmp_path / "cache"
    first, second = tmp_path / "none", tmp_path / "imagenet"
    assert main(_args(cifar_dir, weight_files, cache, first, "models=[resnet50]")) == 0
    capsys.readouterr()
    assert (
        main(_args(cifar_dir, weight_files, cache, second, "models=[resnet50]", "zoo.resnet50.input_norm=imagenet"))
        == 0
    )
    log = capsys.readouterr().out
    assert "computing resnet50 frozen-layer activations (train)" in log and "reusing cached resnet50" not in log
    assert np.abs(_logits(first, "resnet50") - _logits(second, "resnet50")).max() > 1e-3


def test_a_run_does_not_depend_on_where_or_when_it_ran(tmp_path, cifar_dir, weight_files):
    """With the default perf settings (workers auto, threads null, precision auto), the same student,
    trained fresh with its teacher (two runs: worker processes), after a resume (one run left: this
    process) and added to a finished study later, gives bit-identical predictions: every run trains
    with the study's threads per run, recorded in its run.json."""
    zoo = ["zoo.kd_small={arch: small_cnn, lr: 0.003, teachers: [small_cnn]}", "zoo.other={arch: small_cnn, lr: 0.01}",
           "comparisons=[]", "evaluation.kd_reference=kd_small"]  # fmt: skip
    defaults = ["perf.workers=auto", "perf.threads=null", "perf.precision=auto"]
    sets = [s for s in SMALL if not s.startswith("perf.")] + zoo + defaults
    runs, threads = {}, set()

    def study(name, *models_sets):
        out = tmp_path / name
        for models in models_sets:
            args = study_args(cifar_dir, weight_files, tmp_path / f"cache-{name}", out, *sets, f"models=[{models}]")
            assert main(args) == 0
        runs[name] = _logits(out, "kd_small")
        threads.add(json.loads((out / "runs" / "kd_small" / "seed-0" / "run.json").read_text())["torch_threads"])

    study("fresh", "kd_small")
    study("resumed", "small_cnn", "kd_small")
    study("later", "other", "other,kd_small")
    np.testing.assert_array_equal(runs["resumed"], runs["fresh"])
    np.testing.assert_array_equal(runs["later"], runs["fresh"])
    assert threads == {threads_per_run(PerfConfig(), torch.device("cpu"))}


def test_a_retrained_teacher_makes_its_students_stale(tmp_path, cifar_dir, weight_files, monkeypatch, capsys):
    out = tmp_path / "study"
    args = _args(cifar_dir, weight_files, tmp_path / "cache", out, "models=[kd_resnet50]", "perf.disk_cache=false")
    assert main(args) == 0
    calls = []
    real_fit = loop.fit

    def fit_with_other_weights(module, *a, **k):
        calls.append(k["name"])
        result = real_fit(module, *a, **k)
        if k["name"] == "resnet50":  # the teacher comes out different, as after a change of hardware
            with torch.no_grad():
                for param in module.parameters():
                    param.add_(0.01)
        return result

    # Same config: retraining the teacher to the same weights keeps the student ...
    (out / "runs" / "resnet50" / "seed-0" / "predictions.npz").unlink()
    monkeypatch.setattr(
        "distillbench.study.execute.fit", lambda m, *a, **k: calls.append(k["name"]) or real_fit(m, *a, **k)
    )
    assert main(args) == 0
    assert calls == ["resnet50"]
    # ... retraining it to other weights makes the student stale: it is retrained too.
    calls.clear()
    monkeypatch.setattr("distillbench.study.execute.fit", fit_with_other_weights)
    (out / "runs" / "resnet50" / "seed-0" / "predictions.npz").unlink()
    capsys.readouterr()
    assert main(args) == 0
    assert calls == ["resnet50", "kd_resnet50"]
    assert "retraining: its teacher resnet50 (seed 0) was retrained after it" in capsys.readouterr().out


def test_report_never_shows_a_run_of_another_config(tmp_path, cifar_dir, weight_files, monkeypatch):
    """Finish a study with 1 epoch, interrupt a re-run with 3 epochs during its first model, then
    rebuild the report: the second model's 1-epoch run is stale for the 3-epoch config, listed as
    such, and not a result."""
    out = tmp_path / "study"
    base = _args(cifar_dir, weight_files, tmp_path / "cache", out, "models=[small_cnn,resnet50]")
    assert main([*base, "--set", "train.epochs=1"]) == 0

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("distillbench.study.execute.fit", interrupted)
    assert main([*base, "--set", "train.epochs=3"]) == 130
    assert main(["report", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["study"]["train"]["epochs"] == 3
    assert results["models"] == {} and results["comparisons"] == []
    assert results["study"]["stale_runs"] == ["resnet50 seed 0 (trained with a different configuration)"]
    assert results["study"]["unfinished_runs"] == ["small_cnn seed 0", "resnet50 seed 0"]
    report = (out / "report.md").read_text()
    assert "Stale runs, not shown" in report and "distillbench run --config OUT/config.yaml --out OUT" in report


def test_report_of_a_study_without_a_plan_says_what_to_do(tmp_path, capsys):
    # An older study's config (claims with paper_favours) must not stop it before the useful message.
    (tmp_path / "config.yaml").write_text(
        "name: old\ncomparisons:\n- {a: vgg16, b: resnet50, paper_favours: a, claim: x}\n"
    )
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "no plan.json" in err and "distillbench run --config" in err and "Traceback" not in err


def test_weights_named_for_one_backbone_keep_the_others(tmp_path, cifar_dir, weight_files):
    """--set weights={vgg16: X} after weights.resnet50=Y: resnet50 still loads Y (it used to train
    from random init with weights: null in run.json and no warning)."""
    out = tmp_path / "study"
    args = _args(cifar_dir, weight_files, tmp_path / "cache", out, "models=[resnet50]",
                 f"weights={{vgg16: {weight_files['vgg16']}}}")  # fmt: skip
    assert main(args) == 0
    record = json.loads((out / "runs" / "resnet50" / "seed-0" / "run.json").read_text())
    assert record["weights"] == f"local file {weight_files['resnet50']}"


def test_random_backbone_weights_are_announced(tmp_path, cifar_dir, weight_files):
    out = tmp_path / "study"
    assert (
        main(_args(cifar_dir, weight_files, tmp_path / "cache", out, "models=[resnet50]", "weights.resnet50=none")) == 0
    )
    assert "RANDOM BACKBONE WEIGHTS for resnet50" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "sets, message",
    [
        (["weights.vgg16=/nonexistent/vgg16.pt"], "/nonexistent/vgg16.pt is not a file"),
        (["weights.vgg16={resnet50}"], "is not a torchvision vgg16 state_dict"),
    ],
)
def test_bad_weights_stop_the_study_before_anything_trains(
    tmp_path, cifar_dir, weight_files, monkeypatch, capsys, sets, message
):
    sets = [s.replace("{resnet50}", str(weight_files["resnet50"])) for s in sets]
    calls = []
    monkeypatch.setattr("distillbench.study.execute.fit", lambda *a, **k: calls.append(k["name"]))
    out = tmp_path / "study"
    assert main(_args(cifar_dir, weight_files, tmp_path / "cache", out, "models=[small_cnn,vgg16]", *sets)) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert message in err and "Traceback" not in err
    assert calls == [] and not (out / "runs").exists()


def test_an_unwritable_output_directory_stops_the_study_before_anything_trains(
    tmp_path, cifar_dir, weight_files, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(_args(cifar_dir, weight_files, tmp_path / "cache", blocker / "out", "models=[small_cnn]")) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"{blocker}" in err and "Not a directory" in err and "Traceback" not in err


def test_saved_logits_are_float32_under_bf16(tmp_path, cifar_dir, weight_files):
    """Under bf16 autocast the saved logits still carry float32 precision, so argmax ties (which
    bf16's 8 bits made common) do not bias per-class tables, confusion matrices or McNemar counts."""
    out = tmp_path / "study"
    args = study_args(cifar_dir, weight_files, tmp_path / "cache", out, "models=[small_cnn]", "perf.precision=bf16",
                      "data.train_limit=300", "data.val_size=60", "evaluation.efficiency=false", "train.epochs=1")  # fmt: skip
    assert main(args) == 0
    logits = torch.from_numpy(_logits(out, "small_cnn"))
    assert logits.dtype == torch.float32 and torch.any(logits != logits.bfloat16().float())
    top2 = logits.topk(2, dim=1).values
    assert int((top2[:, 0] == top2[:, 1]).sum()) == 0


def test_history_logs_the_students_cross_entropy_beside_its_objective(tmp_path, cifar_dir, weight_files):
    out = tmp_path / "study"
    assert main(_args(cifar_dir, weight_files, tmp_path / "cache", out, "models=[small_cnn,kd_resnet50]")) == 0
    results = json.loads((out / "results.json").read_text())["models"]
    for row in results["small_cnn"]["history"]:  # plain training: the objective is the cross-entropy
        assert row["train_ce"] == pytest.approx(row["train_loss"], rel=1e-5)
    for row in results["kd_resnet50"]["history"]:  # KD: a different quantity, logged apart
        assert row["train_ce"] > row["train_loss"] > 0


def test_runs_of_an_older_distillbench_are_retrained_not_reused(tmp_path, cifar_dir, weight_files, capsys):
    """A study directory written before identities held a version and checkpoint hashes: its runs
    are stale (their numbers came from code with known faults) and the student does not crash."""
    out = tmp_path / "study"
    args = _args(cifar_dir, weight_files, tmp_path / "cache", out, "models=[kd_resnet50]", "train.epochs=1")
    assert main(args) == 0
    for key in ("resnet50", "kd_resnet50"):  # what the old code wrote: another fingerprint, no hashes
        path = out / "runs" / key / "seed-0" / "run.json"
        record = json.loads(path.read_text())
        record["fingerprint"] = "0" * 64
        for field in ("checkpoint_sha256", "teacher_checkpoints"):
            record.pop(field)
        path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(args) == 0
    log = capsys.readouterr().out
    assert log.count("retraining: its files do not verify: run.json lacks") == 2


def test_a_remote_task_trains_with_the_planned_numerics_not_its_own(tmp_path, cifar_dir):
    """A Ray task gets the runtime its run was planned (and fingerprinted) with and trains with exactly
    it, whatever ``precision: auto`` resolves to on its node; a node without the planned device stops."""
    cfg = load_config(None, [f"data.dir={cifar_dir}", "models=[small_cnn]", "seeds=[0]", "train.epochs=1",
                             "data.train_limit=200", "data.val_size=40", "data.test_limit=50",
                             f"perf.cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    here = Runtime.resolve(cfg.perf, "cpu")
    planned = replace(here, precision="fp32" if here.precision == "bf16" else "bf16", threads=1)
    data = load_study_data(cfg.data)
    run = Planner(cfg, data.fingerprint, planned).plan().runs[0]
    files, _ = train_task(cfg, data, run, planned, False)
    record = json.loads(files["run.json"])
    assert (record["precision"], record["torch_threads"]) == (planned.precision, 1)
    assert record["fingerprint"] == run.fingerprint
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="planned for a CUDA GPU, but torch sees none"):
            train_task(cfg, data, run, replace(planned, device=torch.device("cuda")), False)
