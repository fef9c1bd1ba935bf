"""Weights from outside the study: a backbone's (torchvision's ImageNet download, a local state_dict
file, or none), and a whole model's checkpoint (``weights.<model key>: PATH``, a released teacher).

A whole model's checkpoint is read with ``torch.load(..., weights_only=True)`` (no code runs on
load) from the file's bytes, which are hashed as read: the sha256 recorded is that of the weights
loaded. Accepted: a state_dict (names -> tensors); a checkpoint dict whose ``model`` (RepDistiller's
and mdistiller's released teachers: ``{'model': state_dict, 'epoch': ..., 'optimizer': ...}``) or
``state_dict`` entry is one; a ``.safetensors`` file. Keys saved through ``nn.DataParallel`` (every
one prefixed ``module.``) load too. The state_dict must fit the model exactly (names and shapes):
either the whole ``Classifier``'s (a distillbench ``model.pt``) or, for a classifier whose body is
one network (the CIFAR zoo's), that network's (the reference code's names).
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from distillbench.atomic import write_bytes
from distillbench.errors import UserError
from distillbench.models.backbone_spec import BackboneSpec
from distillbench.models.classifier import Classifier


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def state_mismatch(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> list[str]:
    """``N missing (a, b, ...)`` per kind of mismatch between ``state`` and the ``expected`` state_dict
    (missing, unexpected, wrong shape; at most 4 names each), the text of every weights error here and in
    ``timm_model``; empty if they fit."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    return [
        f"{len(keys)} {label} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    ]


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
        raise UserError(
            f"weights.{arch}: {path} could not be loaded as a tensor-only state_dict ({_first_line(exc)}). "
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
    if problems := state_mismatch(state, expected):
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


# ---- a whole model's checkpoint (weights.<model key>: PATH) --------------------------------------
CHECKPOINT_ENTRIES = ("model", "state_dict")  # the benchmark's {'model': ...}; timm's train.py {'state_dict': ...}


def _deserialise(where: str, path: Path, data: bytes) -> object:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load as load_safetensors
        except ImportError:
            raise UserError(
                f"{where}: {path} is a .safetensors file, which needs the safetensors package: "
                "pip install safetensors (timm installs it), then run again."
            ) from None
        try:
            return load_safetensors(data)
        except Exception as exc:  # safetensors raises its own SafetensorError on a damaged file
            raise UserError(f"{where}: {path} is not a readable .safetensors file ({_first_line(exc)}).") from None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        raise UserError(
            f"{where}: {path} could not be loaded as a tensor-only checkpoint ({_first_line(exc)}). Only "
            "state_dicts load, alone or in a dict of plain values (weights_only=True refuses code); re-save it "
            "with torch.save({'model': model.state_dict()}, path)."
        ) from None


def read_model_checkpoint(where: str, path: Path, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """The state_dict in the file ``path`` (the module docstring's formats) and the sha256 of the
    file's bytes; ``where`` (the config key) and ``what`` name it in the one-paragraph errors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"{where}: {path} is not a file. Give the path of a {what} saved with torch.save (a state_dict, or "
            "a dict whose 'model' entry is one, as RepDistiller and mdistiller release their teachers)."
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{where}: {path} could not be read ({exc.strerror or type(exc).__name__}).") from None
    loaded = _deserialise(where, path, data)
    state = loaded
    if isinstance(loaded, Mapping):
        state = next((loaded[k] for k in CHECKPOINT_ENTRIES if isinstance(loaded.get(k), Mapping)), loaded)
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        held = (
            f"a dict of {', '.join(map(str, list(loaded)[:5]))}"
            if isinstance(loaded, Mapping)
            else type(loaded).__name__
        )
        raise UserError(
            f"{where}: {path} holds {held}, not a state_dict (a mapping of names to tensors) nor a dict whose "
            "'model' or 'state_dict' entry is one. Save it with torch.save(model.state_dict(), path)."
        )
    state = dict(state)
    if all(k.startswith("module.") for k in state):  # saved through nn.DataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, hashlib.sha256(data).hexdigest()


def load_model_checkpoint(classifier: Classifier, where: str, path: Path) -> str:
    """Load the whole model's checkpoint ``path`` into ``classifier`` (every entry, names and shapes
    checked: the module docstring's two layouts); the file's sha256."""
    state, digest = read_model_checkpoint(where, path)
    targets: list[nn.Module] = [classifier]
    if len(classifier.body) == 1:
        targets.append(classifier.body[0])  # the network alone, under the reference code's names
    problems = {id(t): state_mismatch(state, t.state_dict()) for t in targets}
    fitting = [t for t in targets if not problems[id(t)]]
    if not fitting:
        closest = min(targets, key=lambda t: len(set(state) ^ set(t.state_dict())))
        if closest is not classifier:  # the CIFAR zoo's networks say which reference name fits
            _zoo_mismatch(classifier, state, where, path)
        raise UserError(
            f"{where}: {path} does not fit this model: {'; '.join(problems[id(closest)])}. Give the architecture "
            "(and the number of classes) the checkpoint was saved from: a distillbench model.pt of the same "
            "zoo entry, or the reference network's state_dict."
        )
    fitting[0].load_state_dict(state, strict=True)
    return digest


def _zoo_mismatch(classifier: Classifier, state: dict[str, torch.Tensor], where: str, path: Path) -> None:
    """Raise the CIFAR zoo's own error (naming the reference architecture) if ``classifier`` is a zoo model."""
    from distillbench.models.zoo import ZooNet, load_reference_state  # lazily: the zoo imports the classifier

    if not isinstance(classifier.body[0], ZooNet):
        return
    try:
        load_reference_state(classifier, state)
    except UserError as exc:
        raise UserError(f"{where}: {path}: {exc}") from None


def describe_loaded(path: Path, sha256: str) -> str:
    """A run record's line for a model whose weights were loaded, not trained."""
    return f"loaded from {Path(path).expanduser()} (sha256 {sha256}), not trained"
