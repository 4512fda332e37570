"""CAM methods and the registry every tool (callback, CLI, evaluate) looks them up in."""

from __future__ import annotations

from collections.abc import Sequence

from keras_cam.methods.ablation import AblationCAM
from keras_cam.methods.base import NORMALIZE_MODES, BaseCAM, normalize_maps
from keras_cam.methods.cam import CAM
from keras_cam.methods.fullgrad import FullGrad
from keras_cam.methods.gradient import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from keras_cam.methods.activation import FEM, RandomCAM
from keras_cam.methods.guided import GuidedBackprop, GuidedGradCAM
from keras_cam.methods.eigen import EigenCAM, EigenGradCAM, KPCACAM
from keras_cam.methods.gradient import (
    FinerCAM,
    GradCAMElementWise,
    ShapleyCAM,
    SmoothGradCAMPlusPlus,
)
from keras_cam.methods.score import ISCAM, SSCAM, FasterScoreCAM, ScoreCAM
from keras_cam.registry import METHOD_CLASSES, load

METHODS: dict[str, type[BaseCAM]] = {
    name: load(path) for name, path in METHOD_CLASSES.items()
}
"""Registry: method name -> class, built from `keras_cam.registry.METHOD_CLASSES` (the names
without TensorFlow): register a new method there once and it appears everywhere."""


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
    # Keys compared in one spelling, so a method registered at run time as "MyCAM" is found.
    known = {_canonical(key): method for key, method in METHODS.items()}
    if _canonical(name) not in known:
        raise ValueError(f"Unknown CAM method {name!r}. Known methods: {sorted(METHODS)}.")
    return known[_canonical(name)]


ALL = "all"
"""The name `resolve_methods` reads as every registered method."""


def method_name(method: type[BaseCAM]) -> str:
    """The name tools show a method under: its `METHODS` key, else its class name.

    Args:
        method: a method class.

    Returns:
        e.g. `"gradcam++"` for `GradCAMPlusPlus`, `"MyCAM"` for an unregistered `MyCAM`.
    """
    return next((name for name, known in METHODS.items() if known is method), method.__name__)


def resolve_methods(
    methods: str | type[BaseCAM] | Sequence[str | type[BaseCAM]], argument: str = "methods"
) -> dict[str, type[BaseCAM]]:
    """Looks up the methods a tool (CLI, callback, `evaluate`) was asked for.

    The one place names become classes, so a method registered once in `METHODS` appears in
    every tool, under one name (see `method_name`).

    Args:
        methods: a name (see `get_method`), a method class, `"all"` (every registered
            method), or a sequence of them.
        argument: the argument's name in error messages. Defaults to `"methods"`.

    Returns:
        `{name: class}` in the given order (`"all"` in registry order).

    Raises:
        TypeError: `methods` is neither a name, a class nor a sequence of them.
        ValueError: no method, an unknown name (the message lists the known ones), or a
            method named twice (in any spelling).

    Example:
    ```python
    resolve_methods(["Grad-CAM", "scorecam"])   # {"gradcam": GradCAM, "scorecam": ScoreCAM}
    ```
    """
    if isinstance(methods, (str, type)):
        methods = [methods]
    if not isinstance(methods, Sequence):
        raise TypeError(
            f"`{argument}` must be a method name, a method class or a sequence of them; "
            f"received {methods!r}."
        )
    if not methods:
        raise ValueError(
            f"`{argument}` is empty; name at least one method; known methods: {sorted(METHODS)}."
        )
    if ALL in methods:
        return dict(METHODS)
    resolved: dict[str, type[BaseCAM]] = {}
    for spec in methods:
        method = get_method(spec)
        name = method_name(method)
        if name in resolved:
            raise ValueError(
                f"`{argument}` lists {name!r} more than once; received {list(methods)!r}."
            )
        resolved[name] = method
    return resolved


__all__ = ["ALL", "CAM", "METHODS", "NORMALIZE_MODES", "BaseCAM", "FasterScoreCAM", "GradCAM",
           "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "ScoreCAM", "XGradCAM", "get_method",
           "method_name", "normalize_maps", "resolve_methods"]
__all__ += ["FEM", "KPCACAM", "EigenCAM", "EigenGradCAM", "FinerCAM", "GradCAMElementWise",
            "GuidedBackprop", "GuidedGradCAM", "RandomCAM", "ShapleyCAM", "SmoothGradCAMPlusPlus"]
__all__ += ["AblationCAM", "FullGrad", "ISCAM", "SSCAM"]
