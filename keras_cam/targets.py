"""Targets: what each image is explained for, and how its score is read from model outputs.

This module is the target vocabulary shared by every method and metric. `targets=` takes:

- `None`: each image's top-1 class;
- an `int`: that class for every image;
- a sequence of ints: one class per image;
- a callable `f(outputs) -> (B,)`: any differentiable score of the `(B, num_classes)` logits
  (or probabilities, with `score="probability"`; Score-CAM and the metrics read probabilities);
- a target object (`ClassTarget`, `TopPredictionTarget`, `BinaryTarget`, or a subclass of
  `Target` of your own), or a list of class target objects, one per image.

"An int" and "a sequence of ints" are read by `class_indices`, the one coercion every
argument holding class indices goes through (`targets`, `evaluate`'s `labels`): Python and
NumPy integers, NumPy arrays of any integer dtype, lists and tuples, tensors of any Keras
backend, `tf.Variable`s and pandas Series.

`resolve_targets` turns any of these into what the methods use: per-image class indices
(`TOP_PREDICTION` where the top-1 class is meant), or one score function. The score of
each image is then read by `target_scores` (`class_scores` for class indices), the one
reading used by the gradient methods, Score-CAM and the metrics.

A new kind of output (e.g. a segmentation map, an embedding) is one new `Target` subclass
whose `__call__` reads its score from the model's outputs (plus the case in
`keras_cam.surgery` that lets such a model through).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Union

import keras
import numpy as np
import tensorflow as tf

ScoreFn = Callable[[Any], Any]

TOP_PREDICTION = -1
"""Class index placeholder meaning "this image's top-1 class", resolved inside the graph."""


class Target(abc.ABC):
    """What to explain: reads one score per image from the model's outputs.

    Subclass it for a new kind of score: define `__call__` (and, for a target that stands for
    one class, `class_index`; for one that fits only some models, `check`). A target object is
    a valid `targets=` argument of every method (`CAM` and the metrics take class targets
    only) and is applied to every image of the batch.

    Example:
    ```python
    class MarginTarget(keras_cam.targets.Target):
        \"\"\"Score of class `a` minus that of class `b`.\"\"\"

        def __init__(self, a, b):
            self.a, self.b = a, b

        def __call__(self, outputs):
            return outputs[:, self.a] - outputs[:, self.b]

    maps = keras_cam.GradCAM(model)(images, targets=MarginTarget(3, 5))
    ```
    """

    class_index: ClassVar[int | None] = None
    """The class this target stands for (`TOP_PREDICTION` for each image's top-1 class), or
    `None` for a target whose score is read only by calling it."""

    @abc.abstractmethod
    def __call__(self, outputs: Any) -> Any:
        """Reads the explained score of each image.

        Args:
            outputs: the model's scores `(B, num_classes)`: logits or probabilities (see
                `targets=` of the method or metric), float tensor.

        Returns:
            float `(B,)`, differentiable with respect to `outputs`.
        """

    def check(self, num_classes: int) -> None:
        """Raises a `ValueError` if this target does not fit a model with `num_classes` classes.

        Args:
            num_classes: the number of classes of the model's head.
        """


@dataclasses.dataclass(frozen=True)
class ClassTarget(Target):
    """The score of one class, for every image (pytorch-grad-cam's `ClassifierOutputTarget`).

    `targets=ClassTarget(c)` is the same as `targets=c`.

    Args:
        index: the class, an int from 0 to `num_classes - 1`.

    Raises:
        TypeError: `index` is not an integer.
        ValueError: `index` is negative, or (when used) out of range for the model.

    Example:
    ```python
    maps = keras_cam.GradCAM(model)(images, targets=ClassTarget(281))   # "tabby cat"
    ```
    """

    index: int

    def __post_init__(self) -> None:
        index = class_indices(self.index, "index", "an int")
        if index.ndim != 0 or index < 0:
            raise ValueError(
                f"`ClassTarget` takes one class index >= 0; received {self.index!r}. For one "
                "class per image, pass a list of `ClassTarget`s or the indices themselves."
            )
        object.__setattr__(self, "index", int(index))

    @property
    def class_index(self) -> int:  # type: ignore[override]
        """The class explained: `index`."""
        return self.index

    def __call__(self, outputs: Any) -> tf.Tensor:
        """`outputs[:, index]`, `(B,)`."""
        return class_scores(outputs, tf.fill(tf.shape(outputs)[:1], self.index))

    def check(self, num_classes: int) -> None:
        """Raises a `ValueError` if `index` is not a class of the model."""
        _check_range(np.array([self.index]), num_classes)


@dataclasses.dataclass(frozen=True)
class TopPredictionTarget(Target):
    """The score of each image's top-1 class: the default, `targets=None`.

    Example:
    ```python
    maps = keras_cam.GradCAM(model)(images, targets=TopPredictionTarget())
    ```
    """

    class_index: ClassVar[int] = TOP_PREDICTION

    def __call__(self, outputs: Any) -> tf.Tensor:
        """`outputs[b, argmax(outputs[b])]` for each image `b`, `(B,)`."""
        return class_scores(outputs, tf.fill(tf.shape(outputs)[:1], TOP_PREDICTION))


@dataclasses.dataclass(frozen=True)
class BinaryTarget(ClassTarget):
    """The positive (or negative) class of a binary classifier (a single sigmoid or logit unit).

    keras_cam reads a single-unit binary head as two classes: class 1 is the positive class
    (logit `z`, probability `p`), class 0 its complement (logit `-z`, probability `1 - p`).
    `BinaryTarget()` is class 1, `BinaryTarget(positive=False)` class 0.

    Args:
        positive: explain the positive class (`True`) or its complement. Defaults to `True`.

    Raises:
        ValueError: (when used) the model is not a binary classifier.

    Example:
    ```python
    maps = keras_cam.GradCAM(binary_model)(images, targets=BinaryTarget())
    ```
    """

    index: int = dataclasses.field(init=False)
    positive: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.positive, (bool, np.bool_)):
            raise TypeError(
                f"`positive` must be True or False; received {self.positive!r}."
            )
        object.__setattr__(self, "index", int(bool(self.positive)))

    def check(self, num_classes: int) -> None:
        """Raises a `ValueError` unless the model is a binary classifier (2 classes)."""
        if num_classes != 2:
            raise ValueError(
                f"`BinaryTarget` explains a binary classifier, but the model has {num_classes} "
                "class(es). Use `ClassTarget(index)` to explain one class of a multi-class "
                "model."
            )


Targets = Union[None, int, Sequence[int], np.ndarray, ScoreFn, Target, Sequence[Target]]

TARGET_FORMS = (
    "None (each image's top-1 class), an int, a sequence of ints (one per image), a callable "
    "f(logits) -> (batch,), a keras_cam.targets.Target object or a list of class targets "
    "(ClassTarget, TopPredictionTarget, BinaryTarget), one per image"
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
    """Validates `targets` and returns per-image class indices, or the score function.

    Args:
        targets: `None`, an int, a sequence of `batch_size` ints, a callable, a `Target`
            object, or a sequence of `batch_size` class targets (`ClassTarget`,
            `TopPredictionTarget`, `BinaryTarget`).
        batch_size: number of images being explained.
        num_classes: number of classes of the model's head.

    Returns:
        An int32 array of shape `(batch_size,)` with `TOP_PREDICTION` (-1) where the top-1
        class is meant (for `None`, ints and class targets), or the score function (a
        callable, or a target object that stands for no single class).

    Raises:
        ValueError: a class index out of range, a sequence of the wrong length, or a target
            that does not fit the model.
        TypeError: anything else.

    Example:
    ```python
    resolve_targets([ClassTarget(2), TopPredictionTarget()], 2, 10)   # array([ 2, -1])
    ```
    """
    if targets is None:
        return np.full((batch_size,), TOP_PREDICTION, dtype=np.int32)
    if isinstance(targets, Target):
        targets.check(num_classes)
        if targets.class_index is None:
            return targets
        return np.full((batch_size,), targets.class_index, dtype=np.int32)
    if callable(targets):
        return targets
    if isinstance(targets, (list, tuple)) and any(isinstance(t, Target) for t in targets):
        return _per_image_targets(targets, batch_size, num_classes)
    indices = class_indices(targets, "targets", TARGET_FORMS)
    if indices.ndim == 0:
        indices = np.full((batch_size,), indices, dtype=np.int64)
    elif indices.shape[0] != batch_size:
        raise ValueError(
            f"`targets` must give one class per image: {batch_size} images were passed, but "
            f"`targets` has shape {indices.shape}. Pass a single int to use one class for all."
        )
    _check_range(indices, num_classes)
    return indices.astype(np.int32)


def _per_image_targets(
    targets: Sequence[Any], batch_size: int, num_classes: int
) -> np.ndarray:
    """Class indices of a sequence of class target objects, one per image."""
    for target in targets:
        if not isinstance(target, Target) or target.class_index is None:
            raise TypeError(
                "A sequence of target objects must hold one class target (`ClassTarget`, "
                "`TopPredictionTarget`, `BinaryTarget`) per image; received "
                f"{type(target).__name__}. For any other score, pass one target object: it "
                "is applied to every image."
            )
        target.check(num_classes)
    if len(targets) != batch_size:
        raise ValueError(
            f"`targets` must give one class per image: {batch_size} images were passed, but "
            f"`targets` holds {len(targets)} targets. Pass a single target to use it for all."
        )
    return np.array([target.class_index for target in targets], dtype=np.int32)


def _check_range(indices: np.ndarray, num_classes: int) -> None:
    """Raises a `ValueError` naming the first index outside `[0, num_classes)`."""
    bad = (indices < 0) | (indices >= num_classes)
    if bad.any():
        raise ValueError(
            f"`targets` has class index {int(indices[bad][0])}, out of range for a model with "
            f"{num_classes} classes (valid: 0 to {num_classes - 1})."
        )


# ------------------------------------------------------------------ reading the score
def top_class(outputs: Any) -> tf.Tensor:
    """Each image's top-1 class: int32 `(B,)`, the argmax of `outputs` `(B, num_classes)`."""
    return tf.argmax(outputs, axis=-1, output_type=tf.int32)


def explained_classes(classes: Any, outputs: Any) -> tf.Tensor:
    """The class explained for each image: `classes`, with `TOP_PREDICTION` read from `outputs`.

    Args:
        classes: int `(B,)` class indices, `TOP_PREDICTION` (-1) where the top-1 class is meant.
        outputs: the model's scores `(B, num_classes)` (logits or probabilities).

    Returns:
        int32 `(B,)` class indices in `[0, num_classes)`.

    Example:
    ```python
    explained_classes([-1, 0], [[0.1, 0.9], [0.8, 0.2]])   # [1, 0]
    ```
    """
    classes = tf.cast(classes, tf.int32)
    return tf.where(classes == TOP_PREDICTION, top_class(outputs), classes)


def class_scores(outputs: Any, classes: Any) -> tf.Tensor:
    """The score of each image's class: `outputs[b, classes[b]]`, `(B,)`.

    Args:
        outputs: the model's scores `(B, num_classes)` (logits or probabilities).
        classes: int `(B,)` class indices, `TOP_PREDICTION` (-1) where the top-1 class is meant.

    Returns:
        `(B,)`, of the dtype of `outputs`.

    Example:
    ```python
    class_scores([[1.0, 2.0], [3.0, 4.0]], [1, -1])   # [2., 4.]
    ```
    """
    return tf.gather(outputs, explained_classes(classes, outputs), batch_dims=1)


def target_scores(outputs: Any, classes: Any, score_fn: ScoreFn | None = None) -> tf.Tensor:
    """The explained score of each image, as `resolve_targets` resolved the targets.

    Args:
        outputs: the model's scores `(B, num_classes)` (logits or probabilities).
        classes: int `(B,)` class indices (`TOP_PREDICTION` for the top-1 class); ignored
            when `score_fn` is given.
        score_fn: the score function `resolve_targets` returned, or `None` for class indices.
            Defaults to `None`.

    Returns:
        `(B,)`: `class_scores(outputs, classes)`, or `score_fn(outputs)` as float32.
    """
    if score_fn is None:
        return class_scores(outputs, classes)
    return tf.reshape(tf.cast(score_fn(outputs), tf.float32), [-1])
