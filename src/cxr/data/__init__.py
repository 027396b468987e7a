"""Datasets: the full and lungs views of an X-ray, preparing a raw dataset into split arrays, and reading them back."""
