"""Faithfulness and localization metrics for class activation maps.

Two families, measured the same way for every method:

- **Faithfulness** (needs the model): does the map point at what the model actually uses?
  `average_drop` and `increase_in_confidence` (the map as a soft mask), `remove_top_fraction`
  and `keep_top_fraction` (perturb the most relevant pixels), `deletion` and `insertion`
  (RISE curves and their area under the curve).
- **Localization** (needs ground-truth boxes, no model): `box_iou` and `pointing_game`.

Every metric returns a `MetricResult`: the per-image values, their `mean`, and the curves
where there are any. `METRICS` maps each metric's name to its function; the functions named
in `BOX_METRICS` take `(maps, boxes)`, all the others `(model, images, maps, targets)`.

Conventions shared by all metrics:

- `images` is a batch `(B, H, W, C)` preprocessed the way the model expects; `maps` is
  `(B, H, W)` at the image resolution, as the CAM methods return them. Signals `(B, T, C)`
  with maps `(B, T)` and volumes `(B, D, H, W, C)` with maps `(B, D, H, W)` (channels-first
  too) are measured the same way: "pixels" are then samples or voxels, ranked in raster order,
  the `"blur"` baseline blurs along every spatial axis with the same 11-tap Gaussian (sigma
  5, reflected borders), and the localization metrics take intervals `(x0, x1)` and boxes
  `(x0, y0, z0, x1, y1, z1)`: lows, then exclusive highs, `x` along the last map axis, so
  `signal[x0:x1]` and `volume[z0:z1, y0:y1, x0:x1]` are the object. The connected regions of
  `boxes_from_maps` are 8-connected in images and connected through any face, edge or
  corner in volumes.
- The scale of the maps: `average_drop` and `increase_in_confidence` multiply the image by
  the map, so they need maps on the [0, 1] scale, read by the rule the drawing functions use
  (`keras_cam.visualize.to_unit_heatmap`: floats in [0, 1] up to 1e-3, `uint8` as 0..255,
  bool as 0/1; anything else is refused). Every other metric uses only the order of the
  pixels and accepts any finite maps (raw scores, any scale or sign).
- A score is the target class's probability, read from the model's outputs the way the
  explainers read them (`keras_cam.surgery.read_head`): a softmax or sigmoid output is a
  probability, logits go through their softmax, a single raw (linear) unit is scored by its
  value. A target object (`keras_cam.targets`: a regression, segmentation or similarity
  target, ...) or a callable is read from these scores: the metric then measures the
  target's score. `head=` states the reading (`activation="softmax"` / `"sigmoid"` is the older
  spelling of `head="logits"` / `"sigmoid_logits"`); the outputs of a callable that is not
  a Functional or Sequential model are taken as probabilities. A binary single-unit output
  is the probability of class 1, and class 0 gets one minus it.
- Raw scores: the metrics in `PROBABILITY_METRICS` compare the target's probability with
  itself (a percentage drop, a relative change), which a raw score's arbitrary zero and sign
  make meaningless, so they refuse a raw-score (`"linear"`) head. `deletion` and `insertion`
  are defined on raw scores: their curves are then raw scores and their area is the mean
  raw score along the path, in the model's units (`unit="score"`).
- Pixels are ranked by decreasing map value; ties (a constant or all-zero map included) are
  broken in raster order (row by row, top-left first), so rankings are deterministic.
- The masked copies of a batch go through one compiled model call (`tf.function` with a
  `(None, H, W, C)` input signature) in chunks of `batch_size` images; the chunk size never
  changes a result, and the inputs are never modified.
- A model with an integer (or bool) input, e.g. uint8 pixels followed by `Rescaling`, takes
  images of integers in its dtype's range (anything else is refused); its masked copies are
  rounded to the nearest such image.
- Units follow the papers: `average_drop` and `increase_in_confidence` are percentages
  (0-100); IoU, pointing game and AUCs are fractions in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
import weakref
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Optional

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from keras_cam._checks import (
    check_boxes,
    check_choice,
    check_fraction,
    check_images,
    check_maps,
    check_positive_int,
)
from keras_cam.geometry import spatial_axes
from keras_cam.imputation import check_noise, linear_imputation
from keras_cam import registry
from keras_cam.methods.base import check_other_input, compile_fn
from keras_cam.surgery import (
    Head,
    check_head,
    check_input_values,
    data_format,
    input_dtype,
    input_rank,
    is_graph_model,
    is_readable,
    read_head,
    select_input,
    select_output,
)
from keras_cam.targets import (
    TOP_PREDICTION,
    ScoreFn,
    Targets,
    explained_classes,
    resolve_targets,
    target_scores,
)

Activation = Optional[Literal["softmax", "sigmoid"]]
Baseline = Literal["zero", "mean", "blur"]

BASELINES: tuple[str, ...] = ("zero", "mean", "blur")
"""Values pixels can be replaced by: 0, the image's per-channel mean, or a Gaussian blur."""

_ACTIVATIONS = (None, "softmax", "sigmoid")
_RANKS = (3, 4, 5)  # signals (B, T, C), images, volumes (B, D, H, W, C)
_MAP_RANKS = (2, 3, 4)
# RISE's blur: an 11x11 Gaussian kernel with sigma 5 (Petsiuk et al., 2018, reference code).
_BLUR_KERNEL = (11, 11)
_BLUR_SIGMA = 5.0
# Slack for probabilities computed in float16/float32 before they count as out of [0, 1].
_PROBABILITY_SLACK = 1e-3


@dataclasses.dataclass(frozen=True, eq=False)
class MetricResult:
    """The values of one metric on a batch of maps.

    Attributes:
        name: the metric's name, a key of `METRICS`.
        per_image: float64 `(B,)`, the metric's value for each image.
        unit: `"percent"` (0-100), `"fraction"` ([0, 1]), `"ratio"` (a relative change,
            `(O - Y) / Y`, at least -1) or `"score"` (the model's raw output units, any
            value: `deletion` and `insertion` on a raw-score head) or `"correlation"` (a rank
            correlation in [-1, 1]: `keras_cam.sanity.randomisation`).
        higher_is_better: whether a larger value means a more faithful or better localized map.
        curve: float64 `(B, steps + 1)` scores along the deletion or insertion path, or `None`.
        curve_x: float64 `(steps + 1,)` fraction of the pixels removed or inserted at each
            point of `curve`, from 0 to 1, or `None`.
    """

    name: str
    per_image: np.ndarray
    unit: Literal["percent", "fraction", "ratio", "score", "correlation"]
    higher_is_better: bool
    curve: np.ndarray | None = None
    curve_x: np.ndarray | None = None

    @property
    def mean(self) -> float:
        """The metric over the batch: the mean of `per_image`."""
        return float(np.mean(self.per_image))


# ------------------------------------------------------------------------------ pixel order
def _pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """Rank of each pixel, `(B, H, W)` int: 0 for the largest map value, ties in raster order."""
    flat = maps.reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[np.newaxis], axis=1)
    return ranks.reshape(maps.shape)


def channels_first(model: object) -> bool:
    """Whether `model` takes channels-first images `(B, C, H, W)` (see `surgery.data_format`).

    Args:
        model: a Keras model, or any callable (taken as channels-last).

    Returns:
        `True` for a channels-first Keras model.
    """
    return isinstance(model, keras.Model) and data_format(model) == "channels_first"


def map_shape(model: object, images_shape: tuple[int, ...]) -> tuple[int, ...]:
    """`(B, H, W)`: the shape of the maps of a batch of `images_shape` for `model`
    (`(B, T)` for signals, `(B, D, H, W)` for volumes).

    Args:
        model: the explained model (channels-first Keras models take `(B, C, H, W)` images).
        images_shape: the batch's shape.

    Returns:
        The batch size and the images' height and width.

    Example:
    ```python
    map_shape(model, (8, 3, 32, 48))   # (8, 32, 48) for a channels-first model
    ```
    """
    layout = "channels_first" if channels_first(model) else "channels_last"
    axes = spatial_axes(layout, len(images_shape))
    return (images_shape[0], *(images_shape[axis] for axis in axes))


def _top_count(fraction: float, pixels: int) -> int:
    """Number of pixels in the top `fraction`: rounded half up, at least one."""
    return max(1, math.floor(fraction * pixels + 0.5))


# ------------------------------------------------------------------------------- scoring
def _baseline_images(images: np.ndarray, baseline: str) -> np.ndarray:
    """The values that replace removed pixels, one `(H, W, C)` image per input image (one
    `(T, C)` signal, one `(D, H, W, C)` volume)."""
    if baseline == "zero":
        return np.zeros_like(images)
    if baseline == "mean":
        axes = tuple(range(1, images.ndim - 1))
        return np.broadcast_to(images.mean(axis=axes, keepdims=True), images.shape)
    if images.ndim != 4:
        return _separable_blur(images)
    import cv2

    blurred = [cv2.GaussianBlur(image, _BLUR_KERNEL, _BLUR_SIGMA) for image in images]
    return np.stack(blurred).reshape(images.shape)


