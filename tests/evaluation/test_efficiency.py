"""MACs against closed forms; the efficiency record is complete; timings are interleaved across
models, reported with their spread, and flagged when the machine was busy; identical structures
share a key."""

import json

import pytest
import torch
from torch import nn

from distillbench.evaluation.efficiency import (
    BUSY_SPREAD,
    TIMING_FIELDS,
    count_macs,
    measure_efficiency,
    structure_key,
    time_models,
)
from distillbench.models.classifier import Classifier, Preprocess


def _tiny(channels: int = 8) -> Classifier:
    body = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(channels * 8 * 8, 10))
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
    low, high = record["latency_ms_batch1_spread"]
    assert low <= record["latency_ms_batch1"] <= high
    low, high = record["images_per_s_batch256_spread"]
    assert low <= record["images_per_s_batch256"] <= high
    assert isinstance(record["timing_busy"], bool)
    assert next(model.parameters()).requires_grad  # measuring leaves the model as it was


def test_macs_follow_the_image_shape():
    one_channel = Classifier(nn.Sequential(Preprocess()), nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()))
    assert count_macs(one_channel, (1, 10, 6)) == 8 * 4 * 4 * (1 * 3 * 3)  # 8x4 outputs of a 10x6 image


def test_identical_structures_share_a_key_whatever_their_weights():
    first, second = _tiny(), _tiny()
    with torch.no_grad():
        second.body[0].weight.add_(1.0)
    assert structure_key(first, (3, 8, 8)) == structure_key(second, (3, 8, 8))
    assert structure_key(first, (3, 8, 8)) != structure_key(_tiny(channels=4), (3, 8, 8))
    assert structure_key(first, (3, 8, 8)) != structure_key(first, (3, 16, 16))
    normalised = Classifier(nn.Sequential(Preprocess("imagenet")), _tiny().body)
    assert structure_key(first, (3, 8, 8)) != structure_key(normalised, (3, 8, 8))


class _Tagged(nn.Module):
    """A model that notes its name and batch size in ``_Tagged.calls`` each time it runs (a class
    attribute: ``time_models`` times deep copies)."""

    calls: list[tuple[str, int]] = []

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _Tagged.calls.append((self.name, len(x)))
        return x.float().mean((1, 2, 3))


def test_timing_is_round_robin_across_models():
    _Tagged.calls.clear()
    time_models([_Tagged("a"), _Tagged("b")], (1, 2, 2), latency_repeats=3)
    # A warm-up pass each, then one pass each per repeat; batch 256 at least 3 times.
    assert _Tagged.calls == [("a", 1), ("b", 1)] + [("a", 1), ("b", 1)] * 3 + [("a", 256), ("b", 256)] * 4


def _clock(durations: list[float]):
    """A clock whose successive start/stop pairs measure ``durations`` in turn."""
    now, ticks = 0.0, []
    for seconds in durations:
        ticks += [now, now + seconds]
        now += seconds + 1.0
    return iter(ticks).__next__


def test_spread_and_busy_flag_from_the_repeats():
    repeats = 10
    quiet = [0.010] * repeats + [1.0] * 3  # latency passes, then batch passes: all alike
    record = time_models([_Tagged("a")], (1, 2, 2), repeats, clock=_clock(quiet))[0]
    assert record["latency_ms_batch1"] == pytest.approx(10.0)
    assert record["latency_ms_batch1_spread"] == pytest.approx([10.0, 10.0])
    assert record["images_per_s_batch256"] == pytest.approx(256.0)
    assert record["timing_spread"] == pytest.approx(0.0) and record["timing_busy"] is False

    noisy = [0.010] * 8 + [0.040, 0.060] + [1.0] * 3  # two of ten passes stretched by a busy spell
    record = time_models([_Tagged("a")], (1, 2, 2), repeats, clock=_clock(noisy))[0]
    assert record["latency_ms_batch1"] == pytest.approx(10.0)  # the median shrugs the spell off
    low, high = record["latency_ms_batch1_spread"]
    assert low == pytest.approx(10.0) and high == pytest.approx(42.0)  # p90 between 40 and 60 ms
    assert record["timing_spread"] > BUSY_SPREAD and record["timing_busy"] is True

    slow_batches = [0.010] * repeats + [1.0, 1.0, 2.0]
    record = time_models([_Tagged("a")], (1, 2, 2), repeats, clock=_clock(slow_batches))[0]
    assert record["timing_busy"] is True  # the throughput's spread counts as well
    assert record["images_per_s_batch256_spread"][0] < record["images_per_s_batch256"]


def test_interleaving_spreads_a_busy_spell_over_every_model():
    """A spell that slows the 3rd to 6th passes hits both models, not the one timed during it."""
    durations = [0.020 if 2 <= index < 6 else 0.010 for index in range(2 * 10)] + [1.0] * 6
    records = time_models([_Tagged("a"), _Tagged("b")], (1, 2, 2), 10, clock=_clock(durations))
    assert records[0]["latency_ms_batch1_spread"] == pytest.approx(records[1]["latency_ms_batch1_spread"])
    assert [r["latency_ms_batch1"] for r in records] == pytest.approx([10.0, 10.0])


def test_a_study_times_each_structure_once(paper_study):
    """The paper's small CNN and its two KD students are one architecture: one timing, shared by
    every seed; the two backbones are timed themselves."""
    records = {
        (path.parent.parent.name, path.parent.name): json.loads(path.read_text())["efficiency"]
        for path in paper_study.glob("runs/*/seed-*/run.json")
    }
    small = records[("small_cnn", "seed-0")]
    for (model, _), record in records.items():
        timed_with = "small_cnn" if model in ("small_cnn", "kd_resnet50", "kd_ensemble") else model
        assert record["timed_with"] == timed_with
        shared = records[(timed_with, "seed-0")]
        assert {field: record[field] for field in TIMING_FIELDS} == {field: shared[field] for field in TIMING_FIELDS}
    assert records[("resnet50", "seed-0")]["timing_key"] != small["timing_key"]
    assert records[("resnet50", "seed-0")]["latency_ms_batch1"] != small["latency_ms_batch1"]
