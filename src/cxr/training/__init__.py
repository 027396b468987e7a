"""Training a classifier: augmentation, class balance, the epoch loop, best-epoch selection and its log."""