@dataclasses.dataclass(frozen=True, eq=False)
class FixedInputs:
    """The inputs of a model with several that a metric holds fixed.

    Attributes:
        index: the position of the explained (masked) input among the model's inputs.
        values: the other inputs, in the model's order, one row per image.
        dtype: the explained input's dtype, or `None` for a single-input model.
    """

    index: int = 0
    values: tuple[np.ndarray, ...] = ()
    dtype: str | None = None


def _explained(
    model: object, images: object, output: int | str | None, input: int | str | None
) -> tuple[object, object, FixedInputs]:
    """The model scored for `output` (`select_output`) and, for a model with several inputs,
    the explained images and the inputs held fixed (`select_input`); any callable that is not
    a Functional or Sequential model has one input and one output."""
    if not is_graph_model(model):
        if output is not None or input is not None:
            raise ValueError(
                "`output` and `input` choose an output or input of a Functional or Sequential "
                f"model; `model` is a {type(model).__name__}, whose outputs and inputs cannot "
                "be listed. Pass a callable with one input and one output instead."
            )
        return model, images, FixedInputs()
    model = select_output(model, output)
    if len(model.inputs) == 1 and input is None:
        return model, images, FixedInputs()
    index = select_input(model, input)
    sources = list(model.inputs)
    names = [source.name for source in sources]
    if isinstance(images, dict) and set(images) == set(names):
        values = [images[name] for name in names]
    elif isinstance(images, (list, tuple)) and len(images) == len(names):
        values = list(images)
    else:
        listing = ", ".join(f"{n!r} {tuple(t.shape)}" for n, t in zip(names, sources))
        raise ValueError(
            f"Model {model.name!r} takes {len(names)} inputs ({listing}); pass `images` as all "
            "of them, a list in this order or a dict keyed by these names (the explained "
            f"input {names[index]!r} is masked, the others are held fixed)."
        )
    explained = check_images(values[index])
    others = tuple(
        check_other_input(value, source, len(explained), False).numpy()
        for i, (value, source) in enumerate(zip(values, sources)) if i != index
    )
    dtype = keras.backend.standardize_dtype(sources[index].dtype)
    return model, explained, FixedInputs(index, others, dtype)


def _separable_blur(batch: np.ndarray) -> np.ndarray:
    """RISE's blur for signals and volumes: the 11-tap Gaussian (sigma 5) that blurs images,
    along each spatial axis in turn, borders reflected as OpenCV's default (`gfedcb|abcdefgh`)."""
    taps = np.arange(_BLUR_KERNEL[0]) - _BLUR_KERNEL[0] // 2
    kernel = np.exp(-0.5 * (taps / _BLUR_SIGMA) ** 2)
    kernel /= kernel.sum()
    half = len(taps) // 2
    blurred = batch.astype(np.float64)
    for axis in range(1, batch.ndim - 1):
        pad = [(0, 0)] * batch.ndim
        pad[axis] = (half, half)
        padded = np.pad(blurred, pad, mode="reflect")
        blurred = sum(
            weight * np.take(padded, np.arange(i, i + batch.shape[axis]), axis=axis)
            for i, weight in enumerate(kernel)
        )
    return blurred.astype(batch.dtype)


# `activation=` is the older spelling of a head that outputs logits.
_ACTIVATION_HEADS = {"softmax": "logits", "sigmoid": "sigmoid_logits"}


def _head_kind(
    model: object, activation: Activation, head: str | None
) -> tuple[str | None, str]:
    """The head the metrics score with, and how it was read.

    The kind is `None` when the outputs are taken as probabilities (a callable that is not a
    Functional or Sequential model).
    """
    check_choice("activation", activation, _ACTIVATIONS)
    check_head(head)
    if activation is not None and head is not None:
        raise ValueError(
            f"Pass either `head` or its older spelling `activation`, not both; received "
            f"head={head!r} and activation={activation!r}."
        )
    if activation is not None:
        return _ACTIVATION_HEADS[activation], f"stated by activation={activation!r}"
    if head is not None:
        return head, f"stated by head={head!r}"
    if is_readable(model):
        reading = read_head(model)
        return reading.kind, reading.description
    return None, "outputs taken as probabilities"


PROBABILITY_METRICS: frozenset[str] = frozenset(
    {"average_drop", "increase_in_confidence", "remove_top_fraction", "keep_top_fraction"}
)
"""Names of the metrics defined for class probabilities only: a percentage drop, a rise or a
relative change of the target's probability. A raw score (`"linear"` head) has an arbitrary
zero and sign, so they refuse it (see `check_head_for_metric`)."""


def check_head_for_metric(metric: str, kind: str | None, reading: str) -> None:
    """Raises a `ValueError` when `metric` needs probabilities and the head gives raw scores.

    Args:
        metric: a key of `METRICS`.
        kind: the head's kind (one of `keras_cam.surgery.HEADS`), or `None` for outputs taken
            as probabilities.
        reading: how the head was read, for the message (e.g. `Head.description`).

    Raises:
        ValueError: `metric` is in `PROBABILITY_METRICS` and `kind` is `"linear"`; the message
            names the reading and what to do instead.

    Example:
    ```python
    check_head_for_metric("average_drop", "linear", "Dense 'dense' with activation linear")
    ```
    """
    if metric in PROBABILITY_METRICS and kind == "linear":
        raise ValueError(
            f"`{metric}` is defined for class probabilities (it compares the target's "
            f"probability on the masked and the original image), but the model's output is "
            f"read as raw scores (head='linear': {reading}), whose zero and sign are arbitrary. "
            "If the output really is a classifier's, state it: `head='logits'` (one unit: a "
            "binary logit) or `head='sigmoid'` / `'softmax'` (probabilities); to score raw "
            "outputs, use `deletion` or `insertion`, which are defined on raw scores."
        )


def _to_probabilities(outputs: object, kind: str | None) -> tf.Tensor:
    """Model outputs `(n, K)` -> scores `(n, num_classes)` as the head `kind` reads them.

    Probabilities for a classifier (`(n, 2)` for a binary single unit), the raw outputs for a
    `"linear"` head. `kind=None` takes the outputs as probabilities.
    """
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        outputs = outputs[0]
    if not tf.is_tensor(outputs):
        raise TypeError(
            "`model` must have a single output tensor of class scores; its call returned "
            f"{type(outputs).__name__}."
        )
    if outputs.shape.rank < 2 or outputs.shape[-1] is None:
        raise ValueError(
            f"`model` must output class scores of shape (batch, classes), or (batch, ..., "
            f"classes) per position; its output has shape {outputs.shape}."
        )
    units = int(outputs.shape[-1])
    if kind is None:
        kind = "sigmoid" if units == 1 else "softmax"
    return Head(kind, units, "as the metric was told").scores(outputs)


ProbabilityFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tf.Tensor]

# Compiled model calls per model, by (head kind, image shape): tracing a large model takes
# seconds, and `evaluate` runs every metric on the same model. Weak keys: no model is kept alive.
_COMPILED: weakref.WeakKeyDictionary[keras.Model, dict[tuple[object, ...], ProbabilityFn]] = (
    weakref.WeakKeyDictionary()
)


def _compiled_probabilities(
    model: keras.Model, kind: str | None, image_shape: tuple[int, ...], fixed: FixedInputs
) -> ProbabilityFn:
    """The compiled `(images, baselines, masks, others) -> probabilities` of the composites.

    `others` are the model's other inputs (`fixed`), passed with the composite, unchanged.

    A composite is `images * mask + baselines * (1 - mask)`, the mask broadcast over channels;
    `image_shape` is channels-last, and the composite is transposed for a channels-first model.
    For a model whose input is integer (or bool), composites are rounded to the nearest value
    of that dtype (clipped to its range), the nearest image the model can take, rather than
    truncated by the model's own cast. One compiled function per model, head kind and image
    shape, with a `(None, H, W, C)` input signature: it is traced once and then reused for
    every chunk and every metric call.
    """
    compiled = _COMPILED.setdefault(model, {})
    transpose = channels_first(model)  # images arrive channels-last; the model takes (C, H, W)
    others_spec = tuple(
        tf.TensorSpec((None, *value.shape[1:]), value.dtype) for value in fixed.values
    )
    key = (kind, tuple(image_shape), transpose, fixed.index, others_spec)
    if key not in compiled:
        model_ref = weakref.ref(model)  # the cached function must not keep the model alive
        quantize = _quantizer(fixed.dtype or input_dtype(model))
        image_spec = tf.TensorSpec((None, *image_shape), tf.float32)
        mask_spec = tf.TensorSpec((None, *image_shape[:-1]), tf.float32)
        last = len(image_shape)

        def probabilities(
            images: tf.Tensor, baselines: tf.Tensor, masks: tf.Tensor, others: tuple
        ) -> tf.Tensor:
            mask = masks[..., tf.newaxis]
            composite = quantize(images * mask + baselines * (1.0 - mask))
            if transpose:
                composite = tf.transpose(composite, (0, last, *range(1, last)))
            inputs: Any = composite
            if others:  # the model's own input structure, the composite at the explained one
                flat = [*others[: fixed.index], composite, *others[fixed.index :]]
                inputs = keras.tree.pack_sequence_as(model_ref().input, flat)
            return _to_probabilities(model_ref()(inputs, training=False), kind)

        compiled[key] = compile_fn(probabilities, [image_spec, image_spec, mask_spec, others_spec])
    return compiled[key]


