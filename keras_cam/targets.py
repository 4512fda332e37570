"""Targets: which score each image is explained for.

Every public method takes `targets=` in one of four forms, resolved here once:

- `None`: each image's top-1 class;
- an `int`: that class for every image;
- a sequence of ints: one class per image;
- a callable `f(logits) -> (B,)`: any differentiable score of the `(B, num_classes)` logits
  (or probabilities, with `score="probability"`).

"An int" and "a sequence of ints" are read by `class_indices`, the one coercion every
argument holding class indices goes through (`targets`, `evaluate`'s `labels`): Python and
NumPy integers, NumPy arrays of any integer dtype, lists and tuples, tensors of any Keras
backend, `tf.Variable`s and pandas Series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import keras
import numpy as np

ScoreFn = Callable[[Any], Any]
Targets = Union[None, int, Sequence[int], np.ndarray, ScoreFn]

TOP_PREDICTION = -1
"""Class index placeholder meaning "this image's top-1 class", resolved inside the graph."""

TARGET_FORMS = (
    "None (each image's top-1 class), an int, a sequence of ints (one per image) or a callable "
    "f(logits) -> (batch,)"
)
"""What `targets=` accepts, as error messages say it."""


def class_indices(
    value: Any, name: str = "targets", accepted: str = "an int or a sequence of ints"
) -> np.ndarray:
    """Reads one class index, or one per image, from any integer array-like.

    Args:
        value: a Python or NumPy integer, a 0-d or 1-d array-like of integers: a list or
            tuple, a NumPy array of any integer dtype, a tensor of any Keras backend (e.g. a
            `tf.Tensor` from a `tf.data` batch), a `tf.Variable` or a pandas Series. A column
            `(B, 1)` (e.g. CIFAR-10 labels) is read as `(B,)`.
        name: the argument's name, for error messages. Defaults to `"targets"`.
        accepted: what the argument accepts, for error messages. Defaults to
            `"an int or a sequence of ints"`.

    Returns:
        int64 NumPy array: 0-d for a single index, `(B,)` for one index per image. The range
        of the indices is not checked here (see `resolve_targets`).

    Raises:
        TypeError: booleans, strings, floats (even integral ones like `1.0`), symbolic
            tensors, or anything that is not an integer array-like.
        ValueError: more than one dimension, e.g. one-hot labels `(B, K)`.

    Example:
    ```python
    images, labels = next(iter(dataset))     # labels: tf.Tensor, int64, shape (B,)
    class_indices(labels)                     # array([3, 0, ...])
    class_indices(np.uint8(2))                # array(2)
    ```
    """
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(
            f"`{name}` must be {accepted}; received {value!r} ({type(value).__name__})."
        )
    if isinstance(value, keras.KerasTensor):
        raise TypeError(
            f"`{name}` is a symbolic KerasTensor, which holds no values; pass concrete class "
            "indices (a NumPy array, a list or an eager tensor)."
        )
    try:
        if keras.ops.is_tensor(value):
            array = keras.ops.convert_to_numpy(value)
        else:
            array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"`{name}` must be {accepted}; received {type(value).__name__}, which cannot be "
            "read as an array."
        ) from error
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim > 1:
        raise ValueError(
            f"`{name}` must be one class index per image, shape (B,); received shape "
            f"{array.shape}. For one-hot or probability labels (B, K), pass "
            "`np.argmax(labels, axis=-1)`."
        )
    if array.dtype == object:
        raise TypeError(
            f"`{name}` must be {accepted}; received {type(value).__name__} of non-numeric values."
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        kind = "booleans" if array.dtype == bool else f"dtype {array.dtype}"
        raise TypeError(
            f"`{name}` must hold integer class indices; received {kind}. Cast class indices "
            f"stored as floats with `.astype(int)` (NumPy) or `tf.cast(..., tf.int32)`."
        )
    return array.astype(np.int64)


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
    indices = class_indices(targets, "targets", TARGET_FORMS)
    if indices.ndim == 0:
        indices = np.full((batch_size,), indices, dtype=np.int64)
    elif indices.shape[0] != batch_size:
        raise ValueError(
            f"`targets` must give one class per image: {batch_size} images were passed, but "
            f"`targets` has shape {indices.shape}. Pass a single int to use one class for all."
        )
    bad = (indices < 0) | (indices >= num_classes)
    if bad.any():
        raise ValueError(
            f"`targets` has class index {int(indices[bad][0])}, out of range for a model with "
            f"{num_classes} classes (valid: 0 to {num_classes - 1})."
        )
    return indices.astype(np.int32)
