"""MACs against closed forms; the efficiency record is complete."""

from torch import nn

from distillbench.evaluation.efficiency import count_macs, measure_efficiency
from distillbench.models.classifier import Classifier, Preprocess


def _tiny() -> Classifier:
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    return Classifier(nn.Sequential(Preprocess()), body)


def test_macs_are_conv_plus_linear_closed_form():
    assert count_macs(_tiny(), (3, 8, 8)) == 8 * 8 * 8 * (3 * 3 * 3) + 8 * 8 * 8 * 10


def test_efficiency_record():
    model = _tiny()
    record = measure_efficiency(model, (3, 8, 8), checkpoint_bytes=12345, latency_repeats=3)
    assert record["params"] == record["trainable_params"] == 3 * 3 * 3 * 8 + 8 + 512 * 10 + 10
    assert record["checkpoint_bytes"] == 12345
    assert record["latency_ms_batch1"] > 0 and record["images_per_s_batch256"] > 0 and record["cpu_threads"] >= 1
    assert record["image_shape"] == [3, 8, 8]
    assert next(model.parameters()).requires_grad  # measuring leaves the model as it was


def test_macs_follow_the_image_shape():
    one_channel = Classifier(nn.Sequential(Preprocess()), nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()))
    assert count_macs(one_channel, (1, 10, 6)) == 8 * 4 * 4 * (1 * 3 * 3)  # 8x4 outputs of a 10x6 image
