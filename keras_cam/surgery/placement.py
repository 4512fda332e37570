"""Where the feature map sits on the input: layers that flip or move positions on the grid,
and the placement of the explained layer's map (with warnings where it is unknown)."""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
from keras import layers as klayers
from keras import ops
from keras.src.ops.numpy import Flip, Fliplr

from keras_cam.geometry import Grid


def flipped_axes(operation: Any, rank: int) -> tuple[int, ...] | None:
    """Tensor axes a rank-`rank` `keras.ops.flip` / `fliplr` reverses; `None` for other
    operations."""
    if isinstance(operation, Fliplr):
        return (1,)
    if not isinstance(operation, Flip):
        return None
    axis = operation.axis
    axes = range(rank) if axis is None else (axis,) if isinstance(axis, int) else axis
    return tuple(int(a) % rank for a in axes)


def moves_pixels(layer: Any, arguments: tuple[Any, Any], tensor: Any, axes: tuple) -> bool:
    """Whether a `Lambda`, `Permute` or bare Keras operation that keeps the grid's size moves
    values between positions (a flip written as a Lambda or `x[:, :, ::-1]`, a roll, a
    transpose of a square map). Known layers and pointwise ones keep their grid.

    Probed numerically: a layer that moves nothing commutes with a fixed random shuffle of the
    positions; one that cannot be run on a concrete batch of one counts as moving.
    """
    if isinstance(layer, keras.layers.Layer) and not isinstance(
        layer, (klayers.Lambda, klayers.Permute)
    ):
        return False
    shape = (1, *tensor.shape[1:])
    if None in shape:
        return True
    rng = np.random.default_rng(0)
    order = rng.permutation(int(np.prod([shape[axis] for axis in axes])))
    front = tuple(range(1, len(axes) + 1))

    def shuffle(values: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(values, axes, front)
        flat = moved.reshape(moved.shape[0], -1, *moved.shape[len(axes) + 1 :])[:, order]
        return np.moveaxis(flat.reshape(moved.shape), front, axes)

    values = rng.uniform(0.1, 1.0, shape).astype(np.float32)

    def run(batch: np.ndarray) -> np.ndarray:
        concrete = ops.cast(ops.convert_to_tensor(batch), tensor.dtype)
        args, kwargs = keras.tree.map_structure(
            lambda value: concrete if value is tensor else value, arguments
        )
        return np.asarray(ops.convert_to_numpy(layer(*args, **kwargs)), np.float64)

    try:
        shuffled_output, output = run(shuffle(values)), run(values)
    except Exception:  # noqa: BLE001 -- any failure means its geometry is unknown
        return True
    if output.shape != shape:
        return True
    return not np.allclose(shuffled_output, shuffle(output), rtol=1e-4, atol=1e-5)


def feature_placement(
    grid: Grid | None, target: keras.layers.Layer, size: tuple[int, ...]
) -> np.ndarray:
    """`Grid.placement()` of the features, warning about layers whose geometry is unknown.

    Without a grid (the path left the image grid), the map is stretched over the whole input:
    scale 0 tells `place_maps` to stretch the map over `[lo, hi)`.
    """
    if grid is None:
        warnings.warn(
            f"keras_cam: cannot tell where the feature map of layer {target.name!r} sits on the "
            "input (its path from the input leaves the image grid); the map is stretched over "
            "the whole image. Explain a layer whose path keeps a spatial grid.",
            stacklevel=3,
        )
        return np.array([[0.0, 0.0, 0.0, extent] for extent in size], np.float32)
    if grid.unknown:
        warnings.warn(
            f"keras_cam: layer(s) {list(grid.unknown)} between the input and layer "
            f"{target.name!r} change the feature grid in a way keras_cam cannot derive; the "
            "map is stretched over the whole image from there on and may be misplaced. "
            "Explain a layer before them, or use Keras layers whose geometry is known "
            "(Cropping2D, ZeroPadding2D, CenterCrop, Resizing, UpSampling2D, convolutions, "
            "pooling).",
            stacklevel=3,
        )
    return grid.placement()