def _quantizer(dtype: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Identity for float dtypes; else rounds to the nearest integer within `dtype`'s range."""
    if keras.backend.is_float_dtype(dtype):
        return lambda images: images
    low, high = (0, 1) if dtype == "bool" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    return lambda images: tf.clip_by_value(tf.round(images), float(low), float(high))


@dataclasses.dataclass(frozen=True)
class _Scored:
    """Checked inputs of a model metric, the compiled model call and the unmasked scores."""

    images: np.ndarray  # (B, H, W, C) float32
    maps: np.ndarray  # (B, H, W): float32 in [0, 1], or float64 of any scale if order_only
    targets: np.ndarray  # (B,) int class per image
    scores: np.ndarray  # (B,) float64 target probability of the unmasked image: Y
    probabilities: ProbabilityFn
    batch_size: int
    raw_scores: bool  # a "linear" head: the scores are raw outputs, not probabilities
    score_fn: ScoreFn | None = None  # a target object (or callable) read from the scores
    others: tuple[np.ndarray, ...] = ()  # the model's other inputs, one row per image

    def target_scores(
        self,
        image_index: np.ndarray,
        masks_for: Callable[[np.ndarray], np.ndarray],
        baselines: np.ndarray,
    ) -> np.ndarray:
        """Target probabilities of masked copies `image * mask + baseline * (1 - mask)`.

        Args:
            image_index: `(N,)` image of each copy.
            masks_for: items `(n,)` (positions in `image_index`) -> masks `(n, H, W)` float32.
            baselines: `(B, H, W, C)` replacement values.

        Returns:
            float64 `(N,)` probability of each copy's image's target class.
        """
        scores = np.empty(len(image_index), np.float64)
        for items, probabilities in _probability_chunks(
            self.probabilities, self.images, baselines, image_index, masks_for, self.batch_size,
            self.others,
        ):
            rows = image_index[items]
            scores[items] = target_scores(
                probabilities, self.targets[rows], self.score_fn, rows.astype(np.int32)
            ).numpy()
        return scores


def _probability_chunks(
    probabilities: ProbabilityFn,
    images: np.ndarray,
    baselines: np.ndarray,
    image_index: np.ndarray,
    masks_for: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    others: tuple[np.ndarray, ...] = (),
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields `(items, probabilities)` for chunks of at most `batch_size` masked copies; each
    copy goes with its image's rows of `others` (the model's other inputs)."""
    for start in range(0, len(image_index), batch_size):
        items = np.arange(start, min(start + batch_size, len(image_index)))
        index = image_index[items]
        rows = tuple(other[index] for other in others)
        yield items, probabilities(images[index], baselines[index], masks_for(items), rows).numpy()


def _score(
    metric: str,
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets,
    batch_size: int,
    activation: Activation,
    head: str | None,
    *,
    order_only: bool = False,
    fixed: FixedInputs | None = None,
) -> _Scored:
    """Validates a model metric's inputs, compiles the model call and scores the images.

    `metric`: the metric's name, refused on a raw-score head if it needs probabilities.
    `order_only`: the metric uses only the order of the map's pixels, so any finite maps are
    accepted (see `check_maps`); otherwise the maps are soft masks in [0, 1].
    `fixed`: the model's other inputs, held fixed (see `_explained`).
    """
    fixed = fixed or FixedInputs()
    batch_size = check_positive_int("batch_size", batch_size)
    kind, reading = _head_kind(model, activation, head)
    check_head_for_metric(metric, kind, reading)
    if not callable(model):
        raise TypeError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    rank = input_rank(model)
    images = check_images(images, ranks=_RANKS if rank is None else (rank,))
    if channels_first(model):
        images = np.ascontiguousarray(np.moveaxis(images, 1, -1))  # masks act channels-last
    maps = check_maps(maps, images.shape[:-1], order_only=order_only, ranks=(images.ndim - 1,))
    if fixed.values and len(fixed.values[0]) != len(images):
        raise ValueError(
            f"The model's other inputs have {len(fixed.values[0])} rows, but {len(images)} "
            "images were passed: give one row per image."
        )
    probabilities = _compiled_probabilities(model, kind, images.shape[1:], fixed)
    num_classes = int(probabilities.get_concrete_function().structured_outputs.shape[-1])
    dtype = fixed.dtype or input_dtype(model)
    check_input_values(images, dtype, getattr(model, "name", "model"))
    resolved = resolve_targets(targets, len(images), num_classes, _output_head(model, kind))

    batch = len(images)
    ones = np.ones((batch_size, *images.shape[1:-1]), np.float32)
    chunks = _probability_chunks(
        probabilities, images, images, np.arange(batch), lambda items: ones[: len(items)],
        batch_size, fixed.values,
    )
    unmasked = np.concatenate([chunk for _, chunk in chunks])
    if kind in (None, "softmax", "sigmoid") and (
        unmasked.min() < -_PROBABILITY_SLACK or unmasked.max() > 1.0 + _PROBABILITY_SLACK
    ):
        raise ValueError(
            f"The model's outputs lie in [{unmasked.min():g}, {unmasked.max():g}], so they are "
            "not probabilities: pass `head='logits'` (or `'sigmoid_logits'`) for a model that "
            "returns logits, or `head='linear'` for raw scores."
        )
    score_fn = resolved if callable(resolved) else None
    if score_fn is None:
        resolved = explained_classes(resolved, unmasked).numpy()
    else:
        resolved = np.full(batch, TOP_PREDICTION)
    resolved = resolved.astype(np.int64)
    scores = target_scores(unmasked, resolved, score_fn, np.arange(batch, dtype=np.int32))
    return _Scored(
        images, maps, resolved, scores.numpy().astype(np.float64), probabilities, batch_size,
        kind == "linear", score_fn, fixed.values,
    )


def _output_head(model: object, kind: str | None) -> Head | None:
    """The head reading target objects check themselves against: the kind the metric scores
    with and the model's output shape; `None` for a callable whose outputs are unknown."""
    if kind is None or not is_readable(model):
        return None
    shape = tuple(model.outputs[0].shape[1:])
    return Head(kind, int(shape[-1]), f"scored as head={kind!r}", shape=shape)


def _relative(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """`numerator / denominator`, and 0 where the denominator is 0."""
    return np.divide(
        numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0
    )


# ------------------------------------------------------------------- map as a soft mask
def _mask_scores(scored: _Scored) -> np.ndarray:
    """O: the target probability of each `image * map` (the map broadcast over channels)."""
    return scored.target_scores(
        np.arange(len(scored.images)),
        lambda items: scored.maps[items],
        np.zeros_like(scored.images),
    )


def average_drop(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    batch_size: int = 32,
    activation: Activation = None,
    head: str | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
) -> MetricResult:
    """Average Drop: how much confidence is lost when the image is masked by its map.

    With `Y` the target probability of the image and `O` that of `image * map` (the map
    broadcast over channels), each image scores `100 * max(0, Y - O) / Y`; the summary is
    the mean over images (Chattopadhyay et al., "Grad-CAM++", WACV 2018, Sec. 5.1,
    https://arxiv.org/abs/1710.11063). Lower is better: a faithful map keeps what the
    model needs. An image whose `Y` is 0 (nothing to lose) scores 0.

    Args:
        model: a Keras classifier taking `(B, H, W, C)` float images.
        images: `(B, H, W, C)` images, NumPy or tensor, preprocessed for the model.
        maps: `(B, H, W)` maps at the image resolution, used as soft masks, so on the
            [0, 1] scale: floats in [0, 1] (up to 1e-3 for rounding, then clipped), `uint8`
            levels 0..255 (divided by 255) or bool; other values are refused (see
            `keras_cam.visualize.to_unit_heatmap`).
        targets: `None` (each image's top-1 class on the unmasked image), an int (one class for
            all images), a sequence of ints (one class per image), or a target object of
            `keras_cam.targets` (or a list, one per image) read from the scores. Defaults to
            `None`.
        batch_size: images per model call. Defaults to `32`.
        activation: `"softmax"` or `"sigmoid"` to turn the model's logits into
            probabilities (the older spelling of `head="logits"` / `"sigmoid_logits"`), or
            `None` to leave the reading to `head`. Defaults to `None`.
        head: how the model's output is read (`keras_cam.surgery.read_head`): `None` reads
            a Functional or Sequential model's head as the explainers do (the outputs of any
            other callable are taken as probabilities), or one of `keras_cam.surgery.HEADS`
            states it. Defaults to `None`.
        output: the output to score of a model with several: its name or index (see
            `keras_cam.surgery.select_output`). Defaults to `None` (the only output).
        input: the explained input of a model with several (its name or index): `images` is
            then the model's input structure (a list in its order or a dict keyed by input
            name); only the explained input is masked, the others reach the model unchanged.
            Defaults to `None` (the only input).

    Returns:
        A `MetricResult` with `unit="percent"`: `per_image` in [0, 100].

    Raises:
        ValueError: the model's head is read as raw scores (`head="linear"`, e.g. a
            regression): a percentage of a raw score means nothing (see `PROBABILITY_METRICS`).

    Example:
    ```python
    cam = kc.GradCAM(model)
    result = kc.metrics.average_drop(model, images, cam(images))
    print(f"average drop {result.mean:.1f} %")
    ```
    """
    model, images, fixed = _explained(model, images, output, input)
    scored = _score(
        "average_drop", model, images, maps, targets, batch_size, activation, head, fixed=fixed
    )
    masked = _mask_scores(scored)
    drop = 100.0 * _relative(np.maximum(0.0, scored.scores - masked), scored.scores)
    return MetricResult("average_drop", drop, "percent", higher_is_better=False)


def increase_in_confidence(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    batch_size: int = 32,
    activation: Activation = None,
    head: str | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
) -> MetricResult:
    """Increase in Confidence: how often masking the image by its map raises confidence.

    With `Y` the target probability of the image and `O` that of `image * map`, each image
    scores 100 if `O > Y` and 0 otherwise; the mean is the percentage of images whose
    confidence increased (Chattopadhyay et al., "Grad-CAM++", WACV 2018, Sec. 5.1,
    https://arxiv.org/abs/1710.11063). Higher is better.

    Args:
        model: a Keras classifier taking `(B, H, W, C)` float images.
        images: `(B, H, W, C)` images, NumPy or tensor, preprocessed for the model.
        maps: `(B, H, W)` maps at the image resolution, used as soft masks, so on the
            [0, 1] scale: floats in [0, 1] (up to 1e-3 for rounding, then clipped), `uint8`
            levels 0..255 (divided by 255) or bool; other values are refused (see
            `keras_cam.visualize.to_unit_heatmap`).
        targets: `None` (each image's top-1 class on the unmasked image), an int (one class for
            all images), a sequence of ints (one class per image), or a target object of
            `keras_cam.targets` (or a list, one per image) read from the scores. Defaults to
            `None`.
        batch_size: images per model call. Defaults to `32`.
        activation: `"softmax"` or `"sigmoid"` to turn the model's logits into
            probabilities (the older spelling of `head="logits"` / `"sigmoid_logits"`), or
            `None` to leave the reading to `head`. Defaults to `None`.
        head: how the model's output is read (`keras_cam.surgery.read_head`): `None` reads
            a Functional or Sequential model's head as the explainers do (the outputs of any
            other callable are taken as probabilities), or one of `keras_cam.surgery.HEADS`
            states it. Defaults to `None`.
        output: the output to score of a model with several: its name or index (see
            `keras_cam.surgery.select_output`). Defaults to `None` (the only output).
        input: the explained input of a model with several (its name or index): `images` is
            then the model's input structure (a list in its order or a dict keyed by input
            name); only the explained input is masked, the others reach the model unchanged.
            Defaults to `None` (the only input).

    Returns:
        A `MetricResult` with `unit="percent"`: `per_image` is 0 or 100.

    Raises:
        ValueError: the model's head is read as raw scores (`head="linear"`); see
            `PROBABILITY_METRICS`.

    Example:
    ```python
    result = kc.metrics.increase_in_confidence(model, images, kc.GradCAMPlusPlus(model)(images))
    print(f"confidence increased for {result.mean:.0f} % of the images")
    ```
    """
    model, images, fixed = _explained(model, images, output, input)
    scored = _score(
        "increase_in_confidence", model, images, maps, targets, batch_size, activation, head,
        fixed=fixed,
    )
    increased = 100.0 * (_mask_scores(scored) > scored.scores)
    return MetricResult("increase_in_confidence", increased, "percent", higher_is_better=True)


# ------------------------------------------------------------ perturb the top pixels
def _top_fraction_change(
    name: str,
    keep: bool,
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets,
    fraction: float,
    baseline: Baseline,
    batch_size: int,
    activation: Activation,
    head: str | None,
    fixed: FixedInputs,
) -> MetricResult:
    """Relative confidence change when the top pixels are replaced (or all others are)."""
    fraction = check_fraction(fraction)
    check_choice("baseline", baseline, BASELINES)
    scored = _score(
        name, model, images, maps, targets, batch_size, activation, head, order_only=True,
        fixed=fixed,
    )
    top = _pixel_ranks(scored.maps) < _top_count(fraction, scored.maps[0].size)
    kept = (top if keep else ~top).astype(np.float32)
    masked = scored.target_scores(
        np.arange(len(kept)), lambda items: kept[items], _baseline_images(scored.images, baseline)
    )
    change = _relative(masked - scored.scores, scored.scores)
    return MetricResult(name, change, "ratio", higher_is_better=keep)


def remove_top_fraction(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    fraction: float = 0.25,
    baseline: Baseline = "zero",
    batch_size: int = 32,
    activation: Activation = None,
    head: str | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
) -> MetricResult:
    """Relative confidence change when the most relevant pixels are removed.

    The `k = round(fraction * H * W)` highest-ranked pixels of the map (at least one; ties
    broken in raster order, so exactly `k` pixels) are replaced by `baseline`, giving `O`;
    each image scores `(O - Y) / Y`, with `Y` the target probability of the image. This is
    one step of the "most relevant first" perturbation curve (Samek et al., "Evaluating the
    visualization of what a deep neural network has learned", IEEE TNNLS 2017,
    https://arxiv.org/abs/1509.06321). More negative is more faithful: removing what the map
    points at should hurt. An image whose `Y` is 0 scores 0.

    Args:
        model: a Keras classifier taking `(B, H, W, C)` float images.
        images: `(B, H, W, C)` images, NumPy or tensor, preprocessed for the model.
        maps: `(B, H, W)` maps at the image resolution. Only the order of the pixels
            matters, so any finite values are accepted: CAM maps in [0, 1], raw scores of any
            scale or sign, `uint8`, bool.
        targets: `None` (each image's top-1 class on the unmasked image), an int (one class for
            all images), a sequence of ints (one class per image), or a target object of
            `keras_cam.targets` (or a list, one per image) read from the scores. Defaults to
            `None`.
        fraction: share of the pixels to remove, in (0, 1]. Defaults to `0.25`.
        baseline: what removed pixels become: `"zero"` (the value 0 in the model's input
            space), `"mean"` (the image's per-channel mean) or `"blur"` (the image blurred by
            an 11x11 Gaussian with sigma 5, OpenCV). Defaults to `"zero"`.
        batch_size: images per model call. Defaults to `32`.
        activation: `"softmax"` or `"sigmoid"` to turn the model's logits into
            probabilities (the older spelling of `head="logits"` / `"sigmoid_logits"`), or
            `None` to leave the reading to `head`. Defaults to `None`.
        head: how the model's output is read (`keras_cam.surgery.read_head`): `None` reads
            a Functional or Sequential model's head as the explainers do (the outputs of any
            other callable are taken as probabilities), or one of `keras_cam.surgery.HEADS`
            states it. Defaults to `None`.
        output: the output to score of a model with several: its name or index (see
            `keras_cam.surgery.select_output`). Defaults to `None` (the only output).
        input: the explained input of a model with several (its name or index): `images` is
            then the model's input structure (a list in its order or a dict keyed by input
            name); only the explained input is masked, the others reach the model unchanged.
            Defaults to `None` (the only input).

    Returns:
        A `MetricResult` with `unit="ratio"`: `per_image` is at least -1.

    Raises:
        ValueError: the model's head is read as raw scores (`head="linear"`): `(O - Y) / Y`
            of a raw score, whose zero and sign are arbitrary, means nothing (see
            `PROBABILITY_METRICS`); `deletion` and `insertion` take raw scores.

    Example:
    ```python
    result = kc.metrics.remove_top_fraction(model, images, maps, fraction=0.25, baseline="blur")
    print(f"confidence changed by {100 * result.mean:+.1f} %")
    ```
    """
    model, images, fixed = _explained(model, images, output, input)
    return _top_fraction_change(
        "remove_top_fraction", False, model, images, maps, targets,
        fraction, baseline, batch_size, activation, head, fixed,
    )


def keep_top_fraction(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    fraction: float = 0.25,
    baseline: Baseline = "zero",
    batch_size: int = 32,
    activation: Activation = None,
    head: str | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
) -> MetricResult:
    """Relative confidence change when only the most relevant pixels are kept.

    The mirror of `remove_top_fraction`: every pixel except the `k = round(fraction * H * W)`
    highest-ranked ones (ties broken in raster order) is replaced by `baseline`, giving `O`;
    each image scores `(O - Y) / Y`. This is the preservation game of Fong and Vedaldi
    ("Interpretable explanations of black boxes by meaningful perturbation", ICCV 2017,
    https://arxiv.org/abs/1704.03296) with a fixed area. Higher (closer to 0, or positive) is
    more faithful: what the map points at should be enough. An image whose `Y` is 0 scores 0.

    Args:
        model: a Keras classifier taking `(B, H, W, C)` float images.
        images: `(B, H, W, C)` images, NumPy or tensor, preprocessed for the model.
        maps: `(B, H, W)` maps at the image resolution. Only the order of the pixels
            matters, so any finite values are accepted: CAM maps in [0, 1], raw scores of any
            scale or sign, `uint8`, bool.
        targets: `None` (each image's top-1 class on the unmasked image), an int (one class for
            all images), a sequence of ints (one class per image), or a target object of
            `keras_cam.targets` (or a list, one per image) read from the scores. Defaults to
            `None`.
        fraction: share of the pixels to keep, in (0, 1]. Defaults to `0.25`.
        baseline: what the other pixels become: `"zero"`, `"mean"` (the image's per-channel
            mean) or `"blur"` (11x11 Gaussian, sigma 5). Defaults to `"zero"`.
        batch_size: images per model call. Defaults to `32`.
        activation: `"softmax"` or `"sigmoid"` to turn the model's logits into
            probabilities (the older spelling of `head="logits"` / `"sigmoid_logits"`), or
            `None` to leave the reading to `head`. Defaults to `None`.
        head: how the model's output is read (`keras_cam.surgery.read_head`): `None` reads
            a Functional or Sequential model's head as the explainers do (the outputs of any
            other callable are taken as probabilities), or one of `keras_cam.surgery.HEADS`
            states it. Defaults to `None`.
        output: the output to score of a model with several: its name or index (see
            `keras_cam.surgery.select_output`). Defaults to `None` (the only output).
        input: the explained input of a model with several (its name or index): `images` is
            then the model's input structure (a list in its order or a dict keyed by input
            name); only the explained input is masked, the others reach the model unchanged.
            Defaults to `None` (the only input).

    Returns:
        A `MetricResult` with `unit="ratio"`: `per_image` is at least -1.

    Raises:
        ValueError: the model's head is read as raw scores (`head="linear"`): `(O - Y) / Y`
            of a raw score, whose zero and sign are arbitrary, means nothing (see
            `PROBABILITY_METRICS`); `deletion` and `insertion` take raw scores.

    Example:
    ```python
    result = kc.metrics.keep_top_fraction(model, images, maps, baseline="mean")
    ```
    """
    model, images, fixed = _explained(model, images, output, input)
    return _top_fraction_change(
        "keep_top_fraction", True, model, images, maps, targets,
        fraction, baseline, batch_size, activation, head, fixed,
    )


# ---------------------------------------------------------------- deletion / insertion
def _pixel_curve(
    name: str,
    insert: bool,
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets,
    steps: int,
    baseline: Baseline,
    batch_size: int,
    activation: Activation,
    head: str | None,
    fixed: FixedInputs,
) -> MetricResult:
    """Scores along the deletion (or insertion) path and the area under that curve."""
    steps = check_positive_int("steps", steps)
    check_choice("baseline", baseline, BASELINES)
    scored = _score(
        name, model, images, maps, targets, batch_size, activation, head, order_only=True,
        fixed=fixed,
    )
    batch, pixels = len(scored.maps), scored.maps[0].size
    ranks = _pixel_ranks(scored.maps)
    cells = (1,) * (scored.maps.ndim - 1)
    # Pixels changed after step k: round(k * pixels / steps), in exact integer arithmetic.
    counts = (2 * np.arange(steps + 1) * pixels + steps) // (2 * steps)

    def masks_for(items: np.ndarray) -> np.ndarray:
        image, step = np.divmod(items, steps + 1)
        changed = ranks[image] < counts[step].reshape(-1, *cells)
        return (changed if insert else ~changed).astype(np.float32)

    curve = scored.target_scores(
        np.repeat(np.arange(batch), steps + 1),
        masks_for,
        _baseline_images(scored.images, baseline),
    ).reshape(batch, steps + 1)
    x = counts / pixels
    auc = np.sum((curve[:, 1:] + curve[:, :-1]) / 2.0 * np.diff(x), axis=1)
    unit = "score" if scored.raw_scores else "fraction"
    return MetricResult(name, auc, unit, higher_is_better=insert, curve=curve, curve_x=x)


def deletion(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    steps: int = 50,
    baseline: Baseline = "zero",
    batch_size: int = 32,
    activation: Activation = None,
    head: str | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
) -> MetricResult:
    """Deletion curve and its area: confidence as the most relevant pixels are removed.

    Starting from the image, pixels are replaced by `baseline` in order of decreasing map
    value (ties in raster order); after step `k` of `steps`, the first
    `n_k = round(k * H * W / steps)` pixels are gone. `curve[:, k]` is the target probability
    of that image (its raw score for a `"linear"` head) and the score of each image is the
    area under the curve, by the trapezoid rule over `x_k = n_k / (H * W)` in [0, 1]
    (Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    BMVC 2018, https://arxiv.org/abs/1806.07421).
    Lower is better: a faithful map finds the pixels whose removal makes confidence fall
    fastest. A constant map (e.g. all zeros) removes pixels in raster order.

    The `B * (steps + 1)` perturbed images are built chunk by chunk and never all held in
    memory at once.

    Args:
        model: a Keras classifier taking `(B, H, W, C)` float images.
        images: `(B, H, W, C)` images, NumPy or tensor, preprocessed for the model.
        maps: `(B, H, W)` maps at the image resolution. Only the order of the pixels
            matters, so any finite values are accepted: CAM maps in [0, 1], raw scores of any
            scale or sign, `uint8`, bool.
        targets: `None` (each image's top-1 class on the unmasked image), an int (one class for
            all images), a sequence of ints (one class per image), or a target object of
            `keras_cam.targets` (or a list, one per image) read from the scores. Defaults to
            `None`.
        steps: number of deletion steps, at least 1. Defaults to `50`.
        baseline: what removed pixels become: `"zero"` (RISE's choice for deletion), `"mean"`
            (the image's per-channel mean) or `"blur"` (11x11 Gaussian, sigma 5). Defaults to
            `"zero"`.
        batch_size: images per model call. Defaults to `32`.
        activation: `"softmax"` or `"sigmoid"` to turn the model's logits into
            probabilities (the older spelling of `head="logits"` / `"sigmoid_logits"`), or
            `None` to leave the reading to `head`. Defaults to `None`.
        head: how the model's output is read (`keras_cam.surgery.read_head`): `None` reads
            a Functional or Sequential model's head as the explainers do (the outputs of any
            other callable are taken as probabilities), or one of `keras_cam.surgery.HEADS`
            states it. Defaults to `None`.
        output: the output to score of a model with several: its name or index (see
            `keras_cam.surgery.select_output`). Defaults to `None` (the only output).
        input: the explained input of a model with several (its name or index): `images` is
            then the model's input structure (a list in its order or a dict keyed by input
            name); only the explained input is masked, the others reach the model unchanged.
            Defaults to `None` (the only input).

    Returns:
        A `MetricResult` with `unit="fraction"`: `per_image` is the AUC in [0, 1], `curve` the
        `(B, steps + 1)` scores (`curve[:, 0]` is the unmasked image) and `curve_x` the
        `(steps + 1,)` fractions of pixels removed. For a raw-score (`"linear"`) head the
        curve holds raw scores and `unit="score"`: the AUC is the mean raw score along the
        path, in the model's units, of any sign.

    Example:
    ```python
    result = kc.metrics.deletion(model, images, maps, steps=32)
    plt.plot(result.curve_x, result.curve.mean(axis=0))
    print(f"deletion AUC {result.mean:.3f}")
    ```
    """
    model, images, fixed = _explained(model, images, output, input)
    return _pixel_curve(
        "deletion", False, model, images, maps, targets, steps, baseline, batch_size, activation,
        head, fixed,
    )


def insertion(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    steps: int = 50,
    baseline: Baseline = "blur",
    batch_size: int = 32,
    activation: Activation = None,
    head: str | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
) -> MetricResult:
    """Insertion curve and its area: confidence as the most relevant pixels are revealed.

    The mirror of `deletion`: starting from `baseline`, the image's pixels are put back in
    order of decreasing map value (ties in raster order); after step `k` of `steps` the first
    `n_k = round(k * H * W / steps)` pixels are the image's. `curve[:, k]` is the target
    probability (the raw score for a `"linear"` head) and the score is the area under the
    curve, trapezoid rule over `x_k = n_k / (H * W)` in [0, 1] (Petsiuk et al., "RISE", BMVC 2018,
    https://arxiv.org/abs/1806.07421). Higher is better: a faithful map reveals first the
    pixels that restore confidence fastest. A constant map (e.g. all zeros) reveals pixels in
    raster order.

    Args:
        model: a Keras classifier taking `(B, H, W, C)` float images.
        images: `(B, H, W, C)` images, NumPy or tensor, preprocessed for the model.
        maps: `(B, H, W)` maps at the image resolution. Only the order of the pixels
            matters, so any finite values are accepted: CAM maps in [0, 1], raw scores of any
            scale or sign, `uint8`, bool.
        targets: `None` (each image's top-1 class on the unmasked image), an int (one class for
            all images), a sequence of ints (one class per image), or a target object of
            `keras_cam.targets` (or a list, one per image) read from the scores. Defaults to
            `None`.
        steps: number of insertion steps, at least 1. Defaults to `50`.
        baseline: the starting canvas: `"blur"` (RISE's choice for insertion: 11x11 Gaussian,
            sigma 5), `"zero"` or `"mean"` (the image's per-channel mean). Defaults to `"blur"`.
        batch_size: images per model call. Defaults to `32`.
        activation: `"softmax"` or `"sigmoid"` to turn the model's logits into
            probabilities (the older spelling of `head="logits"` / `"sigmoid_logits"`), or
            `None` to leave the reading to `head`. Defaults to `None`.
        head: how the model's output is read (`keras_cam.surgery.read_head`): `None` reads
            a Functional or Sequential model's head as the explainers do (the outputs of any
            other callable are taken as probabilities), or one of `keras_cam.surgery.HEADS`
            states it. Defaults to `None`.
        output: the output to score of a model with several: its name or index (see
            `keras_cam.surgery.select_output`). Defaults to `None` (the only output).
        input: the explained input of a model with several (its name or index): `images` is
            then the model's input structure (a list in its order or a dict keyed by input
            name); only the explained input is masked, the others reach the model unchanged.
            Defaults to `None` (the only input).

    Returns:
        A `MetricResult` with `unit="fraction"`: `per_image` is the AUC in [0, 1], `curve` the
        `(B, steps + 1)` scores (`curve[:, -1]` is the unmasked image) and `curve_x` the
        `(steps + 1,)` fractions of pixels inserted. For a raw-score (`"linear"`) head the
        curve holds raw scores and `unit="score"`: the AUC is the mean raw score along the
        path, in the model's units, of any sign.

    Example:
    ```python
    result = kc.metrics.insertion(model, images, maps, steps=32, baseline="blur")
    print(f"insertion AUC {result.mean:.3f}")
    ```
    """
    model, images, fixed = _explained(model, images, output, input)
    return _pixel_curve(
        "insertion", True, model, images, maps, targets, steps, baseline, batch_size, activation,
        head, fixed,
    )


# ------------------------------------------------------------------------------------ ROAD
ROAD_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
"""Percentages of the pixels ROAD removes, as in pytorch-grad-cam's `ROADCombined`."""


def _check_percentiles(percentiles: Sequence[float], pixels: int) -> np.ndarray:
    """`percentiles` as a float64 array in (0, 100), each leaving at least one pixel."""
    values = np.asarray(percentiles, np.float64)
    if values.ndim != 1 or not len(values) or not np.all((values > 0) & (values < 100)):
        raise ValueError(
            f"`percentiles` must be a non-empty sequence of numbers in (0, 100); received "
            f"{percentiles!r}."
        )
    if np.any(_road_counts(values, pixels) >= pixels):
        raise ValueError(
            f"`percentiles` {percentiles!r} remove every pixel of a {pixels}-pixel image, "
            "leaving nothing to impute from; use smaller percentiles."
        )
    return values


def _road_counts(percentiles: np.ndarray, pixels: int) -> np.ndarray:
    """Pixels removed at each percentile: rounded half up."""
    return np.floor(percentiles / 100.0 * pixels + 0.5).astype(np.int64)


def _road_curves(
    name: str,
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets,
    percentiles: Sequence[float],
    noise: float,
    seed: int,
    batch_size: int,
    activation: Activation,
    head: str | None,
    output: int | str | None,
    input: int | str | None,
) -> tuple[_Scored, np.ndarray, np.ndarray]:
    """Checked inputs, the percentiles and the `(B, 2, P)` scores: MoRF (0) and LeRF (1)."""
    noise = check_noise(noise)
    model, images, fixed = _explained(model, images, output, input)
    scored = _score(
        name, model, images, maps, targets, batch_size, activation, head, order_only=True,
        fixed=fixed,
    )
    if scored.maps.ndim != 3:
        raise ValueError(
            f"`{name}` imputes removed pixels from their neighbours in an image (B, H, W); the "
            f"maps have shape {scored.maps.shape}. For signals and volumes use `deletion` / "
            "`insertion`."
        )
    batch, height, width = scored.maps.shape
    values = _check_percentiles(percentiles, height * width)
    counts = _road_counts(values, height * width)
    ranks = _pixel_ranks(scored.maps)
    keys = [zlib.crc32(np.ascontiguousarray(image).tobytes()) for image in scored.images]
    copies = np.arange(batch * 2 * len(values))
    image, order, step = np.unravel_index(copies, (batch, 2, len(values)))
    ones = np.ones((batch_size, height, width), np.float32)
    scores = np.empty(len(copies), np.float64)
    for start in range(0, len(copies), batch_size):
        items = copies[start : start + batch_size]
        count = counts[step[items]][:, np.newaxis, np.newaxis]
        most = ranks[image[items]] < count
        least = ranks[image[items]] >= height * width - count
        removed = np.where((order[items] == 0)[:, np.newaxis, np.newaxis], most, least)
        filled = linear_imputation(scored.images[image[items]], removed)
        # Each copy's noise is keyed by its image's content, curve and step, not its position
        # in the call: an image scores the same alone, in a batch, or streamed.
        draws = np.stack([
            np.random.default_rng(
                (seed, keys[image[copy]], int(order[copy]), int(step[copy]))
            ).standard_normal(filled.shape[1:])
            for copy in items
        ])
        filled = (filled + noise * draws * removed[..., np.newaxis]).astype(np.float32)
        rows = image[items]
        others = tuple(other[rows] for other in scored.others)
        probabilities = scored.probabilities(filled, filled, ones[: len(items)], others)
        scores[items] = target_scores(
            probabilities.numpy(), scored.targets[rows], scored.score_fn, rows.astype(np.int32)
        ).numpy()
    return scored, values, scores.reshape(batch, 2, len(values))


def road(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 32,
    activation: Activation = None,
    head: str | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
) -> MetricResult:
    """ROAD (RemOve And Debias): the combined score of its two removal orders.

    For each percentage `p` of `percentiles`, the `round(p / 100 * H * W)` most relevant
    pixels (MoRF: highest map values first, ties in raster order) or the least relevant ones
    (LeRF) are removed and replaced by noisy linear imputation from their neighbours
    (`keras_cam.imputation.linear_imputation` plus Gaussian noise of standard deviation
    `noise`, drawn from `seed` and the copy, so chunks never change a result), and the
    target's probability (its raw score for a `"linear"` head) is read. Each image scores
    `mean_p (LeRF_p - MoRF_p) / 2`, pytorch-grad-cam's `ROADCombined` (the score changes
    from the unmasked image, `LeRF_p - Y` and `MoRF_p - Y`, whose `Y` cancels) of Rong et
    al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022,
    https://arxiv.org/abs/2202.00449. Higher is better: removing what the map calls
    relevant hurts, removing what it calls irrelevant does not; the imputation keeps the
    removal from being a shape the model can read (the "class information leakage" of
    deletion curves).

    Args:
        model: a Keras classifier taking `(B, H, W, C)` float images.
        images: `(B, H, W, C)` images, NumPy or tensor, preprocessed for the model.
        maps: `(B, H, W)` maps at the image resolution. Only the order of the pixels
            matters, so any finite values are accepted: CAM maps in [0, 1], raw scores of any
            scale or sign, `uint8`, bool.
        targets: `None` (each image's top-1 class on the unmasked image), an int (one class for
            all images) or a sequence of ints (one class per image). Defaults to `None`.
        percentiles: percentages of pixels removed, each in (0, 100). Defaults to
            `(10, 20, ..., 90)`.
        noise: standard deviation of the imputation noise, in the model's input units.
            Defaults to `0.01` (Rong et al., for inputs in [0, 1]).
        seed: seed of the noise; each image's noise also depends on its content (not its
            position in the call), so an image scores the same alone or in any batch.
            Defaults to `0`.
        batch_size: images per model call. Defaults to `32`.
        activation: `"softmax"` or `"sigmoid"` to turn the model's logits into
            probabilities (the older spelling of `head="logits"` / `"sigmoid_logits"`), or
            `None` to leave the reading to `head`. Defaults to `None`.
        head: how the model's output is read (`keras_cam.surgery.read_head`): `None` reads
            a Functional or Sequential model's head as the explainers do, or one of
            `keras_cam.surgery.HEADS` states it. Defaults to `None`.
        output: the output to score of a model with several (see `deletion`). Defaults to
            `None`.
        input: the explained input of a model with several (see `deletion`): only it is
            imputed, the others reach the model unchanged. Defaults to `None`.

    Returns:
        A `MetricResult`: `per_image` the combined score (`unit="fraction"`, in [-0.5, 0.5]
        for probabilities; `"score"` for raw scores), `curve` the `(B, P)` values
        `(LeRF_p - MoRF_p) / 2` and `curve_x` the fractions `p / 100`. `road_curves` gives
        the two orders' scores.

    Raises:
        ValueError: percentiles outside (0, 100) or removing every pixel, a negative `noise`.

    Example:
    ```python
    result = kc.metrics.road(model, images, kc.GradCAM(model)(images))
    print(f"ROAD {result.mean:.3f}")
    ```
    """
    scored, values, scores = _road_curves(
        "road", model, images, maps, targets, percentiles, noise, seed, batch_size,
        activation, head, output, input,
    )
    curve = (scores[:, 1] - scores[:, 0]) / 2.0
    unit = "score" if scored.raw_scores else "fraction"
    return MetricResult(
        "road", curve.mean(axis=1), unit, higher_is_better=True, curve=curve,
        curve_x=values / 100.0,
    )


def road_curves(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 32,
    activation: Activation = None,
    head: str | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
) -> tuple[MetricResult, MetricResult]:
    """ROAD's two curves: most-relevant-first (MoRF) and least-relevant-first (LeRF).

    The same removals, imputations and noise as `road` (same arguments, `output=` and
    `input=` included, same `seed`), each order's score at each percentile.

    Returns:
        `(morf, lerf)`: `MetricResult`s named `"road_morf"` (lower is better) and
        `"road_lerf"` (higher is better), `per_image` the mean over the percentiles,
        `curve` the `(B, P)` scores and `curve_x` the fractions `p / 100`.

    Example:
    ```python
    morf, lerf = kc.metrics.road_curves(model, images, maps, percentiles=(20, 50, 80))
    plt.plot(morf.curve_x, morf.curve.mean(axis=0))
    ```
    """
    scored, values, scores = _road_curves(
        "road", model, images, maps, targets, percentiles, noise, seed, batch_size,
        activation, head, output, input,
    )
    unit = "score" if scored.raw_scores else "fraction"
    return tuple(
        MetricResult(
            name, scores[:, order].mean(axis=1), unit, higher_is_better=bool(order),
            curve=scores[:, order], curve_x=values / 100.0,
        )
        for order, name in enumerate(("road_morf", "road_lerf"))
    )


# ---------------------------------------------------------------------------- localization
def boxes_from_maps(maps: ArrayLike, fraction: float = 0.25) -> np.ndarray:
    """Bounding box of the largest connected region of each map's top pixels.

    The `k = round(fraction * H * W)` highest-ranked pixels (ties in raster order) that are
    also above the map's minimum are selected; the largest 8-connected region of the selection
    (`cv2.connectedComponentsWithStats`; among equal areas the first in raster order) gives
    the box, as in CAM's localization protocol (Zhou et al., "Learning Deep Features for
    Discriminative Localization", CVPR 2016, https://arxiv.org/abs/1512.04150).

    Only the order of the pixels matters: the boxes are the same for any strictly increasing
    transform of the maps (a CAM map in [0, 1] and its raw, unnormalized values give the same
    box). For a CAM map, whose minimum is 0, "above the minimum" means positive.

    Args:
        maps: `(B, H, W)` maps of any finite values (any scale or sign, `uint8`, bool).
        fraction: share of the pixels to select, in (0, 1]. Defaults to `0.25`.

    Returns:
        int64 `(B, 4)` boxes `(x0, y0, x1, y1)`, `x1`/`y1` exclusive; a constant map (all
        zeros included) has no pixel above its minimum and gives the empty box `(0, 0, 0, 0)`.

    Example:
    ```python
    boxes = kc.metrics.boxes_from_maps(cam(images), fraction=0.25)
    ```
    """
    fraction = check_fraction(fraction)
    maps = check_maps(maps, order_only=True, ranks=_MAP_RANKS)
    axes = tuple(range(1, maps.ndim))
    above_minimum = maps > maps.min(axis=axes, keepdims=True)
    selected = (_pixel_ranks(maps) < _top_count(fraction, maps[0].size)) & above_minimum
    if maps.ndim != 3:
        return np.stack([_largest_region_box(mask) for mask in selected])
    return largest_region_boxes(selected)


def largest_region_boxes(selected: np.ndarray) -> np.ndarray:
    """Bounding box of the largest 8-connected region of each boolean mask.

    Regions come from `cv2.connectedComponentsWithStats`; among equal areas the first in
    raster order wins.

    Args:
        selected: bool `(B, H, W)`.

    Returns:
        int64 `(B, 4)` boxes `(x0, y0, x1, y1)`, `x1`/`y1` exclusive; `(0, 0, 0, 0)` for an
        empty mask.
    """
    import cv2

    boxes = np.zeros((len(selected), 4), np.int64)
    for index, mask in enumerate(np.asarray(selected, np.uint8)):
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count > 1:
            x, y, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
            boxes[index] = (x, y, x + w, y + h)
    return boxes


def _regions(mask: np.ndarray) -> np.ndarray:
    """Labels of the fully connected regions of a 1-D or 3-D bool mask (8-connectivity's
    relative: neighbours along any diagonal), 0 off the mask: each region is labelled by the
    largest raster index in it, spread to a fixed point."""
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    offsets = np.stack(np.meshgrid(*([(-1, 0, 1)] * mask.ndim), indexing="ij"), -1)
    offsets = offsets.reshape(-1, mask.ndim)
    while True:
        padded = np.pad(labels, 1)
        neighbours = [
            padded[tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, mask.shape))]
            for offset in offsets
        ]
        spread = np.where(mask, np.max(neighbours, axis=0), 0)
        if np.array_equal(spread, labels):
            return labels
        labels = spread


