"""Score-CAM and Faster Score-CAM: channel weights from forward passes of masked inputs.

The cost of Score-CAM is one forward pass per (image, channel) pair, so everything else is
arranged around running those passes at the model's own speed:

1. One pass of the sub-model gives each image's feature maps `A` (and resolves top-1 targets).
2. The (image, channel) pairs that need a pass are listed: the selected channels (all, or the
   `max_channels` of largest variance) minus the constant ones, whose result is known.
3. The pairs of all images form one stream, cut into chunks of `batch_size`. One compiled
   function per chunk gathers the chunk's small maps, upsamples them to the input size,
   min-max normalizes each, multiplies its image by it and runs the model's scores head
   (probabilities for a classifier, the raw output for a raw-score head). Only one chunk of
   masked copies exists at a time.
4. The scores become channel weights (`channel_weights`, pure) and `BaseCAM` does the rest.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from keras_cam.methods.base import BaseCAM, compile_fn, place_maps
from keras_cam.surgery import Head
from keras_cam.targets import TOP_PREDICTION, ScoreFn, target_scores

WEIGHTINGS = ("reference", "softmax")
"""Known values of `ScoreCAM(weighting=...)`."""

MEMORY_BUDGET_BYTES = 256 * 2**20
"""Bound on one chunk's masked inputs and activations when `batch_size=None`."""

MAX_AUTO_BATCH_SIZE = 128
"""Largest automatic chunk: bigger chunks no longer speed a forward pass up."""

_UNKNOWN_ACTIVATIONS_PER_PIXEL = 64.0
"""Activation estimate for models whose input size is only known at call time."""

_PROGRESS_AFTER_SECONDS = 2.0
"""A progress bar is shown when the stream is expected to take longer than this."""


@dataclasses.dataclass(frozen=True)
class ScoreCAMStats:
    """What the last call of a `ScoreCAM` computed (`cam.last_stats`).

    Attributes:
        images: images explained.
        channels: channels `K` of the explained layer.
        selected: (image, channel) pairs considered: `images * K`, or `images * k` with
            `max_channels=k`.
        skipped: selected pairs whose channel is constant over the map; they needed no
            forward pass.
        masked_passes: forward passes of masked inputs actually run (`selected - skipped`,
            or `selected` with `skip_constant=False`).
        baseline_passes: 1 when the blank-input baseline was computed (softmax weighting with
            skipped channels), else 0.
        batch_size: masked inputs per forward pass (chunk size).
        chunks: compiled forward calls the stream took.
        seconds: wall time of the masked-pass stream.
    """

    images: int
    channels: int
    selected: int
    skipped: int
    masked_passes: int
    baseline_passes: int
    batch_size: int
    chunks: int
    seconds: float

    @property
    def skipped_fraction(self) -> float:
        """Share of the selected pairs that were skipped, in [0, 1]."""
        return self.skipped / self.selected if self.selected else 0.0


def channel_weights(
    scores: Any, selected: Any, constant: Any, weighting: str = "reference"
) -> tf.Tensor:
    """Turns the masked-input scores into Score-CAM channel weights (pure, tensors in and out).

    Args:
        scores: float `(B, K)` score `s_k` of each image's input masked with channel `k`. For
            constant channels (softmax weighting) this is the blank-input baseline score.
        selected: bool `(B, K)`, the channels taking part (all, or the top-k by variance).
        constant: bool `(B, K)`, the channels constant over the map.
        weighting: `"reference"`: `w_k = s_k` for selected non-constant channels, 0 otherwise
            (the authors' code); `"softmax"`: softmax of `s_k` over the selected channels, 0
            for the others (the paper). Defaults to `"reference"`.

    Returns:
        float32 weights `(B, K)`.

    Example:
    ```python
    channel_weights([[0.9, 0.1]], [[True, True]], [[False, False]], "softmax")
    # [[0.69, 0.31]]
    ```
    """
    scores = tf.cast(scores, tf.float32)
    selected = tf.cast(selected, tf.bool)
    if weighting == "reference":
        counted = tf.logical_and(selected, tf.logical_not(tf.cast(constant, tf.bool)))
        return tf.where(counted, scores, tf.zeros_like(scores))
    if weighting == "softmax":
        return tf.nn.softmax(tf.where(selected, scores, -np.inf), axis=-1)
    raise ValueError(f"`weighting` must be one of {WEIGHTINGS}; received {weighting!r}.")


