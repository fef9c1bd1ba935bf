"""The CIFAR knowledge-distillation zoo (RepDistiller's ``models/``, which mdistiller reuses).

``ARCHITECTURES_OF_THE_ZOO`` maps each architecture name to its builder; ``models/__init__`` registers them.
"""

from __future__ import annotations

ARCHITECTURES_OF_THE_ZOO: dict = {}
