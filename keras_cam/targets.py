"""Targets: which score each image is explained for.

Every public method takes `targets=` in one of four forms, resolved here once:

- `None`: each image's top-1 class;
- an `int`: that class for every image;
- a sequence of ints: one class per image;
- a callable `f(logits) -> (B,)`: any differentiable score of the `(B, num_classes)` logits
  (or probabilities, with `score="probability"`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np

ScoreFn = Callable[[Any], Any]
Targets = Union[None, int, Sequence[int], np.ndarray, ScoreFn]

TOP_PREDICTION = -1
"""Class index placeholder meaning "this image's top-1 class", resolved inside the graph."""


def resolve_targets(targets: Targets, batch_size: int, num_classes: int) -> np.ndarray | ScoreFn:
    """Validates `targets` and returns per-image class indices, or the score callable.

    Args:
        targets: `None`, an int, a sequence of `batch_size` ints, or a callable.
        batch_size: number of images being explained.
        num_classes: number of classes of the model's head.

    Returns:
        An int32 array of shape `(batch_size,)` with `TOP_PREDICTION` (-1) where the top-1
        class is meant, or the callable itself.

    Raises:
        ValueError: a class index out of range, or a sequence of the wrong length.
        TypeError: anything else.
    """
    if targets is None:
        return np.full((batch_size,), TOP_PREDICTION, dtype=np.int32)
    if callable(targets):
        return targets
    if isinstance(targets, (numbers.Integral, np.integer)) and not isinstance(targets, bool):
        indices = np.full((batch_size,), int(targets), dtype=np.int64)
    elif isinstance(targets, (Sequence, np.ndarray)) and not isinstance(targets, str):
        indices = np.asarray(targets)
        if indices.ndim != 1 or indices.shape[0] != batch_size:
            raise ValueError(
                f"`targets` must give one class per image: {batch_size} images were passed, but "
                f"`targets` has shape {indices.shape}. Pass a single int to use one class for all."
            )
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(
                f"`targets` must contain integer class indices; received dtype {indices.dtype}."
            )
    else:
        raise TypeError(
            "`targets` must be None (top-1 class), an int, a sequence of ints (one per image) or "
            f"a callable f(logits) -> (batch,); received {type(targets).__name__}."
        )
    bad = (indices < 0) | (indices >= num_classes)
    if bad.any():
        raise ValueError(
            f"`targets` has class index {int(indices[bad][0])}, out of range for a model with "
            f"{num_classes} classes (valid: 0 to {num_classes - 1})."
        )
    return indices.astype(np.int32)