class ScoreCAM(BaseCAM):
    """Score-CAM (Wang et al., 2020, https://arxiv.org/abs/1910.01279), and its top-k variant.

    Each channel `A^k` of the explained layer is upsampled to the input size (bilinear) and
    min-max normalized to a mask `H^k` in [0, 1]; the input `X` masked with it is scored by
    the model's scores as the head is read (`keras_cam.surgery.read_head`):
    `s_k = p_c(X * H^k)`, the probability of the target class `c` for a classifier (for a
    single-sigmoid head, the sigmoid probability; for a model that outputs logits, their
    softmax), and the raw output itself for a raw-score head (a single linear unit, e.g. a
    regression, or `head="linear"`). The map is `ReLU(sum_k w_k A^k)`, with one of two
    weightings:

    - `"reference"` (the authors' code, the default): `w_k = s_k`. Channels constant over the
      map have no mask to normalize and are left out, as in the authors' code (for the usual
      all-zero channel after a ReLU the term `s_k A^k` is zero anyway).
    - `"softmax"` (the paper, Eq. 4-5): `w = softmax_k(s_k - s_b)`, where `s_b` is the score of
      the blank baseline input (all zeros, in the model's preprocessed input space). A
      constant channel's mask is all zeros, so its masked input *is* the blank input: its
      score is exactly `s_b` (increase of confidence 0), and all constant channels share that
      one baseline pass. (The softmax is shift-invariant, so `s_b` matters only as the score
      of the constant channels.)

    With `max_channels=k` only the `k` channels of each image with the largest spatial
    variance take part (Faster Score-CAM; `FasterScoreCAM` sets `k=10`). Constant channels
    never need a forward pass: they are counted and skipped (`last_stats`). The maps are
    computed at the layer's resolution and upsampled afterwards like every method's
    (`ReLU(sum_k w_k A^k)` then bilinear resize), which equals the authors' upsample-then-sum
    up to the ReLU at the borders of positive regions.

    Masked inputs of all images form one stream of chunks of `batch_size`; each chunk is
    masked and run by one compiled function, so at most `batch_size` masked copies exist at a
    time. With `batch_size=None` the chunk holds
    `floor(256 MiB / (4 * H * W * (C + 1 + 2 * a)))` inputs (between 1 and 128), where
    `H x W x C` is the input size and `a` the model's largest layer output per input pixel
    (an input copy, its mask and two live activations per masked input).

    Targets: `None`, an int or one int per image, as everywhere. A callable target is applied
    to the **scores** (probabilities, or raw outputs) `(n, num_classes)` of each chunk of
    masked inputs and must return one score per row, computed from that row alone (e.g.
    `lambda p: p[:, 3] - p[:, 5]`).

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported). It is
            not modified.
        layer: the layer to explain: a name, a layer object, or `None` for the automatic
            choice. Defaults to `None`.
        batch_size: masked inputs per forward pass, at least 1, or `None` for the memory rule
            above. Defaults to `None`.
        max_channels: keep only the `k` channels of largest variance per image (Faster
            Score-CAM), `1 <= k <= K` channels of the layer; `None` keeps all. Defaults to
            `None`.
        weighting: `"reference"` or `"softmax"`, see above. Defaults to `"reference"`.
        skip_constant: skip the forward passes of constant channels, whose outcome is known.
            Turning it off only costs time; it exists to verify that. Defaults to `True`.
        verbose: 0 (silent), 1 (progress bar) or 2 (one line at the end); a `keras.utils.
            Progbar` is shown only when the stream is expected to take more than 2 seconds.
            Defaults to `1`.
        layer_call: which call of `layer` to explain when the model makes several (see
            `keras_cam.BaseCAM`). Defaults to `None`.
        head: how to read the model's output, hence what the masked inputs are scored with:
            `None` for automatic, or one of `keras_cam.surgery.HEADS` (see
            `keras_cam.BaseCAM`). Defaults to `None`.

    Attributes:
        last_stats: a `ScoreCAMStats` describing the last call (passes run, channels skipped
            and `skipped_fraction`, chunking, time), or `None` before the first call.

    Returns:
        Calling the instance returns float32 maps, `(H, W)` for one image or `(B, H, W)` for a
        batch, min-max normalized to [0, 1] (see `BaseCAM.__call__`).

    Raises:
        ValueError: at construction: `batch_size < 1`, `max_channels` outside `[1, K]`, an
            unknown `weighting` or `verbose`.

    Example:
    ```python
    cam = keras_cam.ScoreCAM(model, batch_size=32)
    maps = cam(images, targets=[3, 7])        # (2, H, W)
    cam.last_stats.skipped_fraction           # share of constant channels skipped
    fast = keras_cam.ScoreCAM(model, max_channels=10, weighting="softmax")
    ```
    """

    display_name = "Score-CAM"
    requires_gradients = False
    default_max_channels: ClassVar[int | None] = None
    """Channels kept when `max_channels=None` (`None`: all); capped at the layer's count."""

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        batch_size: int | None = None,
        max_channels: int | None = None,
        weighting: str = "reference",
        skip_constant: bool = True,
        verbose: int = 1,
        layer_call: int | None = None,
        head: str | Head | None = None,
    ) -> None:
        super().__init__(model, layer, layer_call=layer_call, head=head)
        sub_model = self._cam.model
        feature_shape = tuple(sub_model.outputs[0].shape[1:])
        self.num_channels: int = int(feature_shape[-1])
        if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
            raise ValueError(
                f"`batch_size` must be an int >= 1 (masked inputs per forward pass) or None to "
                f"choose it from a memory budget; received {batch_size!r}."
            )
        if max_channels is None and self.default_max_channels is not None:
            max_channels = min(self.default_max_channels, self.num_channels)
        if max_channels is not None and (
            not _is_int(max_channels) or not 1 <= max_channels <= self.num_channels
        ):
            raise ValueError(
                f"`max_channels` must be an int from 1 to {self.num_channels} (the channel count "
                f"of layer {self.layer.name!r}), or None for all channels; received "
                f"{max_channels!r}."
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(f"`weighting` must be one of {WEIGHTINGS}; received {weighting!r}.")
        if verbose not in (0, 1, 2):
            raise ValueError(f"`verbose` must be 0, 1 or 2; received {verbose!r}.")
        self.batch_size = batch_size
        self.max_channels = max_channels
        self.weighting = weighting
        self.skip_constant = bool(skip_constant)
        self.verbose = int(verbose)
        self.last_stats: ScoreCAMStats | None = None
        # The masked passes need only the scores: a second Functional model over the same
        # graph (shared weights) skips the work of returning the feature maps.
        self._scores = keras.Model(
            sub_model.inputs[0], sub_model.outputs[2], name=f"{sub_model.name}_scores"
        )
        self._activations_per_pixel = _activations_per_pixel(
            sub_model, [self._cam.input_shape[axis - 1] for axis in self._cam.spatial_axes]
        )
        self._image_spec = tf.TensorSpec((None, *self._cam.input_shape), tf.float32)
        self._features_fn = compile_fn(self._features, [self._image_spec])
        self._maps_spec = tf.TensorSpec((None, self.num_channels, *feature_shape[:2]), tf.float32)
        channel_spec = tf.TensorSpec((None, self.num_channels), tf.float32)
        flag_spec = tf.TensorSpec((None, self.num_channels), tf.bool)
        self._combine_fn = compile_fn(
            self._combine,
            [tf.TensorSpec((None, *feature_shape), tf.float32), channel_spec, flag_spec, flag_spec],
        )
        self._stream_fns: dict[ScoreFn | None, tuple[Any, Any]] = {}

    # ------------------------------------------------------------------ method hook
    def explain_batch(self, images: tf.Tensor, targets: np.ndarray | ScoreFn) -> tf.Tensor:
        """Raw `ReLU(sum_k w_k A^k)` maps at the layer's resolution, `(B, h, w)`."""
        features, maps, classes, constant, variance = self._first_pass(images, targets)
        score_fn = targets if callable(targets) else None
        chunk_fn, baseline_fn = self._stream(score_fn)
        selected = self._select(variance)
        run = selected & ~constant if self.skip_constant else selected
        pairs = np.argwhere(run).astype(np.int32)  # image-major: one stream across images

        batch_size = self.batch_size or self._auto_batch_size(images)
        start_time = time.perf_counter()
        scores = self._run_stream(
            chunk_fn, images, maps, pairs, classes[pairs[:, 0]], batch_size
        )
        seconds = time.perf_counter() - start_time
        skipped = selected & ~run
        baseline_passes = 0
        if self.weighting == "softmax" and skipped.any():
            baseline = baseline_fn(images, classes).numpy()
            scores = np.where(skipped, baseline[:, np.newaxis], scores)
            baseline_passes = 1

        self.last_stats = ScoreCAMStats(
            images=int(images.shape[0]),
            channels=self.num_channels,
            selected=int(selected.sum()),
            skipped=int(skipped.sum()),
            masked_passes=len(pairs),
            baseline_passes=baseline_passes,
            batch_size=batch_size,
            chunks=math.ceil(len(pairs) / batch_size),
            seconds=seconds,
        )
        return self._combine_fn(features, scores, selected, constant)

    # -------------------------------------------------------------- internals
    def _features(self, images: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Feature maps `(B, h, w, K)`, as `(B, K, h, w)`, top-1 class and channel statistics."""
        features, _, scores = self._forward(images)
        features = tf.cast(features, tf.float32)
        maps = tf.transpose(features, (0, 3, 1, 2))  # one gather per chunk picks a channel
        flat = tf.reshape(maps, tf.concat([tf.shape(maps)[:2], [-1]], axis=0))
        constant = tf.reduce_max(flat, axis=-1) == tf.reduce_min(flat, axis=-1)
        top = tf.argmax(scores, axis=-1, output_type=tf.int32)
        return features, maps, top, constant, tf.math.reduce_variance(flat, axis=-1)

    def _first_pass(
        self, images: tf.Tensor, targets: np.ndarray | ScoreFn
    ) -> tuple[tf.Tensor, tf.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        """Features, maps, each image's class (top-1 resolved), constant flags, variances."""
        parts = [
            self._features_fn(images[start : start + self.images_per_pass])
            for start in range(0, int(images.shape[0]), self.images_per_pass)
        ]
        features, maps, top, constant, variance = (tf.concat(p, axis=0) for p in zip(*parts))
        if callable(targets):
            classes = np.full(top.shape, TOP_PREDICTION, np.int32)  # unused: the callable scores
        else:
            classes = np.where(targets == TOP_PREDICTION, top.numpy(), targets)
        return features, maps, classes, constant.numpy(), variance.numpy()

    def _combine(
        self, features: tf.Tensor, scores: tf.Tensor, selected: tf.Tensor, constant: tf.Tensor
    ) -> tf.Tensor:
        """Channel weights from the scores, then `compute_cam`: `(B, h, w)`."""
        weights = channel_weights(scores, selected, constant, self.weighting)
        return self.compute_cam(features, weights)

    def _select(self, variance: np.ndarray) -> np.ndarray:
        """The channels taking part: all, or the `max_channels` of largest variance."""
        if self.max_channels is None or self.max_channels == self.num_channels:
            return np.ones(variance.shape, dtype=bool)
        top = np.argsort(-variance, axis=-1, kind="stable")[:, : self.max_channels]
        selected = np.zeros(variance.shape, dtype=bool)
        np.put_along_axis(selected, top, True, axis=-1)
        return selected

    def _auto_batch_size(self, images: tf.Tensor) -> int:
        """Chunk size from `MEMORY_BUDGET_BYTES` (see the class docstring for the rule)."""
        pixels = math.prod(self.image_size(images))
        channels = int(images.shape[1:].num_elements()) // pixels
        per_input = 4 * pixels * (channels + 1 + 2 * self._activations_per_pixel)
        return int(np.clip(MEMORY_BUDGET_BYTES // per_input, 1, MAX_AUTO_BATCH_SIZE))

    def _run_stream(
        self,
        chunk_fn: Any,
        images: tf.Tensor,
        maps: tf.Tensor,
        pairs: np.ndarray,
        classes: np.ndarray,
        batch_size: int,
    ) -> np.ndarray:
        """Scores of all `pairs`, chunk by chunk, scattered into a `(B, K)` array."""
        chunks, progress = [], None
        placement = self.placement(*self.image_size(images))
        start_time = time.perf_counter()
        for start in range(0, len(pairs), batch_size):
            stop = start + batch_size
            chunks.append(
                chunk_fn(images, maps, pairs[start:stop], classes[start:stop], placement)
            )
            done = min(stop, len(pairs))
            if progress is None and self.verbose and done < len(pairs):
                expected = (time.perf_counter() - start_time) * len(pairs) / done
                if expected > _PROGRESS_AFTER_SECONDS:
                    progress = keras.utils.Progbar(
                        len(pairs), verbose=self.verbose, unit_name="pass"
                    )
            if progress is not None:
                progress.update(done)
        scores = np.zeros(maps.shape[:2], np.float32)
        if chunks:
            scores[pairs[:, 0], pairs[:, 1]] = np.concatenate([c.numpy() for c in chunks])
        return scores

    def _stream(self, score_fn: ScoreFn | None) -> tuple[Any, Any]:
        """The compiled chunk and baseline functions for class targets or one callable."""
        if score_fn not in self._stream_fns:
            if score_fn is not None:  # keep the class-target functions and the last callable
                self._stream_fns = {k: v for k, v in self._stream_fns.items() if k is None}

            def chunk_scores(
                images: tf.Tensor,
                maps: tf.Tensor,
                pairs: tf.Tensor,
                classes: tf.Tensor,
                placement: tf.Tensor,
            ) -> tf.Tensor:
                size = tf.gather(tf.shape(images), self._cam.spatial_axes)
                masks = place_maps(tf.gather_nd(maps, pairs), size, placement)
                low = tf.reduce_min(masks, axis=(1, 2), keepdims=True)
                high = tf.reduce_max(masks, axis=(1, 2), keepdims=True)
                masks = tf.math.divide_no_nan(masks - low, high - low)
                channel_axis = 1 if self._cam.data_format == "channels_first" else 3
                masked = tf.gather(images, pairs[:, 0]) * tf.expand_dims(masks, channel_axis)
                return target_scores(self._scores(masked, training=False), classes, score_fn)

            def baseline_scores(images: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
                blank = self._scores(tf.zeros_like(images[:1]), training=False)
                return target_scores(
                    tf.repeat(blank, tf.shape(images)[0], axis=0), classes, score_fn
                )

            index_spec = tf.TensorSpec((None,), tf.int32)
            self._stream_fns[score_fn] = (
                compile_fn(
                    chunk_scores,
                    [
                        self._image_spec,
                        self._maps_spec,
                        tf.TensorSpec((None, 2), tf.int32),
                        index_spec,
                        tf.TensorSpec((2, 4), tf.float32),
                    ],
                ),
                compile_fn(baseline_scores, [self._image_spec, index_spec]),
            )
        return self._stream_fns[score_fn]


class FasterScoreCAM(ScoreCAM):
    """Faster Score-CAM: Score-CAM on the 10 channels of largest variance per image.

    The same as `ScoreCAM(model, layer, max_channels=10, ...)` (fewer if the layer has fewer
    channels); all `ScoreCAM` arguments apply.

    Example:
    ```python
    maps = keras_cam.FasterScoreCAM(model)(images)
    ```
    """

    display_name = "Faster Score-CAM"
    default_max_channels = 10


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _activations_per_pixel(model: keras.Model, sizes: list[int | None]) -> float:
    """The largest layer output of `model`, in elements per input pixel of `sizes` (H, W)."""
    height, width = sizes
    if height is None or width is None:
        return _UNKNOWN_ACTIVATIONS_PER_PIXEL
    largest = max(
        math.prod(tensor.shape[1:])
        for layer in model.layers
        for tensor in keras.tree.flatten(layer.output)
        if None not in tensor.shape[1:]
    )
    return largest / (height * width)
