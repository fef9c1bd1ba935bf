"""timm models as architectures: ``arch: timm`` with ``timm_model: NAME`` (any of ``timm.list_models()``).

Needs the optional ``timm`` package (``pip install 'distillbench[timm]'``); without it, a study
naming ``arch: timm`` stops with a one-paragraph error saying so.

Contract of ``build_timm(spec, weights, image_shape, num_classes)``:

- ``weights`` is the model key's ``weights.<key>`` entry: ``imagenet``: timm's own pretrained weights
  (``timm.create_model(name, pretrained=True)``, downloaded once into timm's / Hugging Face's cache;
  offline, a ``UserError`` says to give a local file); ``none``: timm's random initialisation; a
  PATH: a local file of that timm model's weights (a ``torch.save``'d state_dict, a checkpoint dict
  whose ``model`` or ``state_dict`` entry is one, or a ``.safetensors`` file as the Hugging Face hub
  serves them), every entry checked by name and shape, except that classifier entries whose shape
  differs from the study's number of classes are dropped (the head is new).
- The classifier is sized to the data (``num_classes``) and computed in float32 (``Float32Linear``,
  as every model's logits layer). A head that no weights gave is initialised per ``spec.init``
  (Glorot-uniform for ``keras``), as the torchvision backbones' new heads are.
- ``trainable_layers`` counts the trailing *weight-holding* modules of the network without its
  classifier, in module order (timm registers its common families' modules in forward order); the
  classifier always trains. ``0``: the whole network but the classifier is the frozen prefix, so
  its output is computed once per split and cached, exactly as for the torchvision backbones;
  ``N > 0``: the network is in the trainable body with all but its last N weight-holding modules
  frozen. timm's networks are not sequences of stages in general, so no frozen prefix is cut off
  then: the frozen modules run on every step (correct, not cached). ``all``: everything trains.
- ``input_norm: pretrained`` normalises with the mean/std of the model's pretrained config
  (``timm.data.resolve_data_config``). ``input_size`` is the user's alone: a pretrained config's
  input size that differs from what the model sees (e.g. 224 against CIFAR's 32) is reported in a
  warning and not applied, since upsampling 32x32 images to 224 multiplies the cost about 50-fold;
  set ``input_size`` to apply it. Models with a fixed input size (ViTs) are built for the size they
  see (``img_size``; timm resamples pretrained position embeddings).
- Stages (``Classifier.forward_features``): the model's ``feature_info`` entries, named by their
  modules (e.g. ``act1``, ``layer1`` .. ``layer4`` for a ResNet; every block for a ViT), computed by
  ``forward_intermediates`` (NCHW maps, no final norm applied to them) where the model has it, else
  by forward hooks on the ``feature_info`` modules that the call registers and removes before it
  returns. The embedding is the model's pooled pre-logits vector (``forward_head`` with the classifier
  removed), what the logits layer reads. A model without ``feature_info`` declares no stages.
"""

from __future__ import annotations

import difflib
import warnings
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from distillbench.config import ModelDef
from distillbench.errors import UserError
from distillbench.models.classifier import (
    Classifier,
    Float32Linear,
    Preprocess,
    StageLayout,
    keras_init_,
    seen_shape,
)
from distillbench.models.weights import read_model_checkpoint, state_mismatch

ImageShape = tuple[int, int, int]


def timm_module() -> ModuleType:
    """The ``timm`` package, or the one-paragraph error saying how to install it."""
    try:
        import timm
    except ImportError:
        raise UserError(
            "arch timm needs the timm package, which is not installed: pip install 'distillbench[timm]' "
            "(or pip install 'timm>=1.0'), then run again."
        ) from None
    return timm


def timm_model_problem(name: str, where: str) -> str | None:
    """``where: problem`` if timm is missing or has no model ``name`` (with the closest names), else None."""
    try:
        timm = timm_module()
    except UserError as exc:
        return f"{where}: {exc}"
    if timm.is_model(name):
        return None
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"{where}: timm has no model {name!r}{hint}; timm.list_models() lists the names it knows"


