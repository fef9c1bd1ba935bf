"""The feature methods (AT, RKD) against mdistiller's own code on fixed tensors, their gradients, and
their defaults.

The expected values were printed by mdistiller itself (megvii-research/mdistiller at a08d46f), in a
scratch directory outside the repo (/tmp/ref22, its files loaded by path with yacs installed there):
``AT(student, teacher, CFG).forward_train`` and ``RKD(student, teacher, CFG).forward_train``
(``mdistiller/distillers/AT.py``, ``RKD.py``, with ``CFG`` from ``mdistiller/engine/cfg.py``) where
student and teacher are stub modules returning ``_pair(name)``'s tensors as ``(logits, {"feats": stages,
"pooled_feat": embedding})``: its ``losses_dict`` (``loss_ce``, the weighted CE, and ``loss_kd``, the
weighted feature term: the CE would hide the feature term's errors in their sum), and the norm of the
gradient of their sum w.r.t. the student's stage maps and embedding (stacked; the CE does not reach
them). Tolerance: relative 1e-5 on each loss term, 1e-4 on the gradient norm (float32; summation order).
"""

import pytest
import torch

from distillbench.config import KDConfig, ModelDef
from distillbench.models import build_model
from distillbench.models.classifier import Features
from distillbench.training.distill import resolve_method

BATCH, CLASSES = 8, 100

# name: (teacher arch, student arch, teacher stages [(C, H)], teacher embedding width, student's, student's).
# The stage shapes are the zoo's at 32x32 inputs (test_shapes_are_the_zoos).
PAIRS = {
    "resnet32x4-resnet8x4": (
        "resnet32x4",
        "resnet8x4",
        [(32, 32), (64, 32), (128, 16), (256, 8)],
        256,
        [(32, 32), (64, 32), (128, 16), (256, 8)],
        256,
    ),
    "wrn_40_2-wrn_16_2": (
        "wrn_40_2",
        "wrn_16_2",
        [(16, 32), (32, 32), (64, 16), (128, 8)],
        128,
        [(16, 32), (32, 32), (64, 16), (128, 8)],
        128,
    ),
    # Different widths and sizes: the teacher's maps are pooled to the student's.
    "resnet50-mobilenetv2": (
        "resnet50_cifar",
        "mobilenetv2",
        [(64, 32), (256, 32), (512, 16), (1024, 8), (2048, 4)],
        2048,
        [(16, 16), (12, 16), (16, 8), (48, 4), (160, 2)],
        1280,
    ),
    # Not a pair anyone distils: the student's maps are the larger (pooled) and it has fewer stages.
    "mobilenetv2-wrn_16_2": (
        "mobilenetv2",
        "wrn_16_2",
        [(16, 16), (12, 16), (16, 8), (48, 4), (160, 2)],
        1280,
        [(16, 32), (32, 32), (64, 16), (128, 8)],
        128,
    ),
}

# (loss_ce, loss_kd, gradient norm), all float32, printed by /tmp/ref22/values.py (module docstring).
EXPECTED = {
    "at": {
        "resnet32x4-resnet8x4": (8.766013145446777, 0.4301486313343048, 0.022098315879702568),
        "wrn_40_2-wrn_16_2": (12.084931373596191, 0.8579168915748596, 0.04488546401262283),
        "resnet50-mobilenetv2": (10.307316780090332, 7.381786823272705, 1.385284662246704),
        "mobilenetv2-wrn_16_2": (12.084931373596191, 6.118393898010254, 0.45608294010162354),
    },
    "rkd": {
        "resnet32x4-resnet8x4": (8.766013145446777, 0.10540767014026642, 0.04971408471465111),
        "wrn_40_2-wrn_16_2": (12.084931373596191, 0.27646592259407043, 0.11740361899137497),
        "resnet50-mobilenetv2": (10.307316780090332, 0.02696923352777958, 0.01039655227214098),
        "mobilenetv2-wrn_16_2": (12.084931373596191, 0.12109863758087158, 0.07841560244560242),
    },
}


def _features(stages: list[tuple[int, int]], width: int, seed: int) -> Features:
    """Standard-normal stage maps ``[8, C, H, H]``, embedding ``[8, width]`` and logits ``[8, 100]``
    (times 3), drawn in that order from ``torch.Generator().manual_seed(seed)``."""
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(BATCH, c, h, h, generator=g) for c, h in stages]
    return Features(maps, torch.randn(BATCH, width, generator=g), 3 * torch.randn(BATCH, CLASSES, generator=g))


def _pair(name: str) -> tuple[Features, Features, torch.Tensor]:
    """(student, teacher, labels) for ``PAIRS[name]``: teacher seed 1, student seed 2, labels seed 3."""
    _, _, t_stages, t_width, s_stages, s_width = PAIRS[name]
    labels = torch.randint(0, CLASSES, (BATCH,), generator=torch.Generator().manual_seed(3))
    return _features(s_stages, s_width, 2), _features(t_stages, t_width, 1), labels


