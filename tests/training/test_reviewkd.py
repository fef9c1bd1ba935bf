"""ReviewKD against mdistiller's own code on fixed tensors, its hierarchical context loss by hand, its
learned parts' size, and its parameters.

The expected values were printed by mdistiller itself (megvii-research/mdistiller at a08d46f), in a
scratch directory outside the repo (/tmp/ref22, its files loaded by path with yacs installed there;
script /tmp/ref22/reviewkd_values.py): ``ReviewKD(student, teacher, cfg).forward_train(image, labels,
epoch=EPOCH)`` (``mdistiller/distillers/ReviewKD.py``, ``cfg`` = ``CFG`` of ``mdistiller/engine/cfg.py``
with ``REVIEWKD.REVIEWKD_WEIGHT`` 5.0 as ``configs/cifar100/reviewkd.yaml`` sets it, ``SHAPES``,
``OUT_SHAPES``, ``IN_CHANNELS``, ``OUT_CHANNELS`` written for the pair's shapes, ``STU_PREACT`` as the
case says), where student and teacher are stub modules returning ``_pair(name)``'s tensors as
``(logits, {"feats": stages, "preact_feats": preact_stages, "pooled_feat": embedding})``, and its ABF
modules hold the weights of ours (``_parts``, drawn with seed 0; its state dict loaded into
``distiller.abfs``: the parameter names are the same). Printed: its ``losses_dict`` (``loss_ce``, the
weighted CE, and ``loss_kd``, the weighted, warmed-up review term), the norm of the gradient of their
sum w.r.t. the student's stage maps, pre-activation maps and embedding (stacked), and that w.r.t. the
ABF parameters. Tolerance: relative 1e-6 on the CE, 1e-5 on the review term (checked as the loss
minus the CE: their float32 sum rounds by under 4e-6), 1e-4 on the gradient norms (float32; summation
order). Where they were printed, ours agree with them bit for bit.
"""

import pytest
import torch
import torch.nn.functional as F

from distillbench.config import KDConfig
from distillbench.models.classifier import Features
from distillbench.training.distill import resolve_method
from distillbench.training.distill.reviewkd import ReviewKD, hcl_loss
from distillbench.training.randomness import global_rng

BATCH, CLASSES = 4, 100

# name: (teacher stages [(C, H)], teacher embedding width, student's, student's): the zoo's shapes at
# 32x32 inputs (tests/training/test_feature_methods.py, PAIRS).
PAIRS = {
    "resnet32x4-resnet8x4": (
        [(32, 32), (64, 32), (128, 16), (256, 8)],
        256,
        [(32, 32), (64, 32), (128, 16), (256, 8)],
        256,
    ),
    "wrn_40_2-wrn_16_2": ([(16, 32), (32, 32), (64, 16), (128, 8)], 128, [(16, 32), (32, 32), (64, 16), (128, 8)], 128),
    # The student's maps are smaller than the teacher's (upsampled to them) and its embedding wider than
    # 512 (the fusion width's cap): mobilenetv2's shapes, and resnet50's sizes at 1/8 of its channels.
    "resnet50/8-mobilenetv2": (
        [(8, 32), (32, 32), (64, 16), (128, 8), (256, 4)],
        256,
        [(16, 16), (12, 16), (16, 8), (48, 4), (160, 2)],
        1280,
    ),
}

# (pair, epoch, student_preact): (loss_ce, loss_kd, student gradient norm, ABF gradient norm), all
# float32, printed by /tmp/ref22/reviewkd_values.py (module docstring).
EXPECTED = {
    ("resnet32x4-resnet8x4", 1, False): (
        13.187408447265625,
        1.422076940536499,
        0.024965979158878326,
        1.0810588598251343,
    ),
    ("resnet32x4-resnet8x4", 30, False): (
        13.187408447265625,
        28.441539764404297,
        0.49931952357292175,
        21.624494552612305,
    ),
    ("wrn_40_2-wrn_16_2", 1, False): (8.038360595703125, 1.41839599609375, 0.04081682860851288, 0.996755838394165),
    ("wrn_40_2-wrn_16_2", 30, False): (8.038360595703125, 28.367919921875, 0.8163365125656128, 19.935178756713867),
    ("resnet32x4-resnet8x4", 30, True): (
        13.187408447265625,
        28.441909790039062,
        0.5001927614212036,
        21.637454986572266,
    ),
    ("resnet50/8-mobilenetv2", 30, False): (
        8.031506538391113,
        35.24437713623047,
        0.515600860118866,
        32.870208740234375,
    ),
}

# mdistiller's ReviewKD(resnet8x4, resnet32x4, CFG).get_extra_parameters() (CFG.REVIEWKD's shapes are
# that pair's), and the norm of all its ABF parameters built right after torch.manual_seed(0).
EXTRA_PARAMETERS = 1808774
INIT_NORM = 58.81037521362305


