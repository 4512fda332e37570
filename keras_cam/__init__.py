"""keras_cam: class activation maps for Keras 3 / TensorFlow image classifiers.

Example:
```python
import keras_cam as kc

maps = kc.GradCAM(model)(images)          # (B, H, W) float32 in [0, 1]
fig = kc.plot_cams(images, {"Grad-CAM": maps})
```

The public names are imported on first use (PEP 562 `__getattr__`), so `import keras_cam`,
and the `keras-cam --help` that starts with it, do not load TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (a submodule itself when the name is that module).
_HOMES: dict[str, str] = {
    "datasets": "keras_cam.datasets",
    "io": "keras_cam.io",
    "metrics": "keras_cam.metrics",
    "targets": "keras_cam.targets",
    "HeatmapCallback": "keras_cam.callbacks",
    "EvaluationTable": "keras_cam.evaluation",
    "evaluate": "keras_cam.evaluation",
    "METHODS": "keras_cam.methods",
    "CAM": "keras_cam.methods",
    "BaseCAM": "keras_cam.methods",
    "FasterScoreCAM": "keras_cam.methods",
    "GradCAM": "keras_cam.methods",
    "GradCAMPlusPlus": "keras_cam.methods",
    "HiResCAM": "keras_cam.methods",
    "LayerCAM": "keras_cam.methods",
    "ScoreCAM": "keras_cam.methods",
    "XGradCAM": "keras_cam.methods",
    "get_method": "keras_cam.methods",
    "fine_tune_gap": "keras_cam.retrofit",
    "retrofit_gap": "keras_cam.retrofit",
    "build_cam_model": "keras_cam.surgery",
    "find_conv_layer": "keras_cam.surgery",
    "BinaryTarget": "keras_cam.targets",
    "ClassTarget": "keras_cam.targets",
    "Target": "keras_cam.targets",
    "TopPredictionTarget": "keras_cam.targets",
    "colorize": "keras_cam.visualize",
    "overlay": "keras_cam.visualize",
    "plot_cams": "keras_cam.visualize",
    "save_figure": "keras_cam.visualize",
    "save_overlay": "keras_cam.visualize",
    "imagenet_class_names": "keras_cam.io",
}

__all__ = [
    "CAM",
    "METHODS",
    "BaseCAM",
    "BinaryTarget",
    "ClassTarget",
    "EvaluationTable",
    "FasterScoreCAM",
    "GradCAM",
    "HeatmapCallback",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "Target",
    "TopPredictionTarget",
    "XGradCAM",
    "build_cam_model",
    "colorize",
    "datasets",
    "evaluate",
    "find_conv_layer",
    "fine_tune_gap",
    "get_method",
    "imagenet_class_names",
    "metrics",
    "overlay",
    "plot_cams",
    "retrofit_gap",
    "save_figure",
    "save_overlay",
    "targets",
]


def __getattr__(name: str) -> Any:
    """Imports a public name's module on first access (PEP 562) and caches the name."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'keras_cam' has no attribute {name!r}")
    module = importlib.import_module(home)
    value = module if home.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes, the public names not yet imported included."""
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports
    from keras_cam import datasets, io, metrics, targets
    from keras_cam.callbacks import HeatmapCallback
    from keras_cam.evaluation import EvaluationTable, evaluate
    from keras_cam.io import imagenet_class_names
    from keras_cam.methods import (
        CAM,
        METHODS,
        BaseCAM,
        FasterScoreCAM,
        GradCAM,
        GradCAMPlusPlus,
        HiResCAM,
        LayerCAM,
        ScoreCAM,
        XGradCAM,
        get_method,
    )
    from keras_cam.retrofit import fine_tune_gap, retrofit_gap
    from keras_cam.surgery import build_cam_model, find_conv_layer
    from keras_cam.targets import BinaryTarget, ClassTarget, Target, TopPredictionTarget
    from keras_cam.visualize import colorize, overlay, plot_cams, save_figure, save_overlay
