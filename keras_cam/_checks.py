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


def check_flag(name: str, value: object) -> bool:
    """`value` as a bool: `True` or `False` (NumPy's `np.bool_` too), nothing merely truthy.

    A string such as `"False"` (read from a configuration file) is truthy, so reading it with
    `bool()` would silently switch the option on; it is refused instead.

    Args:
        name: the argument's name, for the message (e.g. `"eigen_smooth"`).
        value: the value to check.

    Returns:
        `bool(value)`.

    Raises:
        TypeError: anything but a bool.

    Example:
    ```python
    eigen_smooth = check_flag("eigen_smooth", eigen_smooth)
    ```
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{name}` must be True or False; received {value!r} ({type(value).__name__}). "
            f"Pass a bool, e.g. {name}=True."
        )
    return bool(value)


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


GRID_SHAPES = {3: "(B, T, C)", 4: "(B, H, W, C)", 5: "(B, D, H, W, C)"}
"""Batch shapes of signals, images and volumes, by rank."""

_GRID_KINDS = {3: "signals", 4: "images", 5: "volumes"}


def check_images(images: ArrayLike, ranks: tuple[int, ...] = (4,)) -> np.ndarray:
    """A non-empty float32 batch `(B, H, W, C)` of finite values (any layout of the last 3 axes).

    Args:
        images: the batch.
        ranks: the ranks accepted (keys of `GRID_SHAPES`): `(4,)` for images only, `(3, 4, 5)`
            for signals `(B, T, C)`, images and volumes `(B, D, H, W, C)` too. Defaults to
            `(4,)`.

    Raises:
        TypeError: not numeric.
        ValueError: not of an accepted rank, empty, or holding NaN or infinite values.
    """
    expected = " or ".join(GRID_SHAPES[rank] for rank in ranks)
    array = as_numeric_array("images", images, expected)
    if array.ndim not in ranks:
        hints = []
        if array.ndim + 1 in ranks:
            hints.append("Add a batch axis to a single one (e.g. `images[None]`).")
        if array.ndim in GRID_SHAPES:
            hints.append(
                f"If these are {_GRID_KINDS[array.ndim]} {GRID_SHAPES[array.ndim]}, they are not "
                f"supported here: this function takes {expected} only."
            )
        raise ValueError(
            f"`images` must be a batch of shape {expected}; received shape {array.shape}. "
            + " ".join(hints)
        )
    if array.shape[0] == 0:
        raise ValueError("`images` is an empty batch (shape[0] == 0); pass at least one image.")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if not finite.all():
        raise ValueError(
            "`images` contain NaN or infinite values (first in image "
            f"{int(np.flatnonzero(~finite)[0])}); check the preprocessing."
        )
    return array


def check_maps(
    maps: ArrayLike,
    shape: tuple[int, ...] | None = None,
    *,
    order_only: bool = False,
    ranks: tuple[int, ...] = (3,),
) -> np.ndarray:
    """Validates a `(B, H, W)` batch of maps; `shape` is the `(B, H, W)` of the images.

    With `ranks=(2, 3, 4)` maps of signals `(B, T)` and volumes `(B, D, H, W)` are accepted
    too (a given `shape` must then match).

    With `order_only=False` the maps are soft masks, read by `visualize.to_unit_heatmap`:
    float32 in [0, 1] (floats up to 1e-3 outside are clipped, `uint8` is divided by 255, bool
    is 0/1, anything else is refused). With `order_only=True` only the order of the pixels
    matters: any finite values of any scale (negative included), returned as float64 so that
    no two distinct values become a tie.

    Raises:
        TypeError: not numeric, or complex with `order_only`.
        ValueError: not 3-D, not `shape`, empty, or values the reading refuses.
    """
    expected = " or ".join(GRID_SHAPES[rank + 1][:-4] + ")" for rank in ranks)
    array = as_numeric_array("maps", maps, expected)
    if array.ndim not in ranks:
        raise ValueError(
            f"`maps` must be a batch of shape {expected}; received shape {array.shape}."
        )
    if shape is not None and array.shape != shape:
        layout = GRID_SHAPES[len(shape) + 1][:-4] + ")"
        raise ValueError(
            f"`maps` must have shape {layout} = {shape} to match `images`; received shape "
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


BOX_FORMATS = {1: "(x0, x1)", 2: "(x0, y0, x1, y1)", 3: "(x0, y0, z0, x1, y1, z1)"}
"""Boxes by the number of spatial axes of the maps: intervals of signals, boxes of images and
volumes; the lows, then the (exclusive) highs, `x` along the last map axis (T or W), `y` along
H, `z` along D: `signal[x0:x1]`, `image[y0:y1, x0:x1]`, `volume[z0:z1, y0:y1, x0:x1]`."""


def check_boxes(boxes: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """Validates `(B, 4)` integer boxes `(x0, y0, x1, y1)` inside `(B, H, W)` maps.

    Maps of signals `(B, T)` take intervals `(B, 2)` `(x0, x1)` and maps of volumes
    `(B, D, H, W)` take boxes `(B, 6)` `(x0, y0, z0, x1, y1, z1)` (see `BOX_FORMATS`).

    Returns:
        int64 `(B, 2n)` for maps with `n` spatial axes.

    Raises:
        TypeError: not integers.
        ValueError: not one box per map, or a box that is empty or not inside its image.
    """
    if len(shape) != 3:
        return _check_nd_boxes(boxes, shape)
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


def _check_nd_boxes(boxes: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """`check_boxes` for maps of signals and volumes."""
    batch, sizes = shape[0], shape[:0:-1]  # sizes along x, y, z
    axes = len(sizes)
    layout = BOX_FORMATS[axes]
    array = as_numeric_array("boxes", boxes, f"(B, {2 * axes})")
    if array.shape != (batch, 2 * axes):
        raise ValueError(
            f"`boxes` must have shape (B, {2 * axes}) = ({batch}, {2 * axes}), one {layout} "
            f"box per map of shape {shape[1:]}; received shape {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"`boxes` must hold integer pixel coordinates; received dtype {array.dtype}."
        )
    low, high = array[:, :axes], array[:, axes:]
    bad = ((low < 0) | (high > np.array(sizes)) | (low >= high)).any(axis=1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"`boxes[{index}]` = {tuple(int(v) for v in array[index])} is not a non-empty "
            f"{layout} box inside maps of shape {shape[1:]}: expected 0 <= low < high <= size "
            f"along each axis (x along the last map axis; highs exclusive)."
        )
    return array.astype(np.int64)


def check_number(name: str, value: object, minimum: float = 0.0, inclusive: bool = False) -> float:
    """`value` as a float above `minimum` (or at it, with `inclusive`).

    Args:
        name: the argument's name, for the message.
        value: the value to check (a bool is refused).
        minimum: the bound. Defaults to `0.0`.
        inclusive: whether `minimum` itself is allowed. Defaults to `False`.

    Returns:
        `float(value)`.

    Raises:
        TypeError: not a real number.
        ValueError: not finite, or below (or at) the bound.

    Example:
    ```python
    noise_std = check_number("noise_std", noise_std, 0.0, inclusive=True)
    ```
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number; received {value!r} ({type(value).__name__}).")
    bound = ">=" if inclusive else ">"
    if not np.isfinite(value) or value < minimum or (value == minimum and not inclusive):
        raise ValueError(f"`{name}` must be a finite number {bound} {minimum}; received {value!r}.")
    return float(value)


def check_seed(seed: object) -> int:
    """`seed` as an int >= 0 (a random generator's seed).

    Raises:
        TypeError: not an integer (a bool is refused).
        ValueError: negative.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an int; received {seed!r} ({type(seed).__name__}).")
    if seed < 0:
        raise ValueError(f"`seed` must be >= 0; received {seed}.")
    return int(seed)
