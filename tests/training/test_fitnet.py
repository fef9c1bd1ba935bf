"""FitNets against mdistiller's own code on fixed tensors, its regressor's three shapes, and its errors.

The expected values were printed by mdistiller itself (megvii-research/mdistiller at a08d46f), in a
scratch directory outside the repo (/tmp/ref22/fitnet_values.py, loading ``mdistiller/distillers/
FitNet.py`` by path): ``FitNet(student, teacher, CFG).forward_train`` with stub networks returning the
tensors of ``test_feature_methods._pair(name)``, its ``conv_reg`` loaded with the state_dict of our
``ConvRegressor`` built right after ``torch.manual_seed(0)`` (mdistiller's ``ConvReg`` has the same
layer names): its ``loss_ce`` and ``loss_kd`` (weighted), the norm of the gradient of their sum
w.r.t. the student's stage maps and embedding, the norm of the regressor's gradient, and
``get_extra_parameters()``. Tolerance: relative 1e-5 on losses, 1e-4 on gradient norms (float32).
"""

import pytest
import torch

from distillbench.config import KDConfig
from distillbench.training.distill import resolve_method
from distillbench.training.distill.fitnet import ConvRegressor
from tests.training.test_feature_methods import PAIRS, _pair, _tensors

# (loss_ce, loss_kd, student gradient norm, regressor gradient norm, regressor parameters)
EXPECTED = {
    "resnet32x4-resnet8x4": (8.766013145446777, 149.623291015625, 0.30031710863113403, 12.779059410095215, 16768),
    "wrn_40_2-wrn_16_2": (12.084931373596191, 150.4190673828125, 0.427068829536438, 17.074827194213867, 4288),
    "resnet50-mobilenetv2": (10.307316780090332, 149.91668701171875, 0.15272018313407898, 24.424579620361328, 132608),
    "mobilenetv2-wrn_16_2": (12.084931373596191, 147.42347717285156, 1.6672093868255615, 75.60216522216797, 9264),
}


def _fitnet(**settings):
    return resolve_method({"method": "fitnet", **settings}, KDConfig(), "zoo.s.distill")


@pytest.mark.parametrize("name", list(PAIRS))
def test_matches_mdistiller(name):
    ce, hint, student_grad, regressor_grad, parameters = EXPECTED[name]
    student, teacher, labels = _pair(name)
    for t in _tensors(student):
        t.requires_grad_(True)
    method = _fitnet()
    torch.manual_seed(0)
    regressor = method.learned_parts(student, teacher, labels, seed=0)
    assert sum(p.numel() for p in regressor.parameters()) == parameters
    regressor.train()
    loss = method.feature_loss(student, [teacher], labels, 1, parts=regressor)
    loss.backward()
    assert loss.item() == pytest.approx(ce + hint, rel=1e-5)
    grads = torch.cat([t.grad.flatten() for t in [*student.stages, student.embedding] if t.grad is not None])
    assert grads.norm().item() == pytest.approx(student_grad, rel=1e-4)
    assert torch.cat([p.grad.flatten() for p in regressor.parameters()]).norm().item() == pytest.approx(
        regressor_grad, rel=1e-4
    )
    hint_only = _fitnet(ce_weight=0).feature_loss(student, [teacher], labels, 1, parts=regressor)
    assert hint_only.item() == pytest.approx(hint, rel=1e-5)


@pytest.mark.parametrize(
    ("student", "teacher", "layer"),
    [
        ((16, 16), (32, 8), torch.nn.Conv2d),
        ((16, 8), (32, 16), torch.nn.ConvTranspose2d),
        ((16, 10), (32, 8), torch.nn.Conv2d),
    ],
)
def test_regressor_maps_onto_the_teachers_shape(student, teacher, layer):
    (s_c, s_h), (t_c, t_h) = student, teacher
    regressor = ConvRegressor(torch.Size([2, s_c, s_h, s_h]), torch.Size([2, t_c, t_h, t_h]))
    assert isinstance(regressor.conv, layer)
    assert regressor(torch.randn(2, s_c, s_h, s_h)).shape == (2, t_c, t_h, t_h)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="twice, half, or at least"):
        ConvRegressor(torch.Size([2, 8, 6, 6]), torch.Size([2, 8, 8, 8]))
    student, teacher, labels = _pair("resnet32x4-resnet8x4")
    with pytest.raises(ValueError, match="hint_layer 7: the student has 4 stage outputs"):
        _fitnet(hint_layer=7).learned_parts(student, teacher, labels, seed=0)
    with pytest.raises(ValueError, match="zoo.s.distill.hint_layer"):
        _fitnet(hint_layer=-1)


def test_defaults_are_mdistillers_cifar100_config():
    method = _fitnet()
    assert (method.hint_layer, method.feat_weight, method.ce_weight) == (2, 100.0, 1.0)  # CFG.FITNET
    assert method.needs_features and method.teacher_features == frozenset({"stages", "logits"})
