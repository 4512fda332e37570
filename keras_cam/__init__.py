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

_EXPORTS: dict[str, tuple[str, ...]] = {
    "keras_cam": ("datasets", "io", "metrics", "sanity", "targets", "verdict"),
    "keras_cam.callbacks": ("HeatmapCallback",),
    "keras_cam.evaluation": ("EvaluationTable", "evaluate"),
    "keras_cam.io": ("imagenet_class_names",),
    "keras_cam.methods": (
        "AblationCAM", "CAM", "METHODS", "BaseCAM", "EigenCAM", "EigenGradCAM", "FEM",
        "FasterScoreCAM", "FinerCAM", "FullGrad", "GradCAM", "GradCAMElementWise",
        "GradCAMPlusPlus", "GuidedBackprop", "GuidedGradCAM", "HiResCAM", "ISCAM", "KPCACAM",
        "LayerCAM", "RandomCAM", "SSCAM", "ScoreCAM", "ShapleyCAM", "SmoothGradCAMPlusPlus",
        "XGradCAM", "get_method", "normalize_maps",
    ),
    "keras_cam.retrofit": ("fine_tune_gap", "retrofit_gap"),
    "keras_cam.streaming": ("ExplainedBatch", "explain_dataset"),
    "keras_cam.surgery": ("build_cam_model", "find_conv_layer"),
    "keras_cam.targets": (
        "BinaryTarget", "ClassTarget", "MultiLabelTarget", "RegressionTarget",
        "SegmentationTarget", "SimilarityTarget", "Target", "TopPredictionTarget",
    ),
    "keras_cam.visualize": (
        "colorize", "overlay", "plot_cams", "plot_signal_cam", "save_figure", "save_overlay",
        "slice_grid",
    ),
}
"""The one list of public names: home module -> the names it exports (`"keras_cam"`: the
submodules themselves)."""

_HOMES = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """Imports a public name's module on first access (PEP 562) and caches the name."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'keras_cam' has no attribute {name!r}")
    if home == __name__:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes, the public names not yet imported included."""
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see (tests/test_cli_quiet.py keeps it = _EXPORTS)
    from keras_cam import datasets, io, metrics, sanity, targets, verdict
    from keras_cam.callbacks import HeatmapCallback
    from keras_cam.evaluation import EvaluationTable, evaluate
    from keras_cam.io import imagenet_class_names
    from keras_cam.methods import (
        AblationCAM,
        CAM,
        METHODS,
        BaseCAM,
        EigenCAM,
        EigenGradCAM,
        FEM,
        FasterScoreCAM,
        FinerCAM,
        FullGrad,
        GradCAM,
        GradCAMElementWise,
        GradCAMPlusPlus,
        GuidedBackprop,
        GuidedGradCAM,
        HiResCAM,
        ISCAM,
        KPCACAM,
        LayerCAM,
        RandomCAM,
        SSCAM,
        ScoreCAM,
        ShapleyCAM,
        SmoothGradCAMPlusPlus,
        XGradCAM,
        get_method,
        normalize_maps,
    )
    from keras_cam.retrofit import fine_tune_gap, retrofit_gap
    from keras_cam.streaming import ExplainedBatch, explain_dataset
    from keras_cam.surgery import build_cam_model, find_conv_layer
    from keras_cam.targets import (
        BinaryTarget,
        ClassTarget,
        MultiLabelTarget,
        RegressionTarget,
        SegmentationTarget,
        SimilarityTarget,
        Target,
        TopPredictionTarget,
    )
    from keras_cam.visualize import (
        colorize,
        overlay,
        plot_cams,
        plot_signal_cam,
        save_figure,
        save_overlay,
        slice_grid,
    )