def _largest_region_box(mask: np.ndarray) -> np.ndarray:
    """`boxes_from_maps` for one 1-D or 3-D selection: the `BOX_FORMATS` box of its largest
    connected region (among equal sizes the first in raster order), zeros when empty."""
    box = np.zeros(2 * mask.ndim, np.int64)
    labels = _regions(mask)
    found = np.unique(labels[labels > 0])
    if not len(found):
        return box
    sizes = np.array([np.sum(labels == label) for label in found])
    firsts = np.array([np.flatnonzero(labels == label)[0] for label in found])
    best = found[np.lexsort((firsts, -sizes))[0]]
    where = np.argwhere(labels == best)
    box[: mask.ndim] = where.min(axis=0)[::-1]  # x (last axis) first
    box[mask.ndim :] = where.max(axis=0)[::-1] + 1
    return box


def _nonnegative_maps(
    maps: ArrayLike, metric: str, ranks: tuple[int, ...] = (3,)
) -> np.ndarray:
    """`maps` as float64 `(B, H, W)` (or another of `ranks`), refused when a value is
    negative."""
    checked = check_maps(maps, order_only=True, ranks=ranks)
    if checked.min() < 0:
        raise ValueError(
            f"`{metric}` reads the maps as amounts of evidence, which cannot be negative; the "
            f"maps' smallest value is {checked.min():g}. Pass CAM maps (after their ReLU) or "
            "clip the negative values, e.g. `np.maximum(maps, 0)`."
        )
    return checked


