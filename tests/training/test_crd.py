"""CRD against mdistiller's own code on fixed tensors (losses, gradients, memory updates), its
negative sampling, its memory update, and its defaults.

The expected values were printed by mdistiller itself (megvii-research/mdistiller at a08d46f), in a
scratch directory outside the repo (/tmp/ref22, its files loaded by path with yacs installed there;
``AliasMethod.cuda`` made a no-op, the CPU having no GPU): ``CRD(student, teacher, CFG, N)`` built
right after ``torch.manual_seed(0)`` with ``CFG`` from ``mdistiller/engine/cfg.py`` but
``CRD.FEAT.STUDENT_DIM`` 64, ``TEACHER_DIM`` 96 and ``NCE.K`` 40 (the test's sizes; the other keys
as they are), student and teacher being stub modules returning ``_step(k)``'s tensors as ``(logits,
{"pooled_feat": embedding})``. Built so, its embedding layers and memories equal what
``learned_parts`` builds under ``global_rng(0)`` (same draws in the same order; the script checked
it). Two calls of ``forward_train(image, target, index, contrastive_index)`` with ``_step(0)`` then
``_step(1)`` (their contrast indices given, so that sampling is not compared; the second batch
shares four images with the first and its contrast indices reach rows the first updated), printing
``losses_dict`` (``loss_ce``, the weighted CE, and ``loss_kd``, the weighted contrastive term), after
the first the norms of the gradient of their sum w.r.t. the student's embedding, the student's
embedding layer and the teacher's (weights and biases stacked), and the normalising constants
``contrast.params[2:4]``; after the second the updated memory rows of both batches' images
projected on a fixed vector.

Tolerance: relative 1e-5 on everything (float32: the scores here are one matrix product with the
whole memory, there a batched product with gathered rows, which may round differently; on the CPU
where they were printed all agreed to the last bit but one gradient norm, off by 1e-7).
"""

import pytest
import torch

from distillbench.config import KDConfig
from distillbench.models.classifier import Features
from distillbench.training.distill.base import resolve_method
from distillbench.training.distill.crd import CRD, CRDParts, crd_loss, draw_contrast
from distillbench.training.randomness import global_rng

N, CLASSES, BATCH, NEGATIVES = 300, 10, 8, 40
S_WIDTH, T_WIDTH = 64, 96

# Printed by mdistiller (module docstring), all float32.
EXPECTED_LOSSES = [  # (loss_ce, loss_kd) of _step(0), then of _step(1)
    (5.540832996368408, 8.249995231628418),
    (6.155383110046387, 7.553050518035889),
]
# After _step(0): gradient norms w.r.t. the student's embedding, embed_s's and embed_t's parameters.
EXPECTED_GRADIENTS = (0.3441849946975708, 5.015408039093018, 5.94778299331665)
EXPECTED_Z = (664.6000366210938, 585.9474487304688)  # Z_v1 (the student's scores), Z_v2, set by _step(0)
# After _step(1): memory_v1 (the student's), then memory_v2, rows randperm(N)[:12] (both batches' images)
# times randn(128) from Generator().manual_seed(7).
EXPECTED_MEMORY = (
    [-0.7166500091552734, -0.413291871547699, -0.08155786991119385, -1.1932061910629272, 0.35053175687789917,
     0.22892212867736816, -0.4091518521308899, 1.2563766241073608, -0.36009281873703003, -0.8944364190101624,
     0.028680667281150818, -0.357636034488678],
    [0.49941980838775635, 1.4828394651412964, -2.1753337383270264, 0.9907617568969727, -0.013576686382293701,
     1.5001901388168335, 0.20598170161247253, -0.6982374787330627, 0.67424476146698, 0.6969624161720276,
     -0.10302983224391937, 0.1993674635887146],
)  # fmt: skip


def _train_labels() -> torch.Tensor:
    """The N training images' labels, ``randint(0, 10)`` from ``Generator().manual_seed(5)``."""
    return torch.randint(0, CLASSES, (N,), generator=torch.Generator().manual_seed(5))


