"""Evaluation: metrics computed from saved predictions."""
