"""keras_cam: class activation maps for Keras 3 / TensorFlow image classifiers.

Example:
```python
import keras_cam as kc

maps = kc.GradCAM(model)(images)          # (B, H, W) float32 in [0, 1]
```
"""

from keras_cam.methods import (
    METHODS,
    BaseCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
    get_method,
)
from keras_cam.surgery import build_cam_model, find_conv_layer

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "XGradCAM",
    "build_cam_model",
    "find_conv_layer",
    "get_method",
]
