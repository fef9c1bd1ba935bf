import pytest
import torch
import torch.nn.functional as F

from distillbench.models.layers import Dropout


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout_keeps_1_minus_p_and_preserves_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    y = Dropout(p).train()(x)
    kept = y != 0
    # 400k Bernoulli draws: the kept fraction's standard error is ~0.0008.
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.004)
    assert torch.all(y[kept] == 1 / (1 - p))  # inverted dropout: survivors scaled up
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


def test_dropout_masks_are_independent_across_elements():
    torch.manual_seed(0)
    kept = (Dropout(0.5).train()(torch.ones(200_000)) != 0).float()
    # Neighbours share a random 64-bit word; a correlation would show up between them.
    correlation = torch.corrcoef(torch.stack([kept[:-1], kept[1:]]))[0, 1].item()
    assert abs(correlation) < 0.01


def test_dropout_gradient_uses_the_forward_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 32, 15, 15, requires_grad=True)
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.75)


def test_dropout_is_reproducible_and_layout_independent():
    x = torch.randn(8, 16, 6, 6)
    torch.manual_seed(3)
    a = Dropout(0.25).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.25).train()(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(a, b)


def test_dropout_in_eval_mode_and_unusual_p_fall_back_to_torch():
    x = torch.randn(32, 32)
    assert torch.equal(Dropout(0.25).eval()(x), x)
    torch.manual_seed(1)
    ours = Dropout(0.3).train()(x)  # 0.3 is no multiple of 1/256: torch's own dropout, same draws
    torch.manual_seed(1)
    assert torch.equal(ours, F.dropout(x, 0.3, training=True))
