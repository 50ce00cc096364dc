"""Evaluate modules for ARO: `aro_accuracy` (loadable by path with `evaluate.load`)."""
