"""keras_cam: class activation maps for Keras 3 / TensorFlow image classifiers.

Example:
```python
import keras_cam as kc

maps = kc.GradCAM(model)(images)          # (B, H, W) float32 in [0, 1]
fig = kc.plot_cams(images, {"Grad-CAM": maps})
```
"""

from keras_cam import datasets, metrics, sanity, targets, verdict
from keras_cam.callbacks import HeatmapCallback
from keras_cam.evaluation import EvaluationTable, evaluate
from keras_cam.methods import (
    METHODS,
    CAM,
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

__version__ = "0.1.0"

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
    "metrics",
    "overlay",
    "plot_cams",
    "retrofit_gap",
    "sanity",
    "save_figure",
    "save_overlay",
    "targets",
    "verdict",
]
