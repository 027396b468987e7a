"""Lung segmentation with Ultralytics YOLOv8n-seg: export, offline training, evaluation, interpretation."""