def _check_name(name: str) -> ModuleType:
    if problem := timm_model_problem(name, "timm_model"):
        raise UserError(f"{problem}.")
    return timm_module()


def _pretrained_cfg(timm: ModuleType, name: str) -> dict[str, Any]:
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    return cfg.to_dict() if cfg is not None else {}


def pretrained_weights_identity(name: str) -> str:
    """Where ``imagenet`` takes ``name``'s weights from (its Hugging Face hub id or URL): part of a
    run's fingerprint, so another pretrained tag is another run."""
    cfg = _pretrained_cfg(_check_name(name), name)
    return f"timm:{name}:{cfg.get('hf_hub_id') or cfg.get('url') or 'no pretrained weights'}"


def describe_timm_weights(name: str, source: str) -> str:
    """A line for the report saying where a timm model's starting weights came from."""
    if source == "none":
        return f"timm {name}: RANDOM INITIALISATION (weights: none), trained from scratch"
    if source == "imagenet":
        return f"timm {name}: timm's pretrained weights ({pretrained_weights_identity(name).split(':', 2)[2]})"
    return f"timm {name}: local file {Path(source).expanduser()}"


def _create(timm: ModuleType, name: str, pretrained: bool, image_shape: ImageShape, num_classes: int) -> nn.Module:
    """The timm network for images of ``image_shape`` (as the model sees them) and ``num_classes``."""
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": image_shape[0]}
    if _pretrained_cfg(timm, name).get("fixed_input_size"):
        kwargs["img_size"] = image_shape[1:]  # ViTs: position embeddings for this grid
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    source = pretrained_weights_identity(name).split(":", 2)[2]
    if source == "no pretrained weights":
        raise UserError(
            f"weights (timm model {name}): timm has no pretrained weights for it; use none (random initialisation) or a "
            "PATH to a local file of its weights."
        )
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError, ImportError) as exc:  # offline, a bad hash, a damaged download
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(
            f"weights (timm model {name}): could not get timm's pretrained weights from {source} "
            f"({type(exc).__name__}: {first_line}). Without network, download them elsewhere (the hub's "
            "model.safetensors, or torch.save(timm.create_model(name, pretrained=True).state_dict(), path)) and "
            "set this model's weights entry to that file's PATH."
        ) from None


def _head_names(model: nn.Module) -> tuple[str, ...]:
    """The state_dict prefixes of the classifier (``get_classifier()``), e.g. ``fc.`` or ``head.fc.``."""
    head = model.get_classifier()
    return tuple(f"{name}." for name, module in model.named_modules() if module is head and name)


def _load_file(model: nn.Module, where: str, path: str) -> bool:
    """Load a local weights file into ``model``; whether it gave the classifier's weights too."""
    state, _ = read_model_checkpoint(where, Path(path), what="timm state_dict")
    expected, heads = model.state_dict(), _head_names(model)
    dropped = {k for k, v in state.items() if k.startswith(heads) and k in expected and v.shape != expected[k].shape}
    state = {k: v for k, v in state.items() if k not in dropped}
    # A classifier dropped for its size is not missing: the new head is sized to the data.
    checked = {k: v for k, v in expected.items() if not (dropped and k.startswith(heads) and k not in state)}
    if problems := state_mismatch(state, checked):
        raise UserError(
            f"{where}: {path} is not a state_dict of this timm model: {'; '.join(problems)}. Save it from the same "
            "timm model name (and in_chans) with torch.save(model.state_dict(), path); the classifier may have "
            "another number of classes."
        )
    model.load_state_dict(state, strict=False)
    return not dropped and any(k.startswith(heads) for k in state)


