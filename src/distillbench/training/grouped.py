"""Several models of one architecture trained side by side as one module: the members' layers
concatenated into grouped convolutions and batched matrix products.

Each member keeps its own weights (a slice of every grouped tensor), its own batch and its own
dropout stream, so a member computes what it would alone, up to float summation order: Adam is
elementwise, and the gradient of the summed loss with respect to one member's weights is that
member's own gradient. Supported: a ``Sequential`` of Conv2d, ReLU, MaxPool2d, Dropout, Flatten and
Linear layers behind a weightless prefix (the small CNN; heads on cached backbone features).
Anything else (BatchNorm, residual blocks) raises ``NotGroupable`` and trains alone.

Activations travel as ``[batch, members x channels, H, W]`` while 4-D (a grouped convolution sees
each member's channels as one group) and as ``[members, batch, features]`` after ``Flatten``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distillbench.models.classifier import Classifier, Float32Linear
from distillbench.models.layers import Dropout, dropout_scale


class NotGroupable(ValueError):
    """The members cannot be trained as one module; train them one by one."""


def _split_module(module: nn.Module) -> tuple[nn.Module | None, nn.Sequential]:
    """(weightless prefix or None, the sequential body) of a trainable module."""
    if isinstance(module, Classifier):
        if not module.prefix_is_trivial:
            raise NotGroupable("a prefix with weights")
        return module.prefix, module.body
    if isinstance(module, nn.Sequential):
        return None, module
    raise NotGroupable(f"a {type(module).__name__}")


class _GroupedConv2d(nn.Module):
    def __init__(self, convs: list[nn.Conv2d]):
        super().__init__()
        first = convs[0]
        self.options = dict(stride=first.stride, padding=first.padding, dilation=first.dilation)
        self.groups = first.groups * len(convs)
        self.weight = nn.Parameter(torch.cat([c.weight.detach() for c in convs]))
        self.bias = nn.Parameter(torch.cat([c.bias.detach() for c in convs])) if first.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, groups=self.groups, **self.options)

    def member_state(self, index: int, members: int) -> dict[str, torch.Tensor]:
        rows = self.weight.shape[0] // members
        state = {"weight": self.weight[index * rows : (index + 1) * rows]}
        if self.bias is not None:
            state["bias"] = self.bias[index * rows : (index + 1) * rows]
        return state


class _GroupedLinear(nn.Module):
    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.float32 = isinstance(linears[0], Float32Linear)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in linears]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in linears]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [members, batch, in] -> [members, batch, out]
        if self.float32:  # as Float32Linear: the logits layer computes in float32 under autocast
            with torch.autocast(device_type=x.device.type, enabled=False):
                return torch.baddbmm(self.bias.unsqueeze(1), x.float(), self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def member_state(self, index: int, members: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[index], "bias": self.bias[index]}


class _GroupedDropout(nn.Module):
    """Each member's mask drawn from that member's generator, in the shape it has alone."""

    def __init__(self, p: float, generators: list[torch.Generator]):
        super().__init__()
        self.p, self.generators = p, generators

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        members = len(self.generators)
        if x.dim() == 4:  # [batch, members x C, H, W]: a member's activation is [batch, C, H, W]
            batch, channels, height, width = x.shape
            solo = torch.Size((batch, channels // members, height, width))
            scales = [dropout_scale(solo, self.p, x.dtype, x.device, g) for g in self.generators]
            return x * torch.stack(scales, dim=1).view_as(x)
        solo = x.shape[1:]  # [members, batch, features]
        return x * torch.stack([dropout_scale(solo, self.p, x.dtype, x.device, g) for g in self.generators])


class _GroupedFlatten(nn.Module):
    def __init__(self, members: int):
        super().__init__()
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, members x C, H, W] -> [members, batch, C*H*W]
        batch = x.shape[0]
        return x.reshape(batch, self.members, -1).transpose(0, 1)


def _group_layer(layers: list[nn.Module], generators: list[torch.Generator]) -> nn.Module:
    first = layers[0]
    if any(type(layer) is not type(first) or repr(layer) != repr(first) for layer in layers):
        raise NotGroupable("members of different structure")
    if any(not p.requires_grad for layer in layers for p in layer.parameters()):
        raise NotGroupable(f"a frozen {type(first).__name__} in the trainable part")
    if type(first) is nn.Conv2d:
        if first.padding_mode != "zeros" or isinstance(first.padding, str):
            raise NotGroupable("a convolution with non-zero or named padding")
        return _GroupedConv2d(layers)
    if type(first) in (nn.Linear, Float32Linear):
        if first.bias is None:
            raise NotGroupable("a linear layer without bias")
        return _GroupedLinear(layers)
    if type(first) is Dropout:  # its masks are dropout_scale's, which the group reproduces per member
        return _GroupedDropout(first.p, generators)
    if type(first) is nn.Flatten:
        if (first.start_dim, first.end_dim) != (1, -1):
            raise NotGroupable("a Flatten other than Flatten(1, -1)")
        return _GroupedFlatten(len(layers))
    if type(first) in (nn.ReLU, nn.MaxPool2d):  # per channel: the same on members' channel blocks
        return first
    raise NotGroupable(f"a {type(first).__name__} layer")


class GroupedModel(nn.Module):
    """``members`` (same structure) as one module: ``forward`` takes each member's batch stacked,
    ``[members, batch, ...]``, and returns each member's logits, ``[members, batch, classes]``.
    ``dropout_generators``: one per member, its dropout stream; ``channels_last``: 4-D activations
    in that layout (move the module's weights with ``.to(memory_format=...)`` too)."""

    def __init__(
        self, members: list[nn.Module], dropout_generators: list[torch.Generator], channels_last: bool = False
    ):
        super().__init__()
        self.channels_last = channels_last
        parts = [_split_module(member) for member in members]
        prefixes = {repr(prefix) for prefix, _ in parts}
        bodies = [body for _, body in parts]
        if len(prefixes) != 1 or len({len(body) for body in bodies}) != 1:
            raise NotGroupable("members of different structure")
        self.prefix = parts[0][0]
        self.members = len(members)
        self.layers = nn.ModuleList(
            _group_layer([body[i] for body in bodies], dropout_generators) for i in range(len(bodies[0]))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members, batch = x.shape[:2]
        if self.prefix is not None:
            x = self.prefix(x.flatten(0, 1)).unflatten(0, (members, batch))
        if x.dim() == 5:  # images or feature maps: members' channels side by side
            x = x.transpose(0, 1).flatten(1, 2)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        for layer in self.layers:
            x = layer(x)
        if x.dim() != 3:
            raise NotGroupable("a body that does not end in Flatten and Linear layers")
        return x

    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """Member ``index``'s weights, named as in its own module's state_dict (body entries)."""
        state = {}
        for position, layer in enumerate(self.layers):
            if hasattr(layer, "member_state"):
                for name, tensor in layer.member_state(index, self.members).items():
                    state[f"{position}.{name}"] = tensor.detach()
        return state


def load_member(module: nn.Module, group: GroupedModel, index: int) -> None:
    """Copy member ``index``'s current weights from ``group`` into its own ``module``."""
    _, body = _split_module(module)
    with torch.no_grad():
        for name, tensor in group.member_state(index).items():
            body.get_parameter(name).copy_(tensor)
