"""CAM methods and the registry every tool (callback, CLI, evaluate) looks them up in."""

from __future__ import annotations

from keras_cam.methods.base import BaseCAM
from keras_cam.methods.cam import CAM
from keras_cam.methods.gradient import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from keras_cam.methods.score import FasterScoreCAM, ScoreCAM

METHODS: dict[str, type[BaseCAM]] = {
    "cam": CAM,
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "scorecam": ScoreCAM,
    "fasterscorecam": FasterScoreCAM,
}
"""Registry: method name -> class. Register a new method here once and it appears everywhere."""


def _canonical(name: str) -> str:
    return "".join(name.lower().split()).replace("-", "").replace("_", "").replace("plusplus", "++")


def get_method(name: str | type[BaseCAM]) -> type[BaseCAM]:
    """Looks a method class up by name (case, spaces, `-` and `_` are ignored).

    Args:
        name: a registered name such as `"gradcam++"` or `"Grad-CAM++"`, or a method class
            (returned as is).

    Returns:
        The method class, e.g. `GradCAMPlusPlus`.

    Raises:
        ValueError: an unknown name; the message lists the known ones.

    Example:
    ```python
    cam = keras_cam.get_method("grad-cam++")(model)
    ```
    """
    if isinstance(name, type) and issubclass(name, BaseCAM):
        return name
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a method name; received {type(name).__name__}.")
    key = _canonical(name)
    if key not in METHODS:
        raise ValueError(f"Unknown CAM method {name!r}. Known methods: {sorted(METHODS)}.")
    return METHODS[key]


__all__ = ["CAM", "METHODS", "BaseCAM", "FasterScoreCAM", "GradCAM", "GradCAMPlusPlus",
           "HiResCAM", "LayerCAM", "ScoreCAM", "XGradCAM", "get_method"]
