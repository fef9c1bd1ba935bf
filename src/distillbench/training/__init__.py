"""Training: the loop, and distillation losses."""
