"""The one registry helper behind every kind found by name: registration once, in order, and the
same "unknown X 'y'; known: ...; did you mean" line for every kind."""

import pytest

from distillbench.data import DATASETS
from distillbench.data.augment import AUGMENTATIONS
from distillbench.models import ARCHITECTURES, BACKBONES
from distillbench.registry import Registry
from distillbench.training.distill import AGGREGATIONS, METHODS
from distillbench.training.optim import OPTIMIZERS, SCHEDULES


def _colours() -> Registry[int]:
    colours = Registry[int]("colour")
    colours.register("red", 1)
    colours.register("green", 2)
    return colours


def test_entries_keep_their_registration_order():
    colours = _colours()
    colours.register("blue", 3)
    assert list(colours) == ["red", "green", "blue"] and len(colours) == 3
    assert colours["green"] == 2 and "blue" in colours and "pink" not in colours
    assert dict(colours.items()) == {"red": 1, "green": 2, "blue": 3}


def test_the_decorator_registers_and_returns_the_function():
    colours = Registry("colour")

    @colours.register("cyan")
    def cyan() -> str:
        return "cyan"

    assert colours["cyan"] is cyan and cyan() == "cyan"


def test_a_name_registers_once():
    colours = _colours()
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        colours.register("red", 9)
    with pytest.raises(ValueError, match="already registered"):
        colours["green"] = 9  # assignment registers too: no silent replacement
    assert colours["red"] == 1 and colours["green"] == 2


def test_an_unknown_name_lists_the_known_ones_and_the_closest():
    with pytest.raises(ValueError) as error:
        _colours().resolve("gren", "paint.colour")
    assert str(error.value) == "paint.colour: unknown colour 'gren'; known: red, green (did you mean 'green'?)"
    assert _colours().unknown("purple", "paint.colour") == "paint.colour: unknown colour 'purple'; known: red, green"
    assert _colours().resolve("red", "paint.colour") == 1


def test_only_strings_are_names():
    """A YAML null or list where a name belongs is reported, not a TypeError."""
    assert None not in _colours() and ["red"] not in _colours()
    with pytest.raises(ValueError, match=r"unknown colour None; known: red, green$"):
        _colours().resolve(None, "paint.colour")


def test_monkeypatch_can_register_a_stand_in_for_a_while(monkeypatch):
    colours = _colours()
    with monkeypatch.context() as patch:
        patch.setitem(colours, "blue", 3)
        assert list(colours) == ["red", "green", "blue"]
    assert list(colours) == ["red", "green"]


@pytest.mark.parametrize(
    "registry, kind, builtins",
    [
        (ARCHITECTURES, "architecture", ["small_cnn", "resnet50", "vgg16"]),
        (BACKBONES, "pretrained backbone", ["resnet50", "vgg16"]),
        (DATASETS, "dataset", ["cifar10"]),
        (AUGMENTATIONS, "augmentation", ["none", "crop_flip", "trivial_augment", "random_erasing"]),
        (METHODS, "distillation method", ["kd", "dkd", "lskd", "dist"]),
        (AGGREGATIONS, "aggregation", ["mean_logits", "mean_probs", "mean_kl"]),
        (OPTIMIZERS, "optimizer", ["adam", "adamw", "sgd"]),
        (SCHEDULES, "schedule", ["constant", "cosine", "one_cycle"]),
    ],
)
def test_every_kind_is_a_registry(registry, kind, builtins):
    assert isinstance(registry, Registry) and registry.kind == kind
    assert set(builtins) <= set(registry)
