"""An overlay written with plain NumPy and OpenCV, independently of keras_cam, for the tests."""

import cv2
import numpy as np


def reference_overlay(image_uint8_rgb, heatmap, alpha, colormap=cv2.COLORMAP_JET):
    """`round((1 - alpha) * image + alpha * jet(heatmap))`, the heatmap resized to the image.

    Args:
        image_uint8_rgb: `uint8` RGB image `(H, W, 3)`.
        heatmap: float map `(h, w)` in [0, 1], resized bilinearly to `(H, W)`.
        alpha: weight of the colorized heatmap.
        colormap: an OpenCV colormap constant. Defaults to jet.

    Returns:
        float64 `(H, W, 3)` blend, rounded to whole levels.
    """
    height, width = image_uint8_rgb.shape[:2]
    resized = cv2.resize(heatmap.astype(np.float32), (width, height), cv2.INTER_LINEAR)
    levels = np.uint8(np.round(np.clip(resized, 0, 1) * 255))
    colour = cv2.applyColorMap(levels, colormap)[..., ::-1]
    return np.round((1 - alpha) * image_uint8_rgb + alpha * colour)
