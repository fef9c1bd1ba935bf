"""What declares a pretrained backbone: how torchvision builds it, where its ImageNet weights are,
which of its state_dict entries are its own classifier, where its frozen prefix may end, the
new head, and (optionally) which modules' outputs are its feature stages.

Data only, so that ``models.weights`` (which loads a spec's weights) and ``models.backbone``
(which builds and cuts a spec's network) both import it, and neither the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torchvision.models import WeightsEnum


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    network: Callable[[], nn.Module]  # the torchvision architecture, randomly initialised
    imagenet: WeightsEnum  # torchvision's ImageNet weights (URL and checksum) for ``weights: imagenet``
    head_prefixes: tuple[str, ...]  # state_dict entries of the network's own classifier
    stages: Callable[[nn.Module], list[nn.Module]]  # in order; the frozen prefix ends between two
    head: Callable[[int, int], nn.Sequential]  # (features after the stages, classes) -> the new head
    # The network's feature stages for ``Classifier.forward_features``: name -> the module whose output
    # is that stage, in forward order, each one of ``stages(net)`` or in an nn.Sequential of them (found by
    # identity, so the stages span the frozen prefix and the body wherever the cut falls). None: the
    # backbone declares no stages (feature methods refuse it).
    feature_stages: Callable[[nn.Module], dict[str, nn.Module]] | None = None
