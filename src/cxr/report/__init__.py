"""Reports across runs: the comparison table and figure."""