def boxes_above_threshold(maps: ArrayLike, threshold: float = 0.2) -> np.ndarray:
    """Bounding box of the largest connected region above `threshold` times each map's maximum.

    CAM's localization protocol (Zhou et al., "Learning Deep Features for Discriminative
    Localization", CVPR 2016, https://arxiv.org/abs/1512.04150, Sec. 3: "we segment the
    regions of which the value is above 20% of the max value of the CAM and take the bounding
    box that covers the largest connected component"); the regions are 8-connected
    (`largest_region_boxes`). Unlike `boxes_from_maps`, the box depends on the map's values,
    not only their order: a blurry map gives a large box.

    Args:
        maps: `(B, H, W)` non-negative maps (any scale, `uint8`, bool).
        threshold: share of the maximum a pixel must exceed, in (0, 1]. Defaults to `0.2`.

    Returns:
        int64 `(B, 4)` boxes `(x0, y0, x1, y1)`; an all-zero map gives `(0, 0, 0, 0)`.

    Raises:
        ValueError: a negative map value, or `threshold` outside (0, 1].
    """
    threshold = check_fraction(threshold, "threshold")
    maps = _nonnegative_maps(maps, "boxes_above_threshold")
    peak = maps.max(axis=(1, 2), keepdims=True)
    return largest_region_boxes((maps > threshold * peak) & (peak > 0))