def _pretrained_norm(timm: ModuleType, model: nn.Module, spec: ModelDef, seen: ImageShape) -> Preprocess:
    """The input pipeline; ``pretrained``: the model's own mean/std. Warns when the pretrained config's
    input size differs from the size the model sees (not applied: see the module docstring)."""
    config = timm.data.resolve_data_config({}, model=model)
    native = tuple(config["input_size"][1:])
    if native != tuple(seen[1:]):
        warnings.warn(
            f"timm model {spec.timm_model} was pretrained on {native[0]}x{native[1]} images, but sees "
            f"{seen[1]}x{seen[2]}; set input_size: {native[0]} to upsample (about "
            f"{native[0] * native[1] / (seen[1] * seen[2]):.0f}x the cost per image), or keep the size as it is.",
            UserWarning,
            stacklevel=3,
        )
    if spec.input_norm != "pretrained":
        return Preprocess(spec.input_norm, spec.input_size)
    mean, std = (tuple(float(v) for v in config[key]) for key in ("mean", "std"))
    return Preprocess("pretrained", spec.input_size, mean=mean, std=std)


def _split_head(model: nn.Module, name: str) -> Float32Linear:
    """Remove ``model``'s classifier (``reset_classifier(0)``: it then returns the pooled features the
    classifier read) and return it as a ``Float32Linear`` with its weights."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise UserError(
            f"timm model {name}'s classifier is a {type(head).__name__}, not one linear layer, which arch timm "
            "needs to size the head to the data; choose another timm model."
        )
    logits = Float32Linear(head.in_features, head.out_features, bias=head.bias is not None)
    logits.load_state_dict(head.state_dict())
    model.reset_classifier(0)
    return logits


def timm_stages(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A timm network's (classifier removed) ``feature_info`` stage outputs and its output, the pooled
    embedding (the module docstring's contract): the ``StageRunner`` of arch timm's classifiers."""
    if hasattr(model, "forward_intermediates"):
        final, stages = model.forward_intermediates(x)
        return list(stages), model.forward_head(final)
    found: dict[int, torch.Tensor] = {}
    handles = []
    try:
        for index, info in enumerate(model.feature_info):
            module = model.get_submodule(info["module"])
            if info.get("hook_type") == "forward_pre":  # the stage is the module's input
                handles.append(module.register_forward_pre_hook(partial(_keep_input, found, index)))
            else:
                handles.append(module.register_forward_hook(partial(_keep_output, found, index)))
        output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [found[index] for index in range(len(handles))], output


def _keep_input(found: dict[int, torch.Tensor], index: int, module: nn.Module, inputs: tuple) -> None:
    found[index] = inputs[0]


def _keep_output(found: dict[int, torch.Tensor], index: int, module: nn.Module, inputs: tuple, output) -> None:
    found[index] = output


def _stage_layout(model: nn.Module, position: int) -> StageLayout | None:
    """The stages of ``model``, at ``position`` in the classifier's chain, from its ``feature_info``."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    return StageLayout(tuple(entry["module"] for entry in info), inner=((position,), timm_stages))


def build_timm(spec: ModelDef, weights: str | None, image_shape: ImageShape, num_classes: int) -> Classifier:
    """``spec.timm_model`` with ``weights`` (imagenet | none | PATH), its head sized to ``num_classes``,
    cut per ``spec.trainable_layers`` (the module docstring's contract)."""
    from distillbench.models.backbone import split_stages  # backbone imports this floor's weights: no cycle

    name, source = spec.timm_model or "", weights or "none"
    timm = _check_name(name)
    seen = seen_shape(image_shape, spec.input_size)
    model = _create(timm, name, source == "imagenet", seen, num_classes)
    if source == "imagenet":  # timm keeps the pretrained classifier only if it has num_classes outputs
        head_loaded = _pretrained_cfg(timm, name).get("num_classes") == num_classes
    else:
        head_loaded = source != "none" and _load_file(model, f"weights (timm model {name})", source)
    if spec.init == "keras" and not head_loaded:
        keras_init_(model.get_classifier())
    preprocess = _pretrained_norm(timm, model, spec, seen)
    head = _split_head(model, name)
    prefix, suffix = split_stages([model], spec.trainable_layers, f"timm model {name}")
    # The chain is [preprocess, model, head] wherever the cut falls: the model is at position 1.
    return Classifier(nn.Sequential(preprocess, *prefix), nn.Sequential(*suffix, head), _stage_layout(model, 1))
