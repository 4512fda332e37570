"""Vision-transformer tokens: where a layer puts the extra (class, register) tokens it adds to
the patch tokens, and the check of the user's `token_grid=`."""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np


def token_order(layer: keras.layers.Layer, arguments: tuple[Any, Any], patches: Any) -> str:
    """Where `layer`, called on the patch tokens `patches` (`(batch, h * w, D)`), puts the
    extra tokens it adds: `"leading"`, `"trailing"` or `"unknown"`.

    The layer is called once on random values (batch 1) in place of its symbolic inputs: the
    patch tokens come out unchanged at the end (the extra tokens lead, a ViT's class token)
    or at the start (they trail).

    Args:
        layer: the layer whose output has more tokens than `patches`.
        arguments: the `(args, kwargs)` of its call, with symbolic tensors.
        patches: the symbolic patch tokens among them.

    Returns:
        `"leading"`, `"trailing"` or `"unknown"`.
    """
    rng = np.random.default_rng(0)
    probe: dict[int, np.ndarray] = {}

    def concrete(value: Any) -> Any:
        if not isinstance(value, keras.KerasTensor):
            return value
        shape = tuple(1 if size is None else size for size in value.shape)
        probe[id(value)] = rng.normal(size=shape).astype(value.dtype or "float32")
        return probe[id(value)]

    args, kwargs = keras.tree.map_structure(concrete, arguments)
    try:
        output = np.asarray(layer(*args, **kwargs))
    except Exception:  # noqa: BLE001 - a layer that cannot be probed: say so, do not guess
        return "unknown"
    values, cells = probe[id(patches)], patches.shape[1]
    if output.ndim != 3 or output.shape[-1] != values.shape[-1]:
        return "unknown"
    close = functools.partial(np.allclose, rtol=1e-2, atol=1e-2)  # float16 models too
    if close(output[:, -cells:], values):
        return "leading"
    if close(output[:, :cells], values):
        return "trailing"
    return "unknown"


def check_token_grid(token_grid: Any) -> tuple[int, int] | None:
    """`token_grid` as a pair of positive ints, or `None`; raises a `ValueError` otherwise."""
    if token_grid is None:
        return None
    try:
        height, width = token_grid
        valid = all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            for v in (height, width)
        )
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "`token_grid` must be None (read from the patch embedding) or a pair of positive "
            f"ints (h, w), the patch grid of the tokens; received {token_grid!r}."
        )
    return int(height), int(width)
