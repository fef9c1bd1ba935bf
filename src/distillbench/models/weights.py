"""Backbone weights: torchvision's ImageNet download, a local state_dict file, or none."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from distillbench.atomic import write_bytes
from distillbench.errors import UserError
from distillbench.models.backbone_spec import BackboneSpec


def _imagenet_state(backbone: BackboneSpec) -> dict[str, torch.Tensor]:
    arch, weights = backbone.name, backbone.imagenet
    try:
        # check_hash: the file name carries a sha256 prefix that torch verifies after download.
        return weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash a RuntimeError
        raise UserError(
            f"Could not get the ImageNet weights for {arch} from {weights.url} "
            f"({type(exc).__name__}: {exc}). Without network, set weights.{arch} to a local "
            f"torchvision {arch} state_dict file (weights: PATH), and pass --data-dir for the data."
        ) from None


def _file_state(arch: str, path: Path) -> dict[str, torch.Tensor]:
    path = path.expanduser()
    if not path.is_file():
        raise UserError(
            f"weights.{arch}: {path} is not a file. Give a torchvision {arch} state_dict saved with "
            f"torch.save, or 'imagenet' to download, or 'none' for random weights (smoke tests only)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"weights.{arch}: {path} could not be loaded as a tensor-only state_dict ({first_line}). "
            "Only plain state_dicts load (weights_only=True refuses code); re-save the weights with "
            "torch.save(model.state_dict(), path)."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights.{arch}: {path} does not hold a state_dict (a mapping of names to tensors).")
    return state


def _backbone_state(backbone: BackboneSpec, source: str, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source``'s backbone entries, checked against ``expected`` (the architecture's state_dict)."""
    arch, head_prefixes = backbone.name, backbone.head_prefixes
    state = _imagenet_state(backbone) if source == "imagenet" else _file_state(arch, Path(source))
    state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    expected = {k: v for k, v in expected.items() if not k.startswith(head_prefixes)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                problems.append(f"{len(keys)} {label} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})")
        raise UserError(
            f"weights.{arch}: {source} is not a torchvision {arch} state_dict: "
            + "; ".join(problems)
            + f". Save it from torchvision.models.{arch}() with torch.save(model.state_dict(), path)."
        )
    return state


def load_backbone_weights(net: nn.Module, backbone: BackboneSpec, source: str) -> None:
    """Load ``source`` (imagenet | none | PATH) into ``net``'s backbone; the classifier entries are
    dropped (the study replaces the head)."""
    if source != "none":
        net.load_state_dict(_backbone_state(backbone, source, net.state_dict()), strict=False)


def check_backbone_weights(backbone: BackboneSpec, source: str) -> None:
    """Stop with a one-paragraph error unless ``source`` loads into ``arch``: downloads ImageNet
    weights if they are not cached yet, and reads a local file. No weights are kept."""
    if source == "none":
        return
    with torch.device("meta"):  # the architecture's names and shapes, without allocating it
        expected = backbone.network().state_dict()
    _backbone_state(backbone, source, expected)


def describe_weights(backbone: BackboneSpec, source: str) -> str:
    """A line for the report saying where a backbone's weights came from."""
    if source == "none":
        return "RANDOM INITIALISATION (weights: none): a smoke test, not a fine-tuning result"
    if source == "imagenet":
        return f"ImageNet, torchvision {backbone.imagenet}"
    return f"local file {Path(source).expanduser()}"


def save_random_weights(directory: Path, backbones: Iterable[BackboneSpec], seed: int = 0) -> list[Path]:
    """Save a state_dict of each of ``backbones`` (``models.BACKBONES.values()``: every registered
    one), randomly initialised, as ``<name>.pt``: stand-ins for offline tests (seeded: the same files
    every time, so tests on them are deterministic)."""
    paths = []
    for backbone in backbones:
        with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
            torch.manual_seed(seed)
            net = backbone.network()
        # The head is replaced by the study anyway; VGG16's alone would add 480 MB.
        state = {k: v for k, v in net.state_dict().items() if not k.startswith(backbone.head_prefixes)}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        path = Path(directory) / f"{backbone.name}.pt"
        write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths
