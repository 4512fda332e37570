"""Targets: what each image is explained for, and how its score is read from model outputs.

This module is the target vocabulary shared by every method and metric. `targets=` takes:

- `None`: each image's top-1 class;
- an `int`: that class for every image;
- a sequence of ints: one class per image;
- a callable `f(outputs) -> (B,)`: any differentiable score of the `(B, num_classes)` logits
  (or probabilities, with `score="probability"`; Score-CAM and the metrics read probabilities);
- a target object, or a list of them (one per image):
  - `ClassTarget`, `TopPredictionTarget`, `BinaryTarget`: a class of a classifier;
  - `MultiLabelTarget(k)`: one sigmoid unit of a multi-label head (its pre-sigmoid logit);
  - `RegressionTarget(index, direction)`: raise or lower a raw scalar output;
  - `SegmentationTarget(category, mask)`: a class's score summed over a region of a
    `(B, H, W, K)` output;
  - `SimilarityTarget(reference)`: cosine similarity of an output embedding to a reference;
  - a subclass of `Target` of your own.

"An int" and "a sequence of ints" are read by `class_indices`, the one coercion every
argument holding class indices goes through (`targets`, `evaluate`'s `labels`): Python and
NumPy integers, NumPy arrays of any integer dtype, lists and tuples, tensors of any Keras
backend, `tf.Variable`s and pandas Series.

`resolve_targets` turns any of these into what the methods use: per-image class indices
(`TOP_PREDICTION` where the top-1 class is meant), or one score function. The score of
each image is then read by `target_scores` (`class_scores` for class indices), the one
reading used by the gradient methods, Score-CAM and the metrics.

A new kind of output is one new `Target` subclass whose `__call__` reads its score from the
model's outputs; `scores(outputs, image_index)` reads per-image data (a reference or a mask per
image) for rows that are copies of several images, and `check_output(head, batch_size)`
refuses an output it cannot read. Score-CAM and the metrics apply targets to the scores
(probabilities, or raw outputs), the gradient methods to the logits.
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
    one class, `class_index`; for one that fits only some models, `check` or `check_output`;
    for one holding data per image, `scores`). A target object is a valid `targets=` argument
    of every method (`CAM` takes class targets only) and of the metrics, and is applied to
    every image of the batch.

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

    def check_output(self, head: Any, batch_size: int) -> None:
        """Raises a `ValueError` if this target cannot read the output `head` describes.

        Args:
            head: the `keras_cam.surgery.Head` reading of the explained output (its `kind`,
                `units` and `shape`).
            batch_size: the number of images explained.
        """

    def scores(self, outputs: Any, image_index: Any) -> Any:
        """The explained score of each row of `outputs`, row `r` belonging to image
        `image_index[r]` of the batch (Score-CAM and the metrics score several perturbed
        copies of each image in one call).

        Args:
            outputs: the model's scores `(n, ...)`, float tensor.
            image_index: int32 `(n,)`, the image of each row.

        Returns:
            float `(n,)`. Defaults to `self(outputs)`: a score read from each row alone.
        """
        return self(outputs)


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


@dataclasses.dataclass(frozen=True)
class MultiLabelTarget(ClassTarget):
    """One sigmoid unit of a multi-label classifier, explained through its pre-sigmoid logit.

    A multi-label head has independent sigmoid units (`head="sigmoid"`, or
    `"sigmoid_logits"` for a head that outputs the logits). Gradient methods differentiate
    unit `index`'s logit `z_k` (the sigmoid saturates); Score-CAM and the metrics score its
    probability `sigmoid(z_k)`. For a single sigmoid unit use `BinaryTarget`.

    Args:
        index: the unit, an int from 0 to `units - 1`.

    Raises:
        TypeError: `index` is not an integer.
        ValueError: `index` is negative; (when used) the head is not read as independent
            sigmoid units, or has no unit `index`.

    Example:
    ```python
    maps = keras_cam.GradCAM(tagger)(images, targets=MultiLabelTarget(3))
    ```
    """

    def check_output(self, head: Any, batch_size: int) -> None:
        """Raises a `ValueError` unless `head` has independent sigmoid units, `index` among them."""
        if head.kind not in ("sigmoid", "sigmoid_logits") or head.units < 2:
            raise ValueError(
                f"`MultiLabelTarget` explains one of several sigmoid units, but the explained "
                f"output is read as head={head.kind!r} with {head.units} unit(s) "
                f"({head.description}). Use `BinaryTarget()` for a single sigmoid unit, "
                "`ClassTarget` for a softmax, or state `head='sigmoid'` / `'sigmoid_logits'`."
            )


@dataclasses.dataclass(frozen=True)
class RegressionTarget(Target):
    """A scalar output to raise or to lower: explains `+y` or `-y`.

    For a regression head (one raw unit, or several with `head="linear"`): `"raise"` explains
    what increases output `index`, `"lower"` what decreases it (the map of `-y`, as
    pytorch-grad-cam's regression targets and tf-keras-vis' `InactiveScore` do). Score-CAM
    scores the masked inputs with the same signed output.

    Args:
        index: the output unit, an int >= 0. Defaults to `0`.
        direction: `"raise"` or `"lower"`. Defaults to `"raise"`.

    Raises:
        ValueError: a bad `index` or `direction`; (when used) a head not read as raw scores
            (the message names `head="linear"`) or without unit `index`.

    Example:
    ```python
    maps = keras_cam.GradCAM(age_model)(images, targets=RegressionTarget(direction="lower"))
    ```
    """

    index: int = 0
    direction: str = "raise"

    def __post_init__(self) -> None:
        index = class_indices(self.index, "index", "an int")
        if index.ndim != 0 or index < 0:
            raise ValueError(f"`index` must be one output unit >= 0; received {self.index!r}.")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"`direction` must be one of {DIRECTIONS}; received {self.direction!r}."
            )
        object.__setattr__(self, "index", int(index))

    def __call__(self, outputs: Any) -> tf.Tensor:
        """`outputs[:, index]`, negated for `"lower"`: `(B,)`."""
        value = tf.cast(outputs[:, self.index], tf.float32)
        return value if self.direction == "raise" else -value

    def check_output(self, head: Any, batch_size: int) -> None:
        """Raises a `ValueError` unless `head` is read as raw scores with unit `index`."""
        _check_raw_head("RegressionTarget", head)
        if self.index >= head.units:
            raise ValueError(
                f"`RegressionTarget(index={self.index})` reads output unit {self.index}, but "
                f"the explained output has {head.units} unit(s)."
            )


@dataclasses.dataclass(frozen=True, eq=False)
class SegmentationTarget(Target):
    """A class's score summed over a region of a segmentation output `(B, H, W, K)`.

    `S = sum_ij mask_ij * y_ij^c` (pytorch-grad-cam's `SemanticSegmentationTarget`): the
    per-pixel logit of class `c` for gradient methods (its probability with
    `score="probability"`), its probability for Score-CAM and the metrics.

    Args:
        category: the class `c`, an int from 0 to `K - 1` (pytorch-grad-cam's name; a
            target's `class_index` means a class of a classifier's head).
        mask: the region, `(H, W)` for every image or `(B, H, W)` one per image, bool or
            float weights, at the output's resolution.

    Raises:
        TypeError / ValueError: a bad `category` or `mask`; (when used) an output that is
            not `(B, H, W, K)`, or a mask whose shape does not match it.

    Example:
    ```python
    region = np.zeros((64, 64), bool); region[10:30, 20:40] = True
    maps = keras_cam.GradCAM(unet)(images, targets=SegmentationTarget(1, region))
    ```
    """

    category: int
    mask: Any

    def __post_init__(self) -> None:
        index = class_indices(self.category, "category", "an int")
        if index.ndim != 0 or index < 0:
            raise ValueError(
                f"`category` must be one class >= 0; received {self.category!r}."
            )
        mask = np.asarray(self.mask)
        if mask.ndim not in (2, 3) or not (
            mask.dtype == bool or np.issubdtype(mask.dtype, np.number)
        ):
            raise ValueError(
                "`mask` must be a bool or numeric region (H, W), or one per image (B, H, W); "
                f"received shape {mask.shape}, dtype {mask.dtype}."
            )
        object.__setattr__(self, "category", int(index))
        object.__setattr__(self, "mask", mask.astype(np.float32))

    def __call__(self, outputs: Any) -> tf.Tensor:
        """`sum_ij mask_ij * outputs[b, i, j, class_index]`: `(B,)`."""
        return self.scores(outputs, tf.range(tf.shape(outputs)[0]))

    def scores(self, outputs: Any, image_index: Any) -> tf.Tensor:
        """The region sum of each row, with the mask of its image: `(n,)`."""
        self._check_shape(tuple(outputs.shape), None)
        mask = tf.constant(self.mask)
        if self.mask.ndim == 3:
            mask = tf.gather(mask, image_index)
        values = tf.cast(outputs[..., self.category], tf.float32)
        return tf.reduce_sum(values * mask, axis=(1, 2))

    def check_output(self, head: Any, batch_size: int) -> None:
        """Raises a `ValueError` unless the output is `(B, H, W, K)` and the mask fits it."""
        self._check_shape((None, *head.shape), batch_size)
        if self.category >= head.units:
            raise ValueError(
                f"`SegmentationTarget` reads class {self.category}, but the output has "
                f"{head.units} classes (valid: 0 to {head.units - 1})."
            )

    def _check_shape(self, shape: tuple, batch_size: int | None) -> None:
        if len(shape) != 4:
            raise ValueError(
                f"`SegmentationTarget` reads a segmentation output (batch, height, width, "
                f"classes); the explained output has shape {shape}. Choose the segmentation "
                "output with `output=`."
            )
        region = tuple(self.mask.shape[-2:])
        if None not in shape[1:3] and region != tuple(shape[1:3]):
            raise ValueError(
                f"`SegmentationTarget`'s mask has shape {self.mask.shape}, but the output's "
                f"maps are {shape[1]}x{shape[2]} (output shape {shape}): pass a mask of shape "
                f"({shape[1]}, {shape[2]}) or ({'B'}, {shape[1]}, {shape[2]}) at the output's "
                "resolution."
            )
        if batch_size is not None and self.mask.ndim == 3 and len(self.mask) != batch_size:
            raise ValueError(
                f"`SegmentationTarget`'s mask holds {len(self.mask)} regions (shape "
                f"{self.mask.shape}), but {batch_size} images were passed: give one region per "
                "image, or one (H, W) region for all."
            )


@dataclasses.dataclass(frozen=True, eq=False)
class SimilarityTarget(Target):
    """Cosine similarity of the output embedding to a reference, for metric-learning models.

    `S = <e, r> / (||e|| ||r||)` with `e` the model's output embedding (a raw output: pass
    `head="linear"`) and `r` the reference (pytorch-grad-cam's `SimilarityToConceptTarget`).
    The map shows what makes the image look like the reference.

    Args:
        reference: the reference embedding `(D,)` for every image, or one per image `(B, D)`.

    Raises:
        ValueError: a reference that is not `(D,)` or `(B, D)`, or all zeros; (when used) an
            output not read as raw scores, or of another size than `D`.

    Example:
    ```python
    cam = keras_cam.GradCAM(embedder, head="linear")
    maps = cam(images, targets=SimilarityTarget(embedder.predict(query)[0]))
    ```
    """

    reference: Any

    def __post_init__(self) -> None:
        reference = np.asarray(self.reference, np.float32)
        if reference.ndim not in (1, 2) or not np.isfinite(reference).all():
            raise ValueError(
                "`reference` must be finite, one embedding (D,) or one per image (B, D); "
                f"received shape {reference.shape}."
            )
        if not np.linalg.norm(reference, axis=-1).all():
            raise ValueError("`reference` holds an all-zero embedding, which has no direction.")
        object.__setattr__(self, "reference", reference)

    def __call__(self, outputs: Any) -> tf.Tensor:
        """Cosine similarity of each row to the reference: `(B,)`."""
        return self.scores(outputs, tf.range(tf.shape(outputs)[0]))

    def scores(self, outputs: Any, image_index: Any) -> tf.Tensor:
        """Cosine similarity of each row to its image's reference: `(n,)`."""
        reference = tf.constant(self.reference)
        if self.reference.ndim == 2:
            reference = tf.gather(reference, image_index)
        embedding = tf.cast(outputs, tf.float32)
        dot = tf.reduce_sum(embedding * reference, axis=-1)
        norms = tf.norm(embedding, axis=-1) * tf.norm(reference, axis=-1)
        return tf.math.divide_no_nan(dot, norms)

    def check_output(self, head: Any, batch_size: int) -> None:
        """Raises a `ValueError` unless the output is a raw `(B, D)` embedding of the
        reference's size, and a `(B, D)` reference has one row per image."""
        _check_raw_head("SimilarityTarget", head)
        size = self.reference.shape[-1]
        if tuple(head.shape) != (size,):
            raise ValueError(
                f"`SimilarityTarget`'s reference has {size} dimensions, but the explained "
                f"output has shape (batch, {', '.join(map(str, head.shape))}): pass a "
                "reference embedding of the output's size."
            )
        if self.reference.ndim == 2 and len(self.reference) != batch_size:
            raise ValueError(
                f"`SimilarityTarget`'s reference holds {len(self.reference)} embeddings, but "
                f"{batch_size} images were passed: give one per image, or one (D,) for all."
            )


@dataclasses.dataclass(frozen=True, eq=False)
class TargetList(Target):
    """One target per image: row `r` is scored by the target of its image.

    `resolve_targets` builds it from a list of target objects that are not all class
    targets (a list of class targets becomes class indices).

    Args:
        targets: the target objects, one per image.
    """

    targets: tuple[Target, ...]

    def __call__(self, outputs: Any) -> tf.Tensor:
        """Row `b` scored by `targets[b]`: `(B,)`."""
        return self.scores(outputs, tf.range(tf.shape(outputs)[0]))

    def scores(self, outputs: Any, image_index: Any) -> tf.Tensor:
        """Every target scores every row; each row keeps its image's score: `(n,)`."""
        first = tf.zeros_like(image_index)  # each target stands for one image
        every = tf.stack(
            [tf.cast(t.scores(outputs, first), tf.float32) for t in self.targets], axis=1
        )
        return tf.gather(every, image_index, batch_dims=1)


def _check_raw_head(name: str, head: Any) -> None:
    """Raises unless `head` reads the output as raw scores (`head="linear"`)."""
    if head.kind != "linear":
        raise ValueError(
            f"`{name}` reads the model's raw output, but the explained output is read as "
            f"head={head.kind!r} ({head.description}), which would score "
            f"{'probabilities' if head.kind != 'logits' else 'its softmax'} in Score-CAM and "
            "the metrics. Pass `head='linear'` to the explainer (or metric) to read it as raw "
            "scores."
        )


DIRECTIONS = ("raise", "lower")
"""Values of `RegressionTarget(direction=...)`."""

Targets = Union[None, int, Sequence[int], np.ndarray, ScoreFn, Target, Sequence[Target]]

TARGET_FORMS = (
    "None (each image's top-1 class), an int, a sequence of ints (one per image), a callable "
    "f(logits) -> (batch,), a keras_cam.targets.Target object (ClassTarget, RegressionTarget, "
    "SegmentationTarget, SimilarityTarget, ...) or a list of them, one per image"
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


def resolve_targets(
    targets: Targets, batch_size: int, num_classes: int, head: Any = None
) -> np.ndarray | ScoreFn:
    """Validates `targets` and returns per-image class indices, or the score function.

    Args:
        targets: `None`, an int, a sequence of `batch_size` ints, a callable, a `Target`
            object, or a sequence of `batch_size` class targets (`ClassTarget`,
            `TopPredictionTarget`, `BinaryTarget`).
        batch_size: number of images being explained.
        num_classes: number of classes of the model's head.
        head: the `keras_cam.surgery.Head` reading of the explained output, or `None`. When
            given, target objects check that they can read it (`Target.check_output`), and
            class targets are refused on an output with one score per position (e.g. a
            segmentation output `(B, H, W, K)`). Defaults to `None`.

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
    if isinstance(targets, Target):
        targets.check(num_classes)
        if head is not None:
            targets.check_output(head, batch_size)
        if targets.class_index is None:
            return targets
        _check_one_score_per_image(head)
        return np.full((batch_size,), targets.class_index, dtype=np.int32)
    if callable(targets):
        return targets
    if isinstance(targets, (list, tuple)) and any(isinstance(t, Target) for t in targets):
        return _per_image_targets(targets, batch_size, num_classes, head)
    _check_one_score_per_image(head)
    if targets is None:
        return np.full((batch_size,), TOP_PREDICTION, dtype=np.int32)
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
    targets: Sequence[Any], batch_size: int, num_classes: int, head: Any
) -> np.ndarray | TargetList:
    """Class indices of a sequence of class targets, one per image; a `TargetList` of any
    other target objects."""
    for target in targets:
        if not isinstance(target, Target):
            raise TypeError(
                "A sequence of targets must hold one target object (`ClassTarget`, "
                "`RegressionTarget`, ...) per image; received "
                f"{type(target).__name__}. For one class per image, pass the indices."
            )
        target.check(num_classes)
        if head is not None:
            target.check_output(head, 1)
    if len(targets) != batch_size:
        raise ValueError(
            f"`targets` must give one target per image: {batch_size} images were passed, but "
            f"`targets` holds {len(targets)} targets. Pass a single target to use it for all."
        )
    if any(target.class_index is None for target in targets):
        return TargetList(tuple(targets))
    _check_one_score_per_image(head)
    return np.array([target.class_index for target in targets], dtype=np.int32)


def _check_one_score_per_image(head: Any) -> None:
    """Refuses class indices for an output with one score per position, e.g. `(B, H, W, K)`."""
    if head is not None and len(head.shape) > 1:
        raise ValueError(
            f"The explained output has shape (batch, {', '.join(map(str, head.shape))}): one "
            "score per position, so a class index (or `targets=None`) does not say which score "
            "to explain. Pass a target that reads one score per image, e.g. "
            "`keras_cam.targets.SegmentationTarget(category, mask)` for a segmentation output."
        )


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


def target_scores(
    outputs: Any, classes: Any, score_fn: ScoreFn | None = None, image_index: Any = None
) -> tf.Tensor:
    """The explained score of each image, as `resolve_targets` resolved the targets.

    Args:
        outputs: the model's scores `(B, num_classes)` (logits or probabilities).
        classes: int `(B,)` class indices (`TOP_PREDICTION` for the top-1 class); ignored
            when `score_fn` is given.
        score_fn: the score function `resolve_targets` returned, or `None` for class indices.
            Defaults to `None`.

        image_index: int32 `(B,)`, the image of the batch each row belongs to, for target
            objects whose score depends on the image (`Target.scores`); `None` for rows that
            are the images in order. Defaults to `None`.

    Returns:
        `(B,)`: `class_scores(outputs, classes)`, or `score_fn`'s scores as float32.
    """
    if score_fn is None:
        return class_scores(outputs, classes)
    if isinstance(score_fn, Target):
        if image_index is None:
            image_index = tf.range(tf.shape(outputs)[0])
        scores = score_fn.scores(outputs, image_index)
    else:
        scores = score_fn(outputs)
    return tf.reshape(tf.cast(scores, tf.float32), [-1])
