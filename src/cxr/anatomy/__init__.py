"""Chest anatomy on lung masks: what the explanations, the segmenter and the lung views all divide alike."""