def _tensors(f: Features) -> list[torch.Tensor]:
    return [*f.stages, f.embedding, f.logits]


@pytest.mark.parametrize("name", list(PAIRS))
def test_shapes_are_the_zoos(name):
    t_arch, s_arch, t_stages, t_width, s_stages, s_width = PAIRS[name]
    x = torch.zeros(2, 3, 32, 32)
    for arch, stages, width in [(t_arch, t_stages, t_width), (s_arch, s_stages, s_width)]:
        f = build_model(ModelDef(arch=arch, lr=0.1), None, (3, 32, 32), CLASSES).eval().forward_features(x)
        assert [tuple(m.shape[1:3]) for m in f.stages] == stages
        assert f.embedding.shape == (2, width)


@pytest.mark.parametrize("method", ["at", "rkd"])
@pytest.mark.parametrize("name", list(PAIRS))
def test_matches_mdistiller(method, name):
    ce_expected, feature_expected, grad_expected = EXPECTED[method][name]
    student, teacher, labels = _pair(name)
    for t in _tensors(student):
        t.requires_grad_(True)
    loss = resolve_method(method, KDConfig(), "zoo.s.distill").feature_loss(student, [teacher], labels, 1)
    loss.backward()
    grads = [t.grad.flatten() for t in [*student.stages, student.embedding] if t.grad is not None]
    assert loss.item() == pytest.approx(ce_expected + feature_expected, rel=1e-5)
    assert torch.cat(grads).norm().item() == pytest.approx(grad_expected, rel=1e-4)
    feature_only = resolve_method({"method": method, "ce_weight": 0}, KDConfig(), "zoo.s.distill")
    assert feature_only.feature_loss(student, [teacher], labels, 1).item() == pytest.approx(feature_expected, rel=1e-5)


@pytest.mark.parametrize("method", ["at", "rkd"])
def test_gradients_reach_the_student_only(method):
    student, teacher, labels = _pair("resnet50-mobilenetv2")
    for t in _tensors(student) + _tensors(teacher):  # even a teacher that tracks gradients gets none
        t.requires_grad_(True)
    resolve_method(method, KDConfig(), "zoo.s.distill").feature_loss(student, [teacher], labels, 1).backward()
    used = student.stages[1:] if method == "at" else [student.embedding]
    for t in [*used, student.logits]:
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert all(t.grad is None for t in _tensors(teacher))


def test_defaults_are_mdistillers_cifar100_config():
    at = resolve_method({"method": "at"}, KDConfig(), "zoo.x.distill")
    assert (at.method, at.p, at.feat_weight, at.ce_weight) == ("at", 2, 1000.0, 1.0)  # CFG.AT
    rkd = resolve_method({"method": "rkd"}, KDConfig(), "zoo.x.distill")
    assert (rkd.distance_weight, rkd.angle_weight, rkd.feat_weight, rkd.ce_weight) == (25.0, 50.0, 1.0, 1.0)
    assert (rkd.eps, rkd.squared) == (1e-12, False)  # CFG.RKD.PDIST
    assert at.needs_features and rkd.needs_features


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match=r"zoo\.x\.distill\.p"):
        resolve_method({"method": "at", "p": 1.5}, KDConfig(), "zoo.x.distill")
    with pytest.raises(ValueError, match=r"zoo\.x\.distill\.angle_weight"):
        resolve_method({"method": "rkd", "angle_weight": -1}, KDConfig(), "zoo.x.distill")


@pytest.mark.parametrize("method", ["at", "rkd", "fitnet", "crd", "reviewkd"])
def test_a_kd_term_adds_repdistillers_distill_kl(method):
    student, teacher, labels = _pair("resnet32x4-resnet8x4")
    plain = resolve_method({"method": method}, KDConfig(), "zoo.s.distill")
    with_kd = resolve_method({"method": method, "kd_weight": 0.9, "temperature": 4}, KDConfig(), "zoo.s.distill")
    assert plain.kd_weight == 0 and "logits" in plain.teacher_features
    torch.manual_seed(0)
    parts = plain.learned_parts(student, teacher, torch.arange(BATCH) % 4, seed=0)
    index = torch.arange(BATCH)
    if parts is not None:
        parts.eval()  # CRD updates its memory in every call: compare from the same state
        state = {k: v.clone() for k, v in parts.state_dict().items()}
    difference = with_kd.feature_loss(student, [teacher], labels, 30, parts=parts, index=index)
    if parts is not None:
        parts.load_state_dict(state)
        parts._generator = None  # CRD: the same negatives again (its stream restarts)
    difference = difference - plain.feature_loss(student, [teacher], labels, 30, parts=parts, index=index)
    # RepDistiller's DistillKL: KL(p_t || p_s) at T 4, summed over classes, averaged over the batch, times T^2.
    p_t = torch.softmax(teacher.logits / 4, dim=1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student.logits / 4, dim=1))).sum(1).mean()
    assert difference.item() == pytest.approx(0.9 * 16 * kl.item(), rel=1e-4)