def _box_areas(boxes: np.ndarray) -> np.ndarray:
    """Pixels (samples, voxels) in each `BOX_FORMATS` box."""
    axes = boxes.shape[1] // 2
    return np.prod(np.clip(boxes[:, axes:] - boxes[:, :axes], 0, None), axis=1)


def box_iou(maps: ArrayLike, boxes: ArrayLike, *, fraction: float = 0.25) -> MetricResult:
    """Intersection over union of each map's box (`boxes_from_maps`) with the true box.

    Each image scores `|P ∩ G| / |P ∪ G|` in pixels, where `P` is the bounding box of the
    largest connected region of the map's top `fraction` pixels above its minimum and `G` the
    ground-truth box (Zhou et al., "CAM", CVPR 2016, https://arxiv.org/abs/1512.04150;
    Selvaraju et al., "Grad-CAM", ICCV 2017, https://arxiv.org/abs/1610.02391). Higher is
    better. A constant map (all zeros included) has an empty box and scores 0. Only the order
    of the pixels matters, so maps of any scale give the same IoU as their normalized form.

    Args:
        maps: `(B, H, W)` maps of any finite values (any scale or sign, `uint8`, bool).
        boxes: int `(B, 4)` ground-truth boxes `(x0, y0, x1, y1)` inside the image, `x1`/`y1`
            exclusive (`image[y0:y1, x0:x1]` is the object).
        fraction: share of the pixels whose region gives the box, in (0, 1].
            Defaults to `0.25`.

    Returns:
        A `MetricResult` with `unit="fraction"`: `per_image` is the IoU in [0, 1].

    Example:
    ```python
    images, labels, boxes = kc.datasets.shapes(16)
    result = kc.metrics.box_iou(kc.GradCAM(model)(images, labels), boxes)
    ```
    """
    fraction = check_fraction(fraction)
    maps = check_maps(maps, order_only=True, ranks=_MAP_RANKS)
    truth = check_boxes(boxes, maps.shape)
    iou = _iou(boxes_from_maps(maps, fraction), truth)
    return MetricResult("box_iou", iou, "fraction", higher_is_better=True)