def _step(k: int) -> tuple[Features, Features, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student, teacher, labels, index, contrast index) of batch k (0 or 1): the images
    ``randperm(N)[4k : 4k + 8]`` (``Generator().manual_seed(4)``); contrast indices each image's own
    position then 40 ``randint(0, N)`` (seed 6 + k); student embedding ``[8, 64]``, teacher's
    ``[8, 96]``, logits ``3 * randn [8, 10]`` (student, then teacher), seed 20 + k."""
    index = torch.randperm(N, generator=torch.Generator().manual_seed(4))[4 * k : 4 * k + BATCH]
    drawn = torch.randint(0, N, (BATCH, NEGATIVES), generator=torch.Generator().manual_seed(6 + k))
    g = torch.Generator().manual_seed(20 + k)
    student = Features([], torch.randn(BATCH, S_WIDTH, generator=g), 3 * torch.randn(BATCH, CLASSES, generator=g))
    teacher = Features([], torch.randn(BATCH, T_WIDTH, generator=g), 3 * torch.randn(BATCH, CLASSES, generator=g))
    return student, teacher, _train_labels()[index], index, torch.cat([index[:, None], drawn], dim=1)


def _method(**settings) -> CRD:
    return resolve_method({"method": "crd", "negatives": NEGATIVES, **settings}, KDConfig(), "zoo.s.distill")


def _parts(method: CRD, labels: torch.Tensor | None = None, seed: int = 0) -> CRDParts:
    student, teacher, *_ = _step(0)
    with global_rng(0):
        return method.learned_parts(student, teacher, _train_labels() if labels is None else labels, seed)


def _terms(method: CRD, parts: CRDParts, k: int) -> tuple[torch.Tensor, torch.Tensor, Features]:
    """(weighted CE, weighted contrastive term, student) of ``_step(k)``, its contrast indices given."""
    student, teacher, labels, index, contrast = _step(k)
    student.embedding.requires_grad_(True)
    ce = method.ce_weight * torch.nn.functional.cross_entropy(student.logits, labels)
    return ce, method.feat_weight * crd_loss(parts, student.embedding, teacher.embedding, index, contrast), student


def test_matches_mdistiller():
    method = _method()
    parts = _parts(method)
    ce, kd, student = _terms(method, parts, 0)
    assert (ce.item(), kd.item()) == pytest.approx(EXPECTED_LOSSES[0], rel=1e-5)
    (ce + kd).backward()
    norms = [student.embedding.grad.norm()]
    norms += [
        torch.cat([p.grad.flatten() for p in embed.parameters()]).norm() for embed in (parts.embed_s, parts.embed_t)
    ]
    assert [n.item() for n in norms] == pytest.approx(EXPECTED_GRADIENTS, rel=1e-5)
    assert (parts.z_s.item(), parts.z_t.item()) == pytest.approx(EXPECTED_Z, rel=1e-5)
    with torch.no_grad():
        ce, kd, _ = _terms(method, parts, 1)
    assert (ce.item(), kd.item()) == pytest.approx(EXPECTED_LOSSES[1], rel=1e-5)
    rows = torch.randperm(N, generator=torch.Generator().manual_seed(4))[:12]
    probe = torch.randn(128, generator=torch.Generator().manual_seed(7))
    for memory, expected in zip((parts.memory_s, parts.memory_t), EXPECTED_MEMORY, strict=True):
        assert (memory[rows] @ probe).tolist() == pytest.approx(expected, rel=1e-5)


def test_feature_loss_draws_then_weighs_crd():
    """``feature_loss`` = CE + 0.8 (L_s + L_t) on freshly drawn negatives; gradients reach the student
    and both embedding layers, not the teacher."""
    method = _method()
    student, teacher, labels, index, _ = _step(0)
    for t in (student.embedding, student.logits, teacher.embedding):
        t.requires_grad_(True)
    parts, twin = _parts(method), _parts(method)
    loss = method.feature_loss(student, [teacher], labels, 1, parts=parts, index=index)
    contrast = draw_contrast(twin, index)  # the same seed: the same draws
    ce = torch.nn.functional.cross_entropy(student.logits, labels)
    expected = ce + 0.8 * crd_loss(twin, student.embedding, teacher.embedding, index, contrast)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    trained = [student.embedding, student.logits, *parts.parameters()]
    assert all(t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in trained)
    assert teacher.embedding.grad is None


def _labels(counts: list[int]) -> torch.Tensor:
    """Training labels with ``counts[c]`` images of class c, shuffled (seed 8)."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(8))]


def test_negatives_are_other_classes_distinct_positive_first_and_seeded():
    labels = _train_labels()
    parts = _parts(_method(), labels)
    index = torch.arange(0, N, 10)  # 30 images
    contrast = draw_contrast(parts, index)
    assert contrast.shape == (30, 1 + NEGATIVES)
    assert torch.equal(contrast[:, 0], index)
    negatives = contrast[:, 1:]
    assert (labels[negatives] != labels[index][:, None]).all()
    assert all(len(set(row.tolist())) == NEGATIVES for row in negatives)  # without replacement
    again = draw_contrast(_parts(_method(), labels), index)  # a new run of the same seed
    assert torch.equal(again, contrast)
    assert not torch.equal(draw_contrast(parts, index), contrast)  # the stream moves on
    assert not torch.equal(draw_contrast(_parts(_method(), labels, seed=1), index), contrast)


