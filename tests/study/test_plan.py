"""The plan: every run of the config, teachers first, with identities that change when (and only
when) what the run depends on changes; ``ready`` and ``batch_groups`` for executors."""

import torch

from distillbench.config import load_config
from distillbench.study.plan import Planner
from distillbench.study.scheduling import batch_groups
from distillbench.training.runtime import Runtime

NO_WEIGHTS = ["weights.resnet50=none", "weights.vgg16=none", "seeds=[0,1]"]


def _planner(*sets: str) -> Planner:
    return Planner(load_config(None, [*NO_WEIGHTS, *sets]), "data-sha", Runtime())


def test_runs_seed_by_seed_with_teachers_first():
    plan = _planner().plan()
    assert [run.key for run in plan.runs] == [
        (key, seed) for seed in (0, 1) for key in ("small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble")
    ]
    by_key = {run.key: run for run in plan.runs}
    assert by_key[("kd_ensemble", 1)].needs == (("resnet50", 1), ("vgg16", 1))
    assert by_key[("kd_resnet50", 0)].arch == "small_cnn" and by_key[("vgg16", 0)].arch == "vgg16"


def test_ready_runs_are_those_whose_teachers_are_done():
    plan = _planner().plan()
    assert [run.key for run in plan.ready(set())] == [
        ("small_cnn", 0), ("resnet50", 0), ("vgg16", 0), ("small_cnn", 1), ("resnet50", 1), ("vgg16", 1),
    ]  # fmt: skip
    done = {("small_cnn", 0), ("resnet50", 0), ("vgg16", 1)}
    assert ("kd_resnet50", 0) in {run.key for run in plan.ready(done)}
    assert ("kd_ensemble", 0) not in {run.key for run in plan.ready(done)}  # vgg16 seed 0 is not done
    assert ("kd_ensemble", 1) not in {run.key for run in plan.ready(done)}  # resnet50 seed 1 is not done
    assert not {run.key for run in plan.ready(done)} & done


def test_batch_groups_are_runs_of_one_architecture_and_optimiser():
    planner = _planner("zoo.kd_ensemble.lr=0.002")
    groups = batch_groups(planner.plan().runs, planner.recipes)
    assert [[run.key for run in group] for group in groups] == [
        [("small_cnn", 0), ("kd_resnet50", 0), ("small_cnn", 1), ("kd_resnet50", 1)],  # teachers/distill may differ
        [("resnet50", 0), ("resnet50", 1)],
        [("vgg16", 0), ("vgg16", 1)],
        [("kd_ensemble", 0), ("kd_ensemble", 1)],  # another learning rate: another optimiser
    ]


def test_identity_follows_what_a_run_depends_on():
    base = {run.key: run.fingerprint for run in _planner().plan().runs}
    assert len(set(base.values())) == len(base)  # every (model, seed) is its own run
    kd = {run.key: run.fingerprint for run in _planner("kd.temperature=5").plan().runs}
    assert kd[("resnet50", 0)] == base[("resnet50", 0)] and kd[("small_cnn", 0)] == base[("small_cnn", 0)]
    assert kd[("kd_resnet50", 0)] != base[("kd_resnet50", 0)]
    teacher = {run.key: run.fingerprint for run in _planner("zoo.vgg16.lr=0.001").plan().runs}
    assert teacher[("kd_ensemble", 0)] != base[("kd_ensemble", 0)]  # a teacher's change reaches its students
    assert teacher[("kd_resnet50", 0)] == base[("kd_resnet50", 0)]
    other_data = Planner(load_config(None, NO_WEIGHTS), "other-data-sha", Runtime()).plan()
    assert all(run.fingerprint != base[run.key] for run in other_data.runs)


def test_identity_holds_the_resolved_recipe_not_the_global_section():
    """A teacher that sets its own epochs, batch size and augmentation keeps its identity when train:
    changes (a sweep over train.* does not retrain it); its title changes nothing; what train: does
    reach (patience here) still counts."""
    own = ["zoo.resnet50.epochs=4", "zoo.resnet50.batch_size=32", "zoo.resnet50.augment=crop_flip"]

    def fingerprints(*sets):
        return {run.key: run.fingerprint for run in _planner(*own, *sets).plan().runs}

    base = fingerprints()
    for changed in ("train.epochs=7", "train.batch_size=128", "train.augment=crop_flip"):
        other = fingerprints(changed)
        assert other[("resnet50", 0)] == base[("resnet50", 0)], changed
        assert other[("small_cnn", 0)] != base[("small_cnn", 0)], changed
    assert fingerprints("zoo.resnet50.title=Another name") == base
    assert fingerprints("train.patience=5")[("resnet50", 0)] != base[("resnet50", 0)]


def test_identity_holds_the_device_type_and_precision_not_the_thread_count():
    cfg = load_config(None, NO_WEIGHTS)

    def fingerprint(runtime):
        return Planner(cfg, "data-sha", runtime).plan().runs[0].fingerprint

    cpu = fingerprint(Runtime(device=torch.device("cpu"), precision="fp32", threads=1))
    assert fingerprint(Runtime(device=torch.device("cpu"), precision="fp32", threads=2)) == cpu
    assert fingerprint(Runtime(device=torch.device("cuda"), precision="fp32", threads=1)) != cpu
    assert fingerprint(Runtime(device=torch.device("cpu"), precision="bf16", threads=1)) != cpu
