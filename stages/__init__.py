"""Chest X-ray classification pipeline: one module per DVC stage plus a few shared modules."""
