"""Chest X-ray classification and analysis, the library behind the DVC stages in `stages/`.

Sub-packages by concern: params (reading params.yaml), io (files, images), data (views, splits,
prepared arrays), synthetic (embedded default data), models (registry, checkpoints, inference),
training, metrics, report. dvc.yaml names the pipeline's files and passes each stage its paths;
`cxr.paths` looks them up there for the command-line tools.
"""
