"""MACs against closed forms; the efficiency record is complete."""

import torch
from torch import nn

from distillbench.evaluation.efficiency import count_macs, measure_efficiency
from distillbench.models.classifier import Classifier, Preprocess


def _tiny() -> Classifier:
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    return Classifier(nn.Sequential(Preprocess()), body)


def test_macs_are_conv_plus_linear_closed_form():
    assert count_macs(_tiny(), 8) == 8 * 8 * 8 * (3 * 3 * 3) + 8 * 8 * 8 * 10


def test_efficiency_record(tmp_path):
    model = _tiny()
    checkpoint = tmp_path / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    record = measure_efficiency(model, 8, checkpoint, latency_repeats=3)
    assert record["params"] == record["trainable_params"] == 3 * 3 * 3 * 8 + 8 + 512 * 10 + 10
    assert record["checkpoint_bytes"] == checkpoint.stat().st_size
    assert record["latency_ms_batch1"] > 0 and record["images_per_s_batch256"] > 0 and record["cpu_threads"] >= 1
    assert next(model.parameters()).requires_grad  # measuring leaves the model as it was
