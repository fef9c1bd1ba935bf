"""A classifier as a frozen prefix followed by a trainable body.

Every model of the study has this shape. The prefix (input scaling and any frozen backbone
layers) is deterministic, so its output can be computed once per split and cached; the body
(trainable backbone layers and the new head) is what the optimiser sees.

A classifier may also declare its *stages* (``StageLayout``): which of its modules' outputs are the
network's stage outputs, as paths into the chain ``[*prefix, *body]`` of its modules. The chain is
the same wherever the frozen prefix ends, so the stages span prefix and body, and
``Classifier.forward_features`` computes them by running that chain module by module: data about
the modules, no hooks, nothing stored between calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The CIFAR-100 training set's per-channel mean/std, as RepDistiller's cifar100 loader normalises
# (github.com/HobbitLong/RepDistiller, dataset/cifar100.py): what the CIFAR KD zoo was trained on.
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


INPUT_NORMS = ("none", "imagenet", "keras_notebook", "cifar100", "pretrained")


class Preprocess(nn.Module):
    """uint8 pixels -> float in [0, 1], resized to ``size`` x ``size`` if given (antialiased
    bilinear), then one of ``INPUT_NORMS``:

    - ``none``: the [0, 1] pixels themselves (the paper's text);
    - ``imagenet``: ImageNet mean/std normalisation, what torchvision's weights were trained on;
    - ``keras_notebook``: what the authors' notebook fed its backbones, in torchvision's terms: the
      notebook passed x/255 (RGB) to Keras models that expect caffe preprocessing (BGR, 0-255, mean
      subtracted), i.e. the expected input plus the mean, divided by 255, channels swapped. Here:
      channels reversed, no mean subtracted, divided by 255 * std;
    - ``cifar100``: the CIFAR-100 mean/std normalisation the CIFAR KD zoo's models were trained with;
    - ``pretrained``: a pretrained model's own mean/std, which the caller passes as ``mean`` and
      ``std`` (3 values each; arch timm reads them from the model's pretrained config). ``mean``
      and ``std`` are refused with any other norm, whose constants are fixed.

    Its ``extra_repr`` names the normalisation and its constants, so cache keys (which hash the
    module's repr) differ.
    """

    def __init__(
        self,
        norm: str = "none",
        size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ):
        super().__init__()
        if norm not in INPUT_NORMS:
            raise ValueError(f"unknown input normalisation {norm!r}; known: {', '.join(INPUT_NORMS)}")
        given = mean is not None or std is not None
        if norm == "pretrained" and (mean is None or std is None):
            raise ValueError("input normalisation 'pretrained' needs the model's mean and std (3 values each)")
        if norm != "pretrained" and given:
            raise ValueError(f"input normalisation {norm!r} has fixed constants: mean/std apply to 'pretrained' only")
        self.norm, self.size = norm, size
        constants = {
            "none": ((0.0,) * 3, (1.0,) * 3),
            "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
            "keras_notebook": ((0.0,) * 3, tuple(255.0 * s for s in IMAGENET_STD)),
            "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
            "pretrained": (mean, std),
        }
        mean, std = constants[norm]
        if len(tuple(mean)) != 3 or len(tuple(std)) != 3:
            raise ValueError(f"mean and std need 3 values each (RGB), got {mean} and {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        # The buffers are not saved with the model: their values must show in the repr cache keys hash.
        size = f", size={self.size}" if self.size is not None else ""
        return f"norm={self.norm!r}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}{size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            # Per batch, on the batch's device: the upsampled set is never stored.
            shrinks = self.size < max(x.shape[-2:])  # antialiasing matters only when shrinking
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=shrinks, align_corners=False)
        if self.norm == "none":
            return x
        if self.norm == "keras_notebook":
            x = x.flip(1)  # RGB pixels into a network trained on BGR
        return (x - self.mean) / self.std


def seen_shape(image_shape: tuple[int, int, int], size: int | None) -> tuple[int, int, int]:
    """(channels, height, width) a model's layers see: the images', resized by ``Preprocess(size=...)``."""
    return image_shape if size is None else (image_shape[0], size, size)


class Float32Linear(nn.Linear):
    """A linear layer computed in float32 even under autocast: the logits layer. bf16 logits have 8
    significant bits, and about 0.5% of test images got exact top-2 ties, all broken toward the
    lower class index; the layer is tiny, so float32 costs nothing measurable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())


class Body(nn.Sequential):
    """The trainable part of a classifier. In train mode, a BatchNorm none of whose parameters
    trains stays in inference mode (running statistics used, never updated), as in Keras with
    ``trainable=False``; this holds also when the body trains alone on cached prefix outputs."""

    def train(self, mode: bool = True) -> Body:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters(recurse=False)
            ):
                module.eval()
        return self


@dataclass(frozen=True)
class Features:
    """What a model computes on the way to its logits, for feature distillation: its stage outputs in
    order (the stem's and each stage's feature maps, as RepDistiller's ``forward(x, is_feat=True)``
    lists them without its last entry), the pooled embedding the classifier reads (``[B, D]``), and
    the logits (``[B, C]``)."""

    stages: list[torch.Tensor]
    embedding: torch.Tensor
    logits: torch.Tensor
    # The same stage outputs before their last activation (mdistiller's ``preact_feats``: ReviewKD's
    # teacher targets), where the architecture computes them; None: not distinct from ``stages``.
    preact_stages: list[torch.Tensor] | None = None

    @property
    def preactivation(self) -> list[torch.Tensor]:
        """The stage outputs before their last activation: ``preact_stages``, else ``stages``."""
        return self.stages if self.preact_stages is None else self.preact_stages

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Features:
        """``fn`` applied to every tensor (``Features(...).map(torch.Tensor.float)``: in float32)."""
        preact = None if self.preact_stages is None else [fn(t) for t in self.preact_stages]
        return Features([fn(t) for t in self.stages], fn(self.embedding), fn(self.logits), preact)


StagePath = tuple[int, ...]  # indices into the chain [*prefix, *body], then into nested nn.Sequentials
# ``runner(module, x) -> (the module's stage outputs, its output)``: a module that computes its own stages.
StageRunner = Callable[[nn.Module, torch.Tensor], tuple[list[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class StageLayout:
    """Where a classifier's stages are, as data: ``names`` in forward order and either ``taps``, one
    path per name (the output of the module at that path is that stage), or ``inner``, the path of
    one module whose own runner returns all the stages (a timm network's ``forward_intermediates``).
    A path indexes the chain ``[*prefix, *body]`` and then nested ``nn.Sequential``s. ``at`` builds
    the taps from the modules themselves."""

    names: tuple[str, ...]
    taps: tuple[StagePath, ...] = ()
    inner: tuple[StagePath, StageRunner] | None = None

    def __post_init__(self) -> None:
        if self.inner is None and len(self.taps) != len(self.names):
            raise ValueError(f"{len(self.names)} stage names but {len(self.taps)} taps")
        if self.inner is not None and self.taps:
            raise ValueError("a stage layout has taps or one inner module, not both")
        if list(self.taps) != sorted(set(self.taps)):
            raise ValueError(f"stage taps must be distinct and in forward order: {self.taps}")

    @classmethod
    def at(cls, chain: Sequence[nn.Module], stages: Mapping[str, nn.Module]) -> StageLayout:
        """The layout whose stages are the outputs of the modules ``stages`` names (in forward
        order), each found by identity in ``chain`` or a nested ``nn.Sequential`` of it, exactly once."""
        taps = []
        for name, module in stages.items():
            found = list(_paths_of(chain, module, ()))
            if len(found) != 1:
                where = "is not" if not found else f"is {len(found)} times"
                raise ValueError(f"stage {name!r}: its module {where} in the chain (or a nn.Sequential of it)")
            taps.append(found[0])
        return cls(tuple(stages), tuple(taps))

    def paths(self) -> tuple[StagePath, ...]:
        return self.taps if self.inner is None else (self.inner[0],)


def _plain_sequence(module: nn.Module) -> bool:
    """An nn.Sequential that runs its children in order (its forward not overridden): running them one
    by one is the same computation."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _paths_of(modules: Sequence[nn.Module], target: nn.Module, path: StagePath):
    for index, module in enumerate(modules):
        if module is target:
            yield (*path, index)
        elif _plain_sequence(module):
            yield from _paths_of(module, target, (*path, index))


def _module_at(chain: Sequence[nn.Module], path: StagePath) -> nn.Module:
    modules, module = chain, None
    for depth, index in enumerate(path):
        if depth and not _plain_sequence(modules):
            raise ValueError(f"stage path {path}: {type(modules).__name__} is no nn.Sequential to index into")
        if not 0 <= index < len(modules):
            raise ValueError(f"stage path {path}: no module at index {index}")
        module = modules = modules[index]
    return module


class Classifier(nn.Module):
    """``body(prefix(x))`` where nothing in ``prefix`` trains and it always runs in eval mode.

    ``stages``: where its stage outputs are (``StageLayout``), for ``forward_features``; None for a
    network that computes them itself (the CIFAR zoo's: its body's one module's ``forward_features``)
    or a classifier that declares none."""

    def __init__(self, prefix: nn.Sequential, body: nn.Sequential, stages: StageLayout | None = None):
        super().__init__()
        self.prefix = prefix
        self.body = body if isinstance(body, Body) else Body(*body)
        for param in prefix.parameters():
            param.requires_grad_(False)
        if stages is not None:
            chain = self._chain()
            for path in stages.paths():
                _module_at(chain[:-1], path)  # a stage comes before the logits layer
            if stages.inner is not None and not callable(stages.inner[1]):
                raise ValueError("a stage layout's inner runner must be callable")
        self.stage_layout = stages  # a plain attribute: not in the state_dict, nor in the repr

    def _chain(self) -> list[nn.Module]:
        return [*self.prefix, *self.body]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.prefix(x))

    @property
    def stage_names(self) -> tuple[str, ...] | None:
        """The declared stages' names in forward order: the ``StageLayout``'s, or those of the network
        that lists its stages itself (the CIFAR zoo's ``stage_names``); None where there are none."""
        if self.stage_layout is not None:
            return self.stage_layout.names
        return getattr(self.body[0], "stage_names", None) or None if len(self.body) == 1 else None

    def forward_features(self, x: torch.Tensor) -> Features:
        """The logits with the stage outputs and embedding (``Features``): with a ``StageLayout``, the
        chain ``[*prefix, *body]`` run module by module (the very computation ``forward`` does), the
        stages taken where the layout says, the embedding being the input of the last module (the
        logits layer); else the network's own, where its body's one module has ``forward_features``
        (the CIFAR zoo); ``NotImplementedError`` naming the network otherwise. Stateless: no hooks."""
        if self.stage_layout is not None:
            chain, found = self._chain(), []
            embedding = _run(chain[:-1], x, (), self.stage_layout, _enclosing(self.stage_layout), found)
            if len(found) != len(self.stage_layout.names):
                raise RuntimeError(f"{len(found)} stage outputs for the {len(self.stage_layout.names)} declared")
            return Features(found, embedding, chain[-1](embedding))
        net = self.body[0] if len(self.body) == 1 else None
        if net is None or not hasattr(net, "forward_features"):
            raise NotImplementedError(f"{type(net or self.body).__name__} does not declare its stages")
        return net.forward_features(self.prefix(x))

    @property
    def prefix_is_trivial(self) -> bool:
        """A prefix with no weights only rescales pixels: caching it would save nothing."""
        return not any(True for _ in self.prefix.parameters())

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)  # the body keeps its frozen BatchNorm in inference mode itself
        self.prefix.eval()
        return self


def _enclosing(layout: StageLayout) -> set[StagePath]:
    """The paths of the nn.Sequentials that hold a stage path: run child by child."""
    return {path[:depth] for path in layout.paths() for depth in range(1, len(path))}


def _run(
    modules: Sequence[nn.Module],
    x: torch.Tensor,
    path: StagePath,
    layout: StageLayout,
    enclosing: set[StagePath],
    found: list,
) -> torch.Tensor:
    """``modules`` applied in order to ``x``, appending the stage outputs ``layout`` places among them."""
    for index, module in enumerate(modules):
        here = (*path, index)
        if layout.inner is not None and here == layout.inner[0]:
            stages, x = layout.inner[1](module, x)
            found.extend(stages)
            continue
        x = _run(module, x, here, layout, enclosing, found) if here in enclosing else module(x)
        if here in layout.taps:
            found.append(x)
    return x


def keras_init_(module: nn.Module) -> None:
    """Glorot-uniform kernels and zero biases for every conv and dense layer, as Keras does."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
