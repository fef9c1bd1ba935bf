"""Each distillation loss against a hand computation of its published formula (numpy, small fixed
tensors), the aggregations' invariances, bf16 gradients, and the errors for bad settings."""

import numpy as np
import pytest
import torch

from distillbench.config import KDConfig
from distillbench.training.distill import AGGREGATIONS, METHODS, resolve_method

STUDENT = np.array([[2.0, 0.5, -1.0, 0.3], [0.1, 0.2, 3.0, -0.4], [1.0, -2.0, 0.0, 0.5]])
TEACHER = np.array([[1.5, 1.0, -0.5, 0.0], [-1.0, 0.0, 2.5, 0.2], [0.3, -0.7, 1.2, 2.0]])
OTHER = np.array([[0.2, 2.0, -0.1, 0.4], [0.5, 0.4, 1.5, -1.0], [2.2, 0.1, -0.3, 0.0]])
LABELS = np.array([0, 2, 3])
ROWS = np.arange(3)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _kl(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def _ce(z):
    return -np.log(_softmax(z)[ROWS, LABELS])


def _loss(name, teachers=(TEACHER,), epoch=1, **params):
    method = resolve_method({"method": name, **params}, KDConfig(), "zoo.s.distill")
    stacked = torch.tensor(np.stack(teachers))
    if method.needs_all_teacher_logits:
        stacked = method.prepare(stacked, torch.tensor(LABELS))
    return method.loss(torch.tensor(STUDENT), stacked, torch.tensor(LABELS), epoch).item()


def test_kd():
    t, alpha = 3.0, 0.4
    expected = np.mean(alpha * t * t * _kl(_softmax(TEACHER / t), _softmax(STUDENT / t)) + (1 - alpha) * _ce(STUDENT))
    assert _loss("kd", temperature=t, alpha=alpha, scale_by_t2=True) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("epoch", [5, 40])
def test_dkd(epoch):
    t, alpha, beta, warmup = 4.0, 1.0, 8.0, 20
    p_s, p_t = _softmax(STUDENT / t), _softmax(TEACHER / t)
    b_s = np.stack([p_s[ROWS, LABELS], 1 - p_s[ROWS, LABELS]], axis=1)
    b_t = np.stack([p_t[ROWS, LABELS], 1 - p_t[ROWS, LABELS]], axis=1)
    tckd = _kl(b_t, b_s)
    nckd = []
    for row in ROWS:
        keep = np.arange(4) != LABELS[row]
        nckd.append(_kl(_softmax(TEACHER[row, keep] / t), _softmax(STUDENT[row, keep] / t)))
    ramp = min(epoch / warmup, 1.0)
    expected = np.mean(_ce(STUDENT) + ramp * t * t * (alpha * tckd + beta * np.array(nckd)))
    assert _loss("dkd", epoch=epoch) == pytest.approx(expected, rel=1e-5)


def test_lskd():
    t, ce_weight, kd_weight = 2.0, 0.1, 9.0

    def standardize(z):
        return (z - z.mean(1, keepdims=True)) / z.std(1, ddof=1, keepdims=True)

    soft = t * t * _kl(_softmax(standardize(TEACHER) / t), _softmax(standardize(STUDENT) / t))
    expected = np.mean(ce_weight * _ce(STUDENT) + kd_weight * soft)
    assert _loss("lskd") == pytest.approx(expected, rel=1e-5)


def test_dist():
    t, beta, gamma = 4.0, 2.0, 2.0
    p_s, p_t = _softmax(STUDENT / t), _softmax(TEACHER / t)
    inter = np.mean([1 - np.corrcoef(p_s[i], p_t[i])[0, 1] for i in ROWS])
    intra = np.mean([1 - np.corrcoef(p_s[:, j], p_t[:, j])[0, 1] for j in range(4)])
    expected = np.mean(_ce(STUDENT)) + t * t * (beta * inter + gamma * intra)
    assert _loss("dist") == pytest.approx(expected, rel=1e-5)


def test_mean_probs_and_weighted_aggregations_by_hand():
    t, alpha = 3.0, 0.5
    kd = dict(temperature=t, alpha=alpha)
    p = (_softmax(TEACHER / t) + _softmax(OTHER / t)) / 2
    expected = np.mean(alpha * _kl(p, _softmax(STUDENT / t)) + (1 - alpha) * _ce(STUDENT))
    assert _loss("kd", (TEACHER, OTHER), aggregation="mean_probs", **kd) == pytest.approx(expected, rel=1e-5)
    per_teacher = np.stack([alpha * _kl(_softmax(z / t), _softmax(STUDENT / t)) + (1 - alpha) * _ce(STUDENT)
                            for z in (TEACHER, OTHER)])  # fmt: skip
    assert _loss("kd", (TEACHER, OTHER), aggregation="mean_kl", **kd) == pytest.approx(per_teacher.mean(), rel=1e-5)
    entropy = np.stack([-(_softmax(z / t) * np.log(_softmax(z / t))).sum(1) for z in (TEACHER, OTHER)])
    weights = _softmax(-entropy.T).T  # softmax over the teachers, per sample
    got = _loss("kd", (TEACHER, OTHER), aggregation="entropy_weighted", **kd)
    assert got == pytest.approx((weights * per_teacher).sum(0).mean(), rel=1e-5)
    ce = np.stack([-np.log(_softmax(z)[ROWS, LABELS]) for z in (TEACHER, OTHER)])
    weights = 1 - _softmax(ce.T).T  # CA-MKD with two teachers: (1 - softmax(CE)) / (K - 1)
    got = _loss("kd", (TEACHER, OTHER), aggregation="confidence_weighted", **kd)
    assert got == pytest.approx((weights * per_teacher).sum(0).mean(), rel=1e-5)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
@pytest.mark.parametrize("name", ["kd", "dkd", "lskd", "dist"])
def test_identical_teachers_make_every_aggregation_the_single_teacher_loss(name, aggregation):
    if name == "dist" and aggregation in {"entropy_weighted", "confidence_weighted"}:
        pytest.skip("dist is a batch loss: refused with per-sample weights (tested below)")
    alone = _loss(name, (TEACHER,))
    assert _loss(name, (TEACHER, TEACHER, TEACHER), aggregation=aggregation) == pytest.approx(alone, rel=1e-5)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_weights_sum_to_one_per_sample(aggregation):
    teachers = torch.tensor(np.stack([TEACHER, OTHER, -TEACHER]))
    target = AGGREGATIONS[aggregation](teachers, torch.tensor(LABELS), 3.0)
    if target.weights is not None:
        torch.testing.assert_close(target.weights.sum(0), torch.ones(3, dtype=target.weights.dtype))
        assert (target.weights >= 0).all()


def test_mean_probs_target_softens_to_the_mean_probabilities():
    teachers = torch.tensor(np.stack([TEACHER, OTHER]))
    target = AGGREGATIONS["mean_probs"](teachers, torch.tensor(LABELS), 2.0).logits
    expected = (_softmax(TEACHER / 2.0) + _softmax(OTHER / 2.0)) / 2
    np.testing.assert_allclose(torch.softmax(target / 2.0, dim=1).numpy(), expected, rtol=1e-6)


def test_standardized_mean_evens_out_logit_scales():
    loud = torch.tensor(np.stack([TEACHER * 10, OTHER]))
    target = AGGREGATIONS["standardized_mean"](loud, torch.tensor(LABELS), 3.0).logits
    rescaled = AGGREGATIONS["standardized_mean"](torch.tensor(np.stack([TEACHER, OTHER])), torch.tensor(LABELS), 3.0)
    # Scaling one teacher's logits changes the target's scale, not which teacher it follows.
    z = (target - target.mean(1, keepdim=True)) / target.std(1, keepdim=True)
    z_ref = (rescaled.logits - rescaled.logits.mean(1, keepdim=True)) / rescaled.logits.std(1, keepdim=True)
    torch.testing.assert_close(z, z_ref)


def test_label_smoothing_matches_the_teachers_mass_off_the_label():
    method = resolve_method({"method": "label_smoothing", "temperature": 2.0}, KDConfig(), "s")
    method.prepare(torch.tensor(TEACHER[None]), torch.tensor(LABELS))
    assert method.smoothing == pytest.approx(1 - _softmax(TEACHER / 2.0)[ROWS, LABELS].mean())
    q = torch.softmax(method.smoothed_logits(torch.tensor(LABELS), 4) / 2.0, dim=1).numpy()
    np.testing.assert_allclose(q[ROWS, LABELS], 1 - method.smoothing, rtol=1e-6)
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-6)


