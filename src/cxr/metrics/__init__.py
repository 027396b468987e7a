"""Test-split metrics: scikit-learn's definitions, calibration error and bootstrap intervals."""