def _iou(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of predicted `BOX_FORMATS` boxes (possibly empty) with non-empty true boxes."""
    axes = truth.shape[1] // 2
    overlap = np.concatenate(
        [np.maximum(predicted[:, :axes], truth[:, :axes]),
         np.minimum(predicted[:, axes:], truth[:, axes:])],
        axis=1,
    )
    intersection = _box_areas(overlap)
    union = _box_areas(predicted) + _box_areas(truth) - intersection
    return intersection / union


def box_iou_cam(maps: ArrayLike, boxes: ArrayLike, *, threshold: float = 0.2) -> MetricResult:
    """Box IoU with CAM's protocol: the box of the largest region above 20 % of the maximum.

    Each image scores `|P ∩ G| / |P ∪ G|` in pixels, `P` from `boxes_above_threshold` (Zhou
    et al., "CAM", CVPR 2016, https://arxiv.org/abs/1512.04150, Sec. 3) and `G` the
    ground-truth box. `box_iou` selects a fixed share of the pixels instead, so it sees only
    the map's order; this one sees its values, and a blurry map's box grows. Higher is
    better; an all-zero map has an empty box and scores 0.

    Args:
        maps: `(B, H, W)` non-negative maps (any scale, `uint8`, bool).
        boxes: int `(B, 4)` ground-truth boxes `(x0, y0, x1, y1)`, `x1`/`y1` exclusive.
        threshold: share of the maximum a pixel must exceed, in (0, 1]. Defaults to `0.2`.

    Returns:
        A `MetricResult` with `unit="fraction"`: `per_image` is the IoU in [0, 1].

    Raises:
        ValueError: a negative map value (a CAM map is non-negative after its ReLU).

    Example:
    ```python
    kc.metrics.box_iou_cam(kc.GradCAM(model)(images), boxes).mean
    ```
    """
    threshold = check_fraction(threshold, "threshold")
    if np.ndim(maps) in (2, 4):
        raise ValueError(
            f"`box_iou_cam` follows CAM's protocol on image maps (B, H, W) (the largest "
            f"connected region of an image); received maps of shape {np.shape(maps)}. For "
            "signals (B, T) and volumes (B, D, H, W) use `box_iou`."
        )
    maps = _nonnegative_maps(maps, "box_iou_cam")
    truth = check_boxes(boxes, maps.shape)
    iou = _iou(boxes_above_threshold(maps, threshold), truth)
    return MetricResult("box_iou_cam", iou, "fraction", higher_is_better=True)


def pointing_game(maps: ArrayLike, boxes: ArrayLike) -> MetricResult:
    """Pointing game: whether each map's maximum falls inside the ground-truth box.

    The point is the map's largest value (the first in raster order among equal maxima); a
    hit scores 1 and a miss 0, so the mean is the hit rate (Zhang et al., "Top-down Neural
    Attention by Excitation Backprop", ECCV 2016, https://arxiv.org/abs/1608.00507; no
    tolerance margin). A constant map (all zeros included) points nowhere and counts as a
    miss. Higher is better. Only the order of the pixels matters, so maps of any scale or sign
    are accepted (a peak of 1.009 after resampling, raw CAM values, negative scores).

    Args:
        maps: `(B, H, W)` maps of any finite values (any scale or sign, `uint8`, bool).
        boxes: int `(B, 4)` ground-truth boxes `(x0, y0, x1, y1)` inside the image, `x1`/`y1`
            exclusive.

    Returns:
        A `MetricResult` with `unit="fraction"`: `per_image` is 1.0 (hit) or 0.0 (miss).

    Example:
    ```python
    result = kc.metrics.pointing_game(maps, boxes)
    print(f"hit rate {result.mean:.2f}")
    ```
    """
    maps = check_maps(maps, order_only=True, ranks=_MAP_RANKS)
    truth = check_boxes(boxes, maps.shape)
    flat = maps.reshape(len(maps), -1)
    axes = maps.ndim - 1
    point = np.stack(np.unravel_index(flat.argmax(axis=1), maps.shape[1:]), 1)[:, ::-1]
    inside = np.all((truth[:, :axes] <= point) & (point < truth[:, axes:]), axis=1)
    hits = inside & (flat.max(axis=1) > flat.min(axis=1))
    return MetricResult("pointing_game", hits.astype(np.float64), "fraction", higher_is_better=True)


def energy_pointing_game(maps: ArrayLike, boxes: ArrayLike) -> MetricResult:
    """Energy-based pointing game: the share of each map's energy inside the true box.

    `sum_{(i, j) in box} L_ij / sum_{(i, j)} L_ij` (Wang et al., "Score-CAM: Score-Weighted
    Visual Explanations for Convolutional Neural Networks", CVPR-W 2020,
    https://arxiv.org/abs/1910.01279, Sec. 4.2). Unlike `pointing_game`, which looks at the
    maximum alone, every pixel counts: a map spread over the whole image scores the box's
    area share. Higher is better; an all-zero map has no energy and scores 0.

    Args:
        maps: `(B, H, W)` non-negative maps (any scale, `uint8`, bool); `(B, T)` for
            signals, `(B, D, H, W)` for volumes.
        boxes: int `(B, 4)` ground-truth boxes `(x0, y0, x1, y1)`, `x1`/`y1` exclusive;
            intervals `(B, 2)` `(x0, x1)` for signals, `(B, 6)` `(x0, y0, z0, x1, y1, z1)` for
            volumes.

    Returns:
        A `MetricResult` with `unit="fraction"`: `per_image` in [0, 1].

    Raises:
        ValueError: a negative map value (energy is non-negative).

    Example:
    ```python
    kc.metrics.energy_pointing_game(kc.ScoreCAM(model)(images), boxes).mean
    ```
    """
    maps = _nonnegative_maps(maps, "energy_pointing_game", ranks=_MAP_RANKS)
    truth = check_boxes(boxes, maps.shape)
    axes = maps.ndim - 1
    inside = np.zeros(maps.shape, bool)
    for index, box in enumerate(truth):  # lows then highs, x first: reversed to the map's axes
        inside[(index, *map(slice, box[:axes][::-1], box[axes:][::-1]))] = True
    total = maps.reshape(len(maps), -1).sum(axis=1)
    share = _relative((maps * inside).reshape(len(maps), -1).sum(axis=1), total)
    return MetricResult("energy_pointing_game", share, "fraction", higher_is_better=True)


# ------------------------------------------------------------------------------- complexity
def sparseness(maps: ArrayLike) -> MetricResult:
    """Sparseness: the Gini index of each map's absolute values.

    With the `n` values `|L|` sorted ascending, `G = sum_k (2k - n - 1) a_k / (n sum_k a_k)`
    (Chalasani et al., "Concise Explanations of Neural Networks using Adversarial Training",
    ICML 2020, https://arxiv.org/abs/1810.06583; Quantus' `Sparseness`, without its 1e-7
    added to every value). 1 - 1/n for a single non-zero pixel, 0 for a constant map (and,
    by convention, an all-zero one). Higher means more concentrated: read it next to the
    other scores, since a "better" localization score can come from a blurrier map, and
    a lower faithfulness score from a sharper one.

    Args:
        maps: `(B, H, W)` maps of any finite values (absolute values are used); `(B, T)`
            for signals, `(B, D, H, W)` for volumes.

    Returns:
        A `MetricResult` with `unit="fraction"`: `per_image` in [0, 1).

    Example:
    ```python
    kc.metrics.sparseness(kc.GradCAM(model)(images)).mean
    ```
    """
    checked = np.abs(check_maps(maps, order_only=True, ranks=_MAP_RANKS))
    values = np.sort(checked.reshape(len(checked), -1), axis=1)
    count = values.shape[1]
    coefficients = 2.0 * np.arange(1, count + 1) - count - 1
    gini = _relative((coefficients * values).sum(axis=1), count * values.sum(axis=1))
    return MetricResult("sparseness", gini, "fraction", higher_is_better=True)


# -------------------------------------------------------------------------------- registry
METRICS: dict[str, Callable[..., MetricResult]] = {
    name: registry.load(path) for name, path in registry.METRIC_FUNCTIONS.items()
}
"""Every metric by name. Those in `BOX_METRICS` take `(maps, boxes)`, those in `MAP_METRICS`
`(maps)`, the others `(model, images, maps, targets)`; all accept their options as keywords."""

BOX_METRICS: frozenset[str] = frozenset(
    {"box_iou", "box_iou_cam", "pointing_game", "energy_pointing_game"}
)
"""Names of the metrics that compare maps with ground-truth boxes and need no model."""

MAP_METRICS: frozenset[str] = frozenset({"sparseness"})
"""Names of the metrics of the maps alone (no model, no boxes)."""


def get_metric(name: str) -> Callable[..., MetricResult]:
    """Returns the metric function registered under `name`.

    Args:
        name: a key of `METRICS`, e.g. `"deletion"`.

    Returns:
        The metric function.

    Example:
    ```python
    result = kc.metrics.get_metric("insertion")(model, images, maps)
    ```
    """
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; known metrics: {', '.join(METRICS)}.")
    return METRICS[name]
