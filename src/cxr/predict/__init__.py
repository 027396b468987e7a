"""Trained models on new X-rays: the files to read, and one prediction per film (cxr predict)."""
