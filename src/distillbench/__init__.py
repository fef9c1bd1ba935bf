"""distillbench: a one-command comparative study of small CNNs, fine-tuned ImageNet models and
knowledge-distilled students."""

__version__ = "0.1.0"
