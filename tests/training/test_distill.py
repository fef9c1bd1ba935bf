import numpy as np
import pytest
import torch

from distillbench.config import KDConfig
from distillbench.training.distill import kd_loss


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("scale", [True, False])
def test_kd_loss_equals_a_hand_computation(scale):
    student = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    teacher = np.array([[1.5, 1.0, -0.5], [-1.0, 0.0, 2.5]])
    labels = np.array([0, 2])
    t, alpha = 3.0, 0.5
    p_t, p_s = _softmax(teacher / t), _softmax(student / t)
    kl = np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1))
    ce = np.mean(-np.log(_softmax(student)[np.arange(2), labels]))
    expected = alpha * (t * t if scale else 1.0) * kl + (1 - alpha) * ce
    got = kd_loss(
        torch.tensor(student),
        torch.tensor(teacher),
        torch.tensor(labels),
        KDConfig(temperature=t, alpha=alpha, scale_by_t2=scale),
    )
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_alpha_zero_is_plain_cross_entropy():
    student, teacher = torch.randn(4, 10), torch.randn(4, 10)
    labels = torch.tensor([1, 2, 3, 4])
    loss = kd_loss(student, teacher, labels, KDConfig(alpha=0.0))
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(student, labels).item())
