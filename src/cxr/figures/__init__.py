"""Figure building blocks shared by the explanations, the segmenter and the report."""
