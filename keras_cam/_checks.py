"""Argument checks shared by keras_cam's modules (private to the package).

Each check raises a `TypeError` or `ValueError` that names the argument, what was received and
what is expected, and returns the argument in the form the caller computes with. The module is
private; its functions are public names so that other keras_cam modules import them by name.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike

from keras_cam.visualize import to_unit_heatmap


def check_positive_int(name: str, value: object) -> int:
    """`value` as an int >= 1.

    Args:
        name: the argument's name, for the message.
        value: the value to check (a bool is refused).

    Returns:
        `int(value)`.

    Raises:
        TypeError: not an integer.
        ValueError: below 1.

    Example:
    ```python
    steps = check_positive_int("steps", steps)
    ```
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int; received {value!r} ({type(value).__name__}).")
    if value < 1:
        raise ValueError(f"`{name}` must be at least 1; received {value}.")
    return int(value)


def check_fraction(fraction: object, name: str = "fraction") -> float:
    """`fraction` as a float in (0, 1]; `name` is the argument's name in the messages.

    Raises:
        TypeError: not a real number.
        ValueError: outside (0, 1].
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"`{name}` must be a number in (0, 1]; received {fraction!r}.")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"`{name}` must be in (0, 1]; received {fraction!r}.")
    return float(fraction)


def check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    """Raises a `ValueError` naming `name` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; received {value!r}.")


def as_numeric_array(name: str, value: ArrayLike, expected: str) -> np.ndarray:
    """`value` as a NumPy array of numbers or bools.

    Args:
        name: the argument's name, for the message.
        value: an array-like or tensor.
        expected: its expected shape in words, e.g. `"(B, H, W, C)"`.

    Raises:
        TypeError: not convertible to an array, or not numeric.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a NumPy array or tensor of shape {expected}; "
            f"received {type(value).__name__}."
        ) from error
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"`{name}` must be numeric; received dtype {array.dtype}.")
    return array


def check_images(images: ArrayLike) -> np.ndarray:
    """A non-empty float32 batch `(B, H, W, C)` of finite values (any layout of the last 3 axes).

    Raises:
        TypeError: not numeric.
        ValueError: not 4-D, empty, or holding NaN or infinite values.
    """
    array = as_numeric_array("images", images, "(B, H, W, C)")
    if array.ndim != 4:
        raise ValueError(
            f"`images` must be a batch of shape (B, H, W, C); received shape {array.shape}. "
            "Add a batch axis to a single image (e.g. `images[None]`)."
        )
    if array.shape[0] == 0:
        raise ValueError("`images` is an empty batch (shape[0] == 0); pass at least one image.")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValueError("`images` contain NaN or infinite values; check the preprocessing.")
    return array


def check_maps(
    maps: ArrayLike, shape: tuple[int, int, int] | None = None, *, order_only: bool = False
) -> np.ndarray:
    """Validates a `(B, H, W)` batch of maps; `shape` is the `(B, H, W)` of the images.

    With `order_only=False` the maps are soft masks, read by `visualize.to_unit_heatmap`:
    float32 in [0, 1] (floats up to 1e-3 outside are clipped, `uint8` is divided by 255, bool
    is 0/1, anything else is refused). With `order_only=True` only the order of the pixels
    matters: any finite values of any scale (negative included), returned as float64 so that
    no two distinct values become a tie.

    Raises:
        TypeError: not numeric, or complex with `order_only`.
        ValueError: not 3-D, not `shape`, empty, or values the reading refuses.
    """
    array = as_numeric_array("maps", maps, "(B, H, W)")
    if array.ndim != 3:
        raise ValueError(
            f"`maps` must be a batch of shape (B, H, W); received shape {array.shape}."
        )
    if shape is not None and array.shape != shape:
        raise ValueError(
            f"`maps` must have shape (B, H, W) = {shape} to match `images`; received shape "
            f"{array.shape}. Compute the maps at the image resolution (`upsample=True`)."
        )
    if array.shape[0] == 0:
        raise ValueError("`maps` is an empty batch (shape[0] == 0); pass at least one map.")
    if not order_only:
        return to_unit_heatmap(array, "maps")
    if np.iscomplexobj(array):
        raise TypeError(
            f"`maps` must hold real values to rank pixels by; received dtype {array.dtype}."
        )
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(
            "`maps` contain NaN or infinite values; the metric ranks pixels by map value, "
            "which needs finite values."
        )
    return array


def check_boxes(boxes: ArrayLike, shape: tuple[int, int, int]) -> np.ndarray:
    """Validates `(B, 4)` integer boxes `(x0, y0, x1, y1)` inside `(B, H, W)` maps.

    Returns:
        int64 `(B, 4)`.

    Raises:
        TypeError: not integers.
        ValueError: not one box per map, or a box that is empty or not inside its image.
    """
    batch, height, width = shape
    array = as_numeric_array("boxes", boxes, "(B, 4)")
    if array.shape != (batch, 4):
        raise ValueError(
            f"`boxes` must have shape (B, 4) = ({batch}, 4), one (x0, y0, x1, y1) box per map; "
            f"received shape {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"`boxes` must hold integer pixel coordinates; received dtype {array.dtype}."
        )
    x0, y0, x1, y1 = array.T
    bad = (x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height) | (x0 >= x1) | (y0 >= y1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"`boxes[{index}]` = {tuple(int(v) for v in array[index])} is not a non-empty box "
            f"inside the {height}x{width} image: expected 0 <= x0 < x1 <= {width} and "
            f"0 <= y0 < y1 <= {height} (x1 and y1 exclusive)."
        )
    return array.astype(np.int64)