def test_negatives_are_uniform_over_the_other_classes():
    labels = _train_labels()
    parts = _parts(_method(), labels)
    index = torch.full((BATCH,), 0)
    counts = torch.bincount(torch.cat([draw_contrast(parts, index)[:, 1:].flatten() for _ in range(100)]), minlength=N)
    eligible = labels != labels[0]
    mean = BATCH * 100 * NEGATIVES / eligible.sum().item()  # about 118 draws each
    assert (counts[~eligible] == 0).all()
    assert counts[eligible].min() > mean / 2 and counts[eligible].max() < mean * 1.5


def test_too_few_other_images_draw_with_replacement():
    """Class 0: 200 images, so 100 others; classes 1-9: 11 or 12 images, 288-289 others."""
    labels = _labels([200] + [12] * 5 + [11] * 4)
    index = torch.cat([(labels == 0).nonzero()[:3, 0], (labels != 0).nonzero()[:3, 0]])
    mixed = draw_contrast(_parts(_method(negatives=150), labels), index)  # with replacement for class 0 only
    for row, i in zip(mixed[:, 1:], index, strict=True):
        assert (labels[row] != labels[i]).all()
        distinct = len(set(row.tolist()))
        assert distinct < 150 if labels[i] == 0 else distinct == 150
    everyone = draw_contrast(_parts(_method(negatives=295), labels), index)  # with replacement for all
    assert all(len(set(row.tolist())) < 295 for row in everyone[:, 1:])
    assert (labels[everyone[:, 1:]] != labels[index][:, None]).all()
    with pytest.raises(ValueError, match="one class"):
        _parts(_method(), torch.zeros(N, dtype=torch.long))


def test_memory_update_moves_the_batchs_rows_only():
    method = _method(momentum=0.3)
    parts = _parts(method)
    before = {name: getattr(parts, name).clone() for name in ("memory_s", "memory_t")}
    student, teacher, _, index, contrast = _step(0)
    crd_loss(parts, student.embedding, teacher.embedding, index, contrast)
    z = (parts.z_s.item(), parts.z_t.item())
    assert min(z) > 0
    others = torch.ones(N, dtype=torch.bool)
    others[index] = False
    with torch.no_grad():
        embedded = {"memory_s": parts.embed_s(student.embedding), "memory_t": parts.embed_t(teacher.embedding)}
    for name, old in before.items():
        new = getattr(parts, name)
        assert torch.equal(new[others], old[others])
        expected = torch.nn.functional.normalize(0.3 * old[index] + 0.7 * embedded[name], dim=1)
        torch.testing.assert_close(new[index], expected)
        torch.testing.assert_close(new[index].norm(dim=1), torch.ones(BATCH))
    student, teacher, _, index, contrast = _step(1)
    crd_loss(parts, student.embedding, teacher.embedding, index, contrast)
    assert (parts.z_s.item(), parts.z_t.item()) == z  # set once, by the first batch


def test_parts_save_their_state_and_load_it():
    method = _method()
    parts = _parts(method)
    student, teacher, _, index, contrast = _step(0)
    crd_loss(parts, student.embedding, teacher.embedding, index, contrast)
    state = parts.state_dict()
    expected = {"memory_s", "memory_t", "z_s", "z_t"} | {
        f"embed_{w}.linear.{p}" for w in "st" for p in ("weight", "bias")
    }
    assert set(state) == expected  # the labels are the split's, not saved
    assert state["memory_s"].shape == (N, 128)
    fresh = _parts(method)  # as the run started: its memory not updated yet, Z not set
    assert not torch.equal(fresh.memory_s, parts.memory_s) and fresh.z_s.item() < 0
    fresh.load_state_dict(state)  # resumes where the saved parts were: the next step computes the same
    student, teacher, _, index, contrast = _step(1)
    assert torch.equal(
        crd_loss(fresh, student.embedding, teacher.embedding, index, contrast),
        crd_loss(parts, student.embedding, teacher.embedding, index, contrast),
    )


def test_defaults_are_mdistillers_cifar100_config():
    crd = resolve_method({"method": "crd"}, KDConfig(), "zoo.x.distill")
    # CFG.CRD: FEAT.DIM, NCE.K, NCE.MOMENTUM, NCE.TEMPERATURE, LOSS.FEAT_WEIGHT, LOSS.CE_WEIGHT
    assert (crd.feat_dim, crd.negatives, crd.momentum, crd.nce_temperature) == (128, 16384, 0.5, 0.07)
    assert (crd.feat_weight, crd.ce_weight) == (0.8, 1.0)
    assert crd.needs_features and crd.teacher_features == {"embedding", "logits"}


@pytest.mark.parametrize(
    ("setting", "value"),
    [("negatives", 0), ("feat_dim", 0), ("momentum", 1.0), ("nce_temperature", 0.001), ("feat_weight", -1)],
)
def test_bad_parameters_are_named(setting, value):
    with pytest.raises(ValueError, match=rf"zoo\.x\.distill\.{setting}"):
        resolve_method({"method": "crd", setting: value}, KDConfig(), "zoo.x.distill")