def test_shuffled_teacher_gives_each_image_another_images_soft_labels():
    method = resolve_method("shuffled_teacher", KDConfig(), "s")
    teachers = torch.arange(50.0).view(1, 50, 1).expand(1, 50, 3)
    shuffled = method.prepare(teachers, torch.zeros(50, dtype=torch.long))
    assert sorted(shuffled[0, :, 0].tolist()) == list(range(50))  # a permutation of the same soft labels
    assert (shuffled[0, :, 0] != teachers[0, :, 0]).float().mean() > 0.9
    torch.testing.assert_close(method.prepare(teachers, torch.zeros(50, dtype=torch.long)), shuffled)  # seeded
    other_run = method.prepare(teachers, torch.zeros(50, dtype=torch.long), seed=1)
    assert not torch.equal(other_run, shuffled)  # each run (seed) draws its own permutation


@pytest.mark.parametrize("name", sorted(n for n in METHODS if not METHODS[n].needs_features))  # logit losses
def test_gradients_are_finite_in_bf16(name):
    method = resolve_method(name, KDConfig(), "s")
    teachers = torch.randn(2, 64, 10) * 8
    labels = torch.randint(0, 10, (64,))
    if method.needs_all_teacher_logits:
        teachers = method.prepare(teachers, labels)
    student = (torch.randn(64, 10) * 8).bfloat16().requires_grad_()
    method.loss(student, teachers, labels, epoch=1).backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize(
    "distill, message",
    [
        (
            {"method": "dkdd"},
            "zoo.s.distill: unknown distillation method 'dkdd'; known: .* (did you mean 'dkd'\\?)$",
        ),
        ({"method": "dkd", "beta": -1}, "zoo.s.distill.beta: Input should be greater than or equal to 0"),
        ({"method": "dkd", "betta": 2}, "zoo.s.distill.betta: Extra inputs are not permitted"),
        ({"method": "kd", "aggregation": "median"}, "zoo.s.distill.aggregation: unknown aggregation 'median'"),
        (
            {"method": "kd", "aggregation": "mean_prob"},
            "aggregation 'mean_prob'; known: .* (did you mean 'mean_probs'\\?)$",
        ),
        ({"method": "dist", "aggregation": "entropy_weighted"}, "dist is a loss over the batch"),
    ],
)
def test_bad_settings_are_named(distill, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_method(distill, KDConfig(), "zoo.s.distill")


def test_kd_and_its_controls_take_the_global_section_as_default():
    method = resolve_method({"method": "kd", "alpha": 0.9}, KDConfig(temperature=5.0, alpha=0.1), "s")
    assert (method.temperature, method.alpha) == (5.0, 0.9)
    assert resolve_method("kd", KDConfig(temperature=7.0), "s").temperature == 7.0
    for control in ("label_smoothing", "shuffled_teacher"):  # the same KD as the reference they control
        assert resolve_method(control, KDConfig(temperature=7.0, scale_by_t2=True), "s").temperature == 7.0
    assert resolve_method("dkd", KDConfig(temperature=7.0), "s").temperature == 4.0  # its own default


def test_mean_kl_and_mean_probs_give_kd_the_same_gradient():
    """Averaging KL(q_k || p) over teachers differs from KL(mean q || p) by a constant: for kd the two
    aggregations train identically (the README says so), unlike for dkd or lskd."""
    grads = {}
    for aggregation in ("mean_kl", "mean_probs"):
        student = torch.tensor(STUDENT, requires_grad=True)
        method = resolve_method({"method": "kd", "aggregation": aggregation}, KDConfig(), "s")
        method.loss(student, torch.tensor(np.stack([TEACHER, OTHER])), torch.tensor(LABELS), 1).backward()
        grads[aggregation] = student.grad
    torch.testing.assert_close(grads["mean_kl"], grads["mean_probs"])


def test_a_bad_method_parameter_stops_the_cli_with_its_name(capsys):
    from distillbench.cli import main

    assert main(["run", "--set", "zoo.kd_resnet50.distill={method: dkd, beta: -1}"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "zoo.kd_resnet50.distill.beta: Input should be greater than or equal to 0" in err
    assert "Traceback" not in err