def _features(stages: list[tuple[int, int]], width: int, seed: int) -> Features:
    """Standard-normal stage maps ``[4, C, H, H]``, embedding ``[4, width]``, logits ``[4, 100]`` (times
    3) and pre-activation maps (distinct from the stage maps), drawn in that order from
    ``torch.Generator().manual_seed(seed)``."""
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(BATCH, c, h, h, generator=g) for c, h in stages]
    embedding, logits = torch.randn(BATCH, width, generator=g), 3 * torch.randn(BATCH, CLASSES, generator=g)
    return Features(maps, embedding, logits, [torch.randn(BATCH, c, h, h, generator=g) for c, h in stages])


def _pair(name: str) -> tuple[Features, Features, torch.Tensor]:
    """(student, teacher, labels) for ``PAIRS[name]``: teacher seed 1, student seed 2, labels seed 3."""
    t_stages, t_width, s_stages, s_width = PAIRS[name]
    labels = torch.randint(0, CLASSES, (BATCH,), generator=torch.Generator().manual_seed(3))
    return _features(s_stages, s_width, 2), _features(t_stages, t_width, 1), labels


def _student_tensors(f: Features) -> list[torch.Tensor]:
    return [*f.stages, *f.preact_stages, f.embedding]


def _parts(method: ReviewKD, student: Features, teacher: Features, labels: torch.Tensor) -> torch.nn.Module:
    with global_rng(0):
        return method.learned_parts(student, teacher, labels, 0).train()


def _norm(tensors: list[torch.Tensor]) -> float:
    return torch.cat([t.grad.flatten() for t in tensors if t.grad is not None]).norm().item()


@pytest.mark.parametrize("case", list(EXPECTED))
def test_matches_mdistiller(case):
    name, epoch, preact = case
    ce_expected, review_expected, grad_expected, parts_grad_expected = EXPECTED[case]
    student, teacher, labels = _pair(name)
    for t in _student_tensors(student) + [student.logits]:
        t.requires_grad_(True)
    method = resolve_method({"method": "reviewkd", "student_preact": preact}, KDConfig(), "zoo.s.distill")
    parts = _parts(method, student, teacher, labels)
    loss = method.feature_loss(student, [teacher], labels, epoch, parts=parts)
    loss.backward()
    # The two terms apart: the cross-entropy alone, and the rest (float32 rounding of the sum: < 4e-6).
    ce = F.cross_entropy(student.logits, labels).item()
    assert ce == pytest.approx(ce_expected, rel=1e-6)
    assert loss.item() - ce == pytest.approx(review_expected, rel=1e-5)
    assert _norm(_student_tensors(student)) == pytest.approx(grad_expected, rel=1e-4)
    assert _norm(list(parts.parameters())) == pytest.approx(parts_grad_expected, rel=1e-4)


def test_hcl_loss_by_hand():
    # 4x4 map: arange(16) against 0. MSE 1240/16 = 77.5; 2x2 pooled means 2.5, 4.5, 10.5, 12.5: MSE
    # 293/4 = 73.25, weight 1/2 (the 4x4 level is skipped: not smaller than the map); 1x1 mean 7.5:
    # 56.25, weight 1/4. (77.5 + 36.625 + 14.0625) / 1.75 = 73.25.
    s4 = torch.arange(16.0).view(1, 1, 4, 4)
    # 2x2 map [[1, 2], [3, 4]] against 0: MSE 7.5, 1x1 mean 2.5: 6.25 weight 1/2: (7.5 + 3.125) / 1.5.
    s2 = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    # 1x1 map (the embedding): the MSE alone, (3 - 1)^2 = 4. 8x8 map, a constant difference of 2 over
    # 2 samples and 3 channels: every level's MSE is 4, so is their weighted mean.
    s1, t1 = torch.full((1, 1, 1, 1), 3.0), torch.ones(1, 1, 1, 1)
    s8 = torch.full((2, 3, 8, 8), 2.0)
    students = [s8, s4, s2, s1]
    teachers = [torch.zeros_like(s8), torch.zeros_like(s4), torch.zeros_like(s2), t1]
    expected = 4.0 + 73.25 + (7.5 + 3.125) / 1.5 + 4.0
    assert hcl_loss(students, teachers).item() == pytest.approx(expected, rel=1e-6)
    assert hcl_loss([s4], [torch.zeros_like(s4)]).item() == pytest.approx(73.25, rel=1e-6)


def test_learned_parts_are_mdistillers():
    student, teacher, labels = _pair("resnet32x4-resnet8x4")
    parts = _parts(ReviewKD(), student, teacher, labels)
    assert sum(p.numel() for p in parts.parameters()) == EXTRA_PARAMETERS
    # Built in mdistiller's order from the same seed: the same initial weights.
    assert torch.cat([p.flatten() for p in parts.parameters()]).norm().item() == pytest.approx(INIT_NORM, rel=1e-6)
    # Deepest first: the embedding's module (no fusion), then the stages' from the last.
    assert parts.abfs[0].att_conv is None and all(abf.att_conv is not None for abf in parts.abfs[1:])
    assert [abf.conv2[0].out_channels for abf in parts.abfs] == [256, 256, 128, 64]
    assert parts.out_shapes == [(1, 1), (8, 8), (16, 16), (32, 32)]
    # The fusion width is the student's embedding width, at most 512 (resnet50 -> mobilenetv2's shapes,
    # as the authors' build_review_kd writes them: in 12, 16, 48, 160, 1280; out 256 ... 2048, 2048).
    t_shapes = [(64, 32), (256, 32), (512, 16), (1024, 8), (2048, 4)]
    s_shapes = [(16, 16), (12, 16), (16, 8), (48, 4), (160, 2)]
    t = Features([torch.empty(1, c, h, h) for c, h in t_shapes], torch.empty(1, 2048), torch.empty(1, CLASSES))
    s = Features([torch.empty(1, c, h, h) for c, h in s_shapes], torch.empty(1, 1280), torch.empty(1, CLASSES))
    parts = ReviewKD().learned_parts(s, t, labels, 0)
    assert {abf.conv1[0].out_channels for abf in parts.abfs} == {512}
    assert [abf.conv1[0].in_channels for abf in parts.abfs] == [1280, 160, 48, 16, 12]
    assert [abf.conv2[0].out_channels for abf in parts.abfs] == [2048, 2048, 1024, 512, 256]
    assert parts.out_shapes == [(1, 1), (4, 4), (8, 8), (16, 16), (32, 32)]


def test_gradients_reach_the_student_and_parts_only():
    student, teacher, labels = _pair("resnet50/8-mobilenetv2")
    for t in _student_tensors(student) + _student_tensors(teacher) + [student.logits, teacher.logits]:
        t.requires_grad_(True)
    method = ReviewKD()
    parts = _parts(method, student, teacher, labels)
    method.feature_loss(student, [teacher], labels, 3, parts=parts).backward()
    for t in [*student.stages[1:], student.embedding, student.logits, *parts.parameters()]:
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert student.stages[0].grad is None and all(t.grad is None for t in student.preact_stages)  # not used
    assert all(t.grad is None for t in _student_tensors(teacher) + [teacher.logits])


def test_a_last_batch_of_one_image_fuses_with_the_running_statistics():
    student, teacher, labels = _pair("resnet32x4-resnet8x4")
    method = ReviewKD()
    parts = _parts(method, student, teacher, labels)
    one = [Features([m[:1] for m in f.stages], f.embedding[:1], f.logits[:1], [m[:1] for m in f.preact_stages])
           for f in (student, teacher)]  # fmt: skip
    running = {k: v.clone() for k, v in parts.state_dict().items() if "running" in k}
    loss = method.feature_loss(one[0], [one[1]], labels[:1], 3, parts=parts)  # train-mode BatchNorm would fail
    assert torch.isfinite(loss) and parts.training  # back in train mode for the next batch
    assert all(torch.equal(parts.state_dict()[k], v) for k, v in running.items())  # statistics used, not updated
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):  # what it avoids
        parts(one[0].stages[1:] + [one[0].embedding[:, :, None, None]])


def test_unequal_stage_counts_are_refused():
    student, _, labels = _pair("wrn_40_2-wrn_16_2")  # 4 stages
    _, teacher, _ = _pair("resnet50/8-mobilenetv2")  # 5 stages
    with pytest.raises(ValueError, match=r"student has 4 stages .* teacher 5"):
        ReviewKD().learned_parts(student, teacher, labels, 0)


def test_defaults_are_mdistillers_cifar100_config():
    method = resolve_method({"method": "reviewkd"}, KDConfig(), "zoo.x.distill")
    assert isinstance(method, ReviewKD) and method.needs_features
    # CFG.REVIEWKD, with REVIEWKD_WEIGHT from configs/cifar100/reviewkd.yaml (CFG's own default is 1.0).
    assert (method.ce_weight, method.reviewkd_weight, method.warmup_epochs, method.student_preact) == (
        1.0,
        5.0,
        20,
        False,
    )


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match=r"zoo\.x\.distill\.reviewkd_weight"):
        resolve_method({"method": "reviewkd", "reviewkd_weight": -1}, KDConfig(), "zoo.x.distill")
    with pytest.raises(ValueError, match=r"zoo\.x\.distill\.warmup_epochs"):
        resolve_method({"method": "reviewkd", "warmup_epochs": 2.5}, KDConfig(), "zoo.x.distill")
    with pytest.raises(ValueError, match=r"zoo\.x\.distill\.mid_channel"):
        resolve_method({"method": "reviewkd", "mid_channel": 256}, KDConfig(), "zoo.x.distill")
