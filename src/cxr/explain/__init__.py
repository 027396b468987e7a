"""Explanations of the classifiers: Grad-CAM and saliency maps, and numbers that say where a model looks.

maps: the maps (pytorch-grad-cam's CAM methods at a layer with real resolution, input-gradient saliency);
scores: what the maps say against the lung masks (energy inside the lungs, pointing game, lung zones) and
how faithful they are (ROAD); results: the explained images and their maps as one file; figures: panels.
"""
