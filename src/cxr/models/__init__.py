"""Classifiers: one registry over torchvision and timm, weights loading, checkpoints and batched inference."""
