"""The names of keras_cam's methods and metrics, and where each lives, without importing them.

The one source of truth for the names: `keras_cam.methods.METHODS` and
`keras_cam.metrics.METRICS` are built from these tables (importing each class or function),
and `keras-cam --help` lists the names from them without importing TensorFlow. A new method
or metric is registered by one line here (and its class or function in its module).

Example:
```python
from keras_cam import registry
"gradcam++" in registry.METHOD_CLASSES        # True, and TensorFlow is not imported
registry.load(registry.METHOD_CLASSES["gradcam++"])   # GradCAMPlusPlus (imports TensorFlow)
```
"""

from __future__ import annotations

import importlib
from typing import Any

METHOD_CLASSES: dict[str, str] = {
    "cam": "keras_cam.methods.cam:CAM",
    "gradcam": "keras_cam.methods.gradient:GradCAM",
    "gradcam++": "keras_cam.methods.gradient:GradCAMPlusPlus",
    "xgradcam": "keras_cam.methods.gradient:XGradCAM",
    "hirescam": "keras_cam.methods.gradient:HiResCAM",
    "layercam": "keras_cam.methods.gradient:LayerCAM",
    "scorecam": "keras_cam.methods.score:ScoreCAM",
    "fasterscorecam": "keras_cam.methods.score:FasterScoreCAM",
    "eigencam": "keras_cam.methods.eigen:EigenCAM",
    "kpcacam": "keras_cam.methods.eigen:KPCACAM",
    "fem": "keras_cam.methods.activation:FEM",
    "randomcam": "keras_cam.methods.activation:RandomCAM",
    "eigengradcam": "keras_cam.methods.eigen:EigenGradCAM",
    "gradcamelementwise": "keras_cam.methods.gradient:GradCAMElementWise",
    "smoothgradcam++": "keras_cam.methods.gradient:SmoothGradCAMPlusPlus",
    "shapleycam": "keras_cam.methods.gradient:ShapleyCAM",
    "finercam": "keras_cam.methods.gradient:FinerCAM",
    "guidedbackprop": "keras_cam.methods.guided:GuidedBackprop",
    "guidedgradcam": "keras_cam.methods.guided:GuidedGradCAM",
    "ablationcam": "keras_cam.methods.ablation:AblationCAM",
    "sscam": "keras_cam.methods.score:SSCAM",
    "iscam": "keras_cam.methods.score:ISCAM",
    "fullgrad": "keras_cam.methods.fullgrad:FullGrad",
}
"""Method name -> `"module:Class"` of its class, in the order tools list the methods."""

METRIC_FUNCTIONS: dict[str, str] = {
    "average_drop": "keras_cam.metrics:average_drop",
    "increase_in_confidence": "keras_cam.metrics:increase_in_confidence",
    "remove_top_fraction": "keras_cam.metrics:remove_top_fraction",
    "keep_top_fraction": "keras_cam.metrics:keep_top_fraction",
    "deletion": "keras_cam.metrics:deletion",
    "insertion": "keras_cam.metrics:insertion",
    "road": "keras_cam.metrics:road",
    "box_iou": "keras_cam.metrics:box_iou",
    "box_iou_cam": "keras_cam.metrics:box_iou_cam",
    "pointing_game": "keras_cam.metrics:pointing_game",
    "energy_pointing_game": "keras_cam.metrics:energy_pointing_game",
    "sparseness": "keras_cam.metrics:sparseness",
}
"""Metric name -> `"module:function"` of its function, in the order of a table's columns."""


def load(path: str) -> Any:
    """The object a `"module:name"` path names, importing its module.

    Args:
        path: e.g. `"keras_cam.methods.gradient:GradCAM"`.

    Returns:
        The object (a class, a function).

    Raises:
        ValueError: `path` is not of the form `"module:name"`.
        ImportError, AttributeError: no such module, or no such name in it.

    Example:
    ```python
    GradCAM = load("keras_cam.methods.gradient:GradCAM")
    ```
    """
    module, separator, name = path.partition(":")
    if not (separator and module and name):
        raise ValueError(f"`path` must be 'module:name'; received {path!r}.")
    return getattr(importlib.import_module(module), name)
