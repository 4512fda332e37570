"""The perturbation family: channel weights from forward passes of perturbed inputs.

Score-CAM and its relatives (Faster Score-CAM, SS-CAM, IS-CAM, ...) score the model on copies of
each image perturbed with one channel of the explained layer at a time. The cost is one forward
pass per (image, channel) pair, so `PerturbationCAM` arranges everything else around running
those passes at the model's own speed:

1. One pass of the sub-model gives each image's feature maps `A` (and resolves top-1 targets).
2. The (image, channel) pairs that need a pass are listed: the selected channels (all, or the
   `max_channels` of largest variance) minus the constant ones, whose mask is all zeros.
3. The pairs of all images form one stream, cut into chunks of `batch_size`. Each chunk
   gathers its small maps, places them on the input grid, min-max normalizes each to a mask
   `H^k` in [0, 1], perturbs the images with them (the method's `perturb`) and runs the
   model's scores head (probabilities for a classifier, the raw output for a raw-score head).
   Only one chunk of perturbed copies exists at a time.
4. The scores become channel weights (the method's `weights_from_scores`) and the weighted sum
   `ReLU(sum_k w_k A^k)`; `BaseCAM` does the rest.

Steps 1-4 run in as few compiled calls as the stream allows, with no eager op and no
device-to-host copy between them: one call does steps 1 and 2 and the first chunk (and, when
the stream is that one chunk, step 4 too); each further chunk is one call, the last one
ending with step 4. (A batch of more than `images_per_pass` images runs step 1 in parts of
that many images first.) On a small model this fixed cost, not the passes, is what a call of
a few passes costs beyond them.

A method of the family is a small class that defines `perturb` and `weights_from_scores`:

```python
class MeanMaskedCAM(PerturbationCAM):
    def perturb(self, images, masks):  # the mean colour where the mask is 0
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        return images * masks + mean * (1.0 - masks)

    def weights_from_scores(self, scores, selected, constant):
        return tf.where(selected & ~constant, scores, 0.0)
```
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from keras_cam.methods.base import (
    BaseCAM,
    compile_fn,
    eigen_smoothing,
    finite_rows,
    place_maps,
    spatial_dims,
)
from keras_cam.surgery import Head
from keras_cam.targets import TOP_PREDICTION, ScoreFn, explained_classes, target_scores

MEMORY_BUDGET_BYTES = 256 * 2**20
"""Bound on one chunk's perturbed inputs and activations when `batch_size=None`."""

MAX_AUTO_BATCH_SIZE = 128
"""Largest automatic chunk: bigger chunks no longer speed a forward pass up."""

_UNKNOWN_ACTIVATIONS_PER_PIXEL = 64.0
"""Activation estimate for models whose input size is only known at call time."""

_PROGRESS_AFTER_SECONDS = 2.0
"""A progress bar is shown when the stream is expected to take longer than this."""


@dataclasses.dataclass(frozen=True)
class PerturbationStats:
    """What the last call of a perturbation method computed (`cam.last_stats`).

    Attributes:
        images: images explained.
        channels: channels `K` of the explained layer.
        selected: (image, channel) pairs considered: `images * K`, or `images * k` with
            `max_channels=k`.
        skipped: selected pairs whose channel is constant over the map; they needed no
            forward pass.
        masked_passes: (image, channel) pairs actually run (`selected - skipped`, or
            `selected` with `skip_constant=False`); each is `perturbations` forward passes.
        baseline_passes: inputs run to score the skipped constant channels (the blank input
            of Score-CAM's softmax weighting: 1), else 0.
        batch_size: (image, channel) pairs per forward pass (chunk size).
        chunks: compiled forward calls the stream took.
        seconds: wall time of the passes: the first pass, the masked-pass stream and the
            weighted sum (the whole `explain_batch`).
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


class PerturbationCAM(BaseCAM):
    """Base class of the methods weighting channels by the scores of perturbed inputs.

    For each image and each selected channel `k` of the explained layer, the channel is placed
    on the input grid like a map (bilinear) and min-max normalized to a mask `H^k` in [0, 1];
    `perturb` turns the image and the mask into `perturbations` inputs, which the model scores
    (as the head is read, `keras_cam.surgery.read_head`: probabilities for a classifier, the raw
    output for a raw-score head); their mean target score is `s_k`, and `weights_from_scores`
    turns the `s_k` into channel weights `w_k` for `ReLU(sum_k w_k A^k)`.

    A channel constant over the map has no mask to normalize (its mask is all zeros): with
    `skip_constant=True` it needs no masked pass, and when `needs_constant_scores()` its score
    is that of `blank_inputs` (one shared pass for Score-CAM's blank image).

    Perturbed inputs of all images form one stream of chunks of `batch_size` (image, channel)
    pairs; each chunk is perturbed and run by one compiled function, so at most
    `batch_size * perturbations` perturbed copies exist at a time. With `batch_size=None` the
    chunk holds `floor(256 MiB / (4 * H * W * (C + 1 + 2 * a)) / perturbations)` pairs (between 1
    and 128), where `H x W x C` is the input size and `a` the model's largest layer output per
    input pixel (an input copy, its mask and two live activations per perturbed input).

    Targets: `None`, an int or one int per image, as everywhere. A callable target is applied
    to the **scores** (probabilities, or raw outputs) `(n, num_classes)` of each chunk of
    perturbed inputs and must return one score per row, computed from that row alone.

    A subclass defines `perturb` and `weights_from_scores`, and may set `perturbations`,
    `default_max_channels`, `needs_constant_scores` and `blank_inputs`.

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported). It is
            not modified.
        layer: the layer to explain: a name, a layer object, or `None` for the automatic
            choice. Defaults to `None`.
        batch_size: (image, channel) pairs per forward pass, at least 1, or `None` for the
            memory rule above. Defaults to `None`.
        max_channels: keep only the `k` channels of largest variance per image (as Faster
            Score-CAM does), `1 <= k <= K` channels of the layer; `None` keeps all (or the
            class's `default_max_channels`). Defaults to `None`.
        skip_constant: skip the forward passes of constant channels, whose outcome is known.
            Turning it off only costs time; it exists to verify that. Defaults to `True`.
        verbose: 0 (silent), 1 (progress bar) or 2 (one line at the end); a `keras.utils.
            Progbar` is shown only when the stream is expected to take more than 2 seconds.
            Defaults to `1`.
        layer_call: which call of `layer` to explain when the model makes several (see
            `keras_cam.BaseCAM`). Defaults to `None`.
        head: how to read the model's output, hence what the perturbed inputs are scored
            with: `None` for automatic, or one of `keras_cam.surgery.HEADS` (see
            `keras_cam.BaseCAM`). Defaults to `None`.
        score: what a method that scores the layers after the explained one reads
            (`pair_scores` overridden, Ablation-CAM): `"logit"` or `"probability"` (see
            `keras_cam.BaseCAM`); the default `pair_scores` always reads the head's scores.
            Defaults to `"logit"`.
        output: the output to explain of a model with several (see `keras_cam.BaseCAM`).
            Defaults to `None`.
        input: the explained input of a model with several (see `keras_cam.BaseCAM`); only
            it is perturbed, the other inputs reach the model unchanged. Defaults to `None`.
        token_grid: the patch grid of a token layer (see `keras_cam.BaseCAM`). Defaults to
            `None`.

    Attributes:
        last_stats: a `PerturbationStats` describing the last call (passes run, channels
            skipped and `skipped_fraction`, chunking, time), or `None` before the first call.

    Raises:
        ValueError: at construction: `batch_size < 1`, `max_channels` outside `[1, K]`, an
            unknown `verbose`.

    Example:
    ```python
    class MaskedCAM(PerturbationCAM):          # Score-CAM with the reference weighting
        def perturb(self, images, masks):
            return images * masks

        def weights_from_scores(self, scores, selected, constant):
            return tf.where(selected & ~constant, scores, 0.0)

    maps = MaskedCAM(model, batch_size=32)(images)
    ```
    """

    requires_gradients = False
    default_max_channels: ClassVar[int | None] = None
    """Channels kept when `max_channels=None` (`None`: all); capped at the layer's count."""

    perturbations: ClassVar[int] = 1
    """Perturbed inputs `perturb` makes per (image, channel) pair; their scores are averaged."""

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        batch_size: int | None = None,
        max_channels: int | None = None,
        skip_constant: bool = True,
        verbose: int = 1,
        layer_call: int | None = None,
        head: str | Head | None = None,
        output: int | str | None = None,
        input: int | str | None = None,
        token_grid: tuple[int, int] | None = None,
        score: str = "logit",
    ) -> None:
        super().__init__(
            model,
            layer,
            score=score,
            layer_call=layer_call,
            head=head,
            verbose=verbose,
            output=output,
            input=input,
            token_grid=token_grid,
        )
        sub_model = self._cam.model
        feature_shape = tuple(sub_model.outputs[0].shape[1:])
        self.num_channels: int = int(feature_shape[-1])
        if max_channels is None and self.default_max_channels is not None:
            max_channels = min(self.default_max_channels, self.num_channels)
        self.batch_size = batch_size
        self.max_channels = max_channels
        self._check_settings()
        self.skip_constant = bool(skip_constant)
        self.last_stats: PerturbationStats | None = None
        # The perturbed passes need only the scores: a second Functional model over the same
        # graph (shared weights) skips the work of returning the feature maps.
        self._scores = keras.Model(
            sub_model.input, sub_model.outputs[2], name=f"{sub_model.name}_scores"
        )
        self._activations_per_pixel = _activations_per_pixel(
            sub_model, [self._cam.input_shape[axis - 1] for axis in self._cam.spatial_axes]
        )
        self._image_spec = tf.TensorSpec((None, *self._cam.input_shape), tf.float32)
        self._feature_spec = tf.TensorSpec((None, *feature_shape), tf.float32)
        self._class_streams: dict[bool, tuple[Any, Any, Any]] = {
            eigen_smooth: self._compile_stream(None, eigen_smooth) for eigen_smooth in (False, True)
        }
        """The compiled functions of class targets by `eigen_smooth` (traced at first use)."""

    # ------------------------------------------------------------------ method hooks
    def perturb(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """The perturbed inputs of (image, channel) pairs (traced inside a compiled function).

        Args:
            images: float32 `(n, *input_shape)`, the image of each pair, in the model's layout.
            masks: float32 channel masks in [0, 1] placed on the input grid, broadcastable to
                `images`: `(n, H, W, 1)` (channels_last) or `(n, 1, H, W)` (channels_first);
                `(n, T, 1)` for signals, `(n, D, H, W, 1)` for volumes.
                A constant channel's mask is all zeros.

        Returns:
            float32 `(perturbations * n, *input_shape)`: perturbation-major (the `n` inputs of
            the first perturbation, then those of the second, ...).
        """
        raise NotImplementedError

    def weights_from_scores(
        self, scores: tf.Tensor, selected: tf.Tensor, constant: tf.Tensor
    ) -> tf.Tensor:
        """Channel weights from the perturbed inputs' scores (traced inside a compiled function).

        Args:
            scores: float32 `(B, K)`, the mean target score `s_k` of each image's perturbed
                inputs for channel `k`; for constant channels the score of `blank_inputs` when
                `needs_constant_scores()`, else 0; 0 for channels not selected.
            selected: bool `(B, K)`, the channels taking part (all, or the top-k by variance).
            constant: bool `(B, K)`, the channels constant over the map.

        Returns:
            float32 weights `(B, K)`.
        """
        raise NotImplementedError

    def pair_scores(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        maps: tf.Tensor,
        pairs: tf.Tensor,
        classes: tf.Tensor,
        placement: tf.Tensor,
        score_fn: ScoreFn | None,
    ) -> tf.Tensor:
        """Scores of a chunk of (image, channel) pairs (traced inside a compiled function).

        Defaults to: each pair's channel made a mask on the input grid, the image perturbed
        with it (`perturb`) and the perturbed inputs scored by the whole model (mean over the
        `perturbations`). Ablation-CAM overrides it to run only the layers after the
        explained one.

        Args:
            images: float32 `(B, *input_shape)`, the batch.
            others: the model's other inputs, one row per image (empty for a single input).
            maps: float32 `(B, K, *cells)`, every image's feature maps, channel-major.
            pairs: int32 `(n, 2)`, `(image, channel)` of each pair.
            classes: int32 `(n,)`, the explained class of each pair's image.
            placement: float32 `(n, 4)`, where the maps sit on the input (see `place_maps`).
            score_fn: the callable target, or `None` to score `classes`.

        Returns:
            float32 `(n,)`, the score `s_k` of each pair.
        """
        size = tf.gather(tf.shape(images), self._cam.spatial_axes)
        masks = self._masks(tf.gather_nd(maps, pairs), size, placement)
        inputs = self.perturb(tf.gather(images, pairs[:, 0]), masks)
        return self._mean_scores(inputs, others, pairs[:, 0], classes, score_fn)

    def known_channels(self, flat: tf.Tensor) -> tf.Tensor:
        """Channels whose pass need not run: bool `(B, K)` from the flat maps `(B, K, h * w)`.

        Defaults to the channels constant over the map (their mask is all zeros, so their
        outcome is known: `blank_inputs`). They are reported as `constant` to
        `weights_from_scores` and skipped when `skip_constant=True`.
        """
        return tf.reduce_max(flat, axis=-1) == tf.reduce_min(flat, axis=-1)

    def reference_scores(
        self,
        features: tf.Tensor,
        classes: tf.Tensor,
        score_fn: ScoreFn | None,
        image_index: tf.Tensor,
    ) -> tf.Tensor:
        """The score the channel scores are related to, one per image (traced inside a compiled
        function, with the first pass).

        Defaults to zeros (`relative_scores` does not read it); Ablation-CAM returns the
        score of the unperturbed features.

        Args:
            features: float32 `(B, *cells, K)`, the feature maps.
            classes: int32 `(B,)`, the explained class of each image.
            score_fn: the callable target, or `None` to score `classes`.
            image_index: int32 `(B,)`, each image's row in the call's batch.

        Returns:
            float32 `(B,)`.
        """
        return tf.zeros(tf.shape(classes), tf.float32)

    def relative_scores(self, scores: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
        """The scores `weights_from_scores` receives, from the streamed ones (traced inside a
        compiled function).

        Defaults to the streamed scores as they are; Ablation-CAM relates them to the score
        of the unperturbed input (`reference_scores`).

        Args:
            scores: float32 `(B, K)`, the streamed (and baseline) scores.
            reference: float32 `(B,)`, the `reference_scores` of each image.

        Returns:
            float32 `(B, K)`.
        """
        return scores

    def needs_constant_scores(self) -> bool:
        """Whether `weights_from_scores` reads the scores of skipped constant channels.

        When it does, they are computed from `blank_inputs`. Defaults to `True` (safe: a
        subclass that ignores them may return `False` to save the passes).
        """
        return True

    def blank_inputs(self, images: tf.Tensor) -> tf.Tensor:
        """The perturbed inputs of a constant channel (its mask is all zeros).

        Args:
            images: float32 `(B, *input_shape)`.

        Returns:
            float32 `(perturbations * m, *input_shape)`, perturbation-major, with `m = B` (one
            per image) or `m = 1` (one shared by every image). Defaults to `perturb` with
            all-zero masks (`m = B`).
        """
        channel_axis = 1 if self._cam.data_format == "channels_first" else -1
        zeros = tf.zeros_like(tf.reduce_sum(images, axis=channel_axis, keepdims=True))
        return self.perturb(images, zeros)

    # ------------------------------------------------------------------ the engine
    def explain_batch(
        self,
        images: tf.Tensor,
        targets: np.ndarray | ScoreFn,
        others: tuple[tf.Tensor, ...] = (),
    ) -> tf.Tensor:
        """Raw `ReLU(sum_k w_k A^k)` maps at the layer's resolution, `(B, h, w)`.

        Only `images` are perturbed; `others` (the model's other inputs, one row per image)
        reach the model unchanged with each perturbed copy of their image."""
        self._check_settings()
        score_fn = targets if callable(targets) else None
        first_fn, begin_fn, step_fn = self._stream(score_fn)
        rows = int(images.shape[0])
        # A callable scores the outputs itself: the classes are then unused.
        classes = np.asarray(
            np.full(rows, TOP_PREDICTION) if score_fn is not None else targets, np.int32
        )
        batch_size = self.batch_size or self._auto_batch_size(images)
        placement = np.asarray(self._cam.placement(*self.image_size(images)), np.float32)

        start_time = time.perf_counter()
        if rows <= self.images_per_pass:  # steps 1-2 and the first chunk in one call
            features, classes, reference, scores, maps, stats = begin_fn(
                images, others, classes, self._plan(0, batch_size), placement
            )
        else:
            features, classes, reference = self._first_pass_in_parts(
                first_fn, images, others, classes
            )
            zeros = np.zeros((rows, self.num_channels), np.float32)
            scores, maps, stats = step_fn(
                images, others, features, classes, reference, zeros, self._plan(0, batch_size),
                placement,
            )
        count, selected, skipped, baseline_passes = (int(n) for n in stats.numpy())
        progress = None
        for start in range(batch_size, count, batch_size):
            progress = self._progress(progress, start, count, start_time)
            scores, maps, stats = step_fn(
                images, others, features, classes, reference, scores,
                self._plan(start, batch_size), placement,
            )
        if progress is not None:
            progress.update(count)
        if count > batch_size:  # the last chunk ran the baseline passes
            baseline_passes = int(stats.numpy()[3])

        self.last_stats = PerturbationStats(
            images=rows,
            channels=self.num_channels,
            selected=selected,
            skipped=skipped,
            masked_passes=count,
            baseline_passes=baseline_passes,
            batch_size=batch_size,
            chunks=math.ceil(count / batch_size),
            seconds=time.perf_counter() - start_time,
        )
        return maps

    # -------------------------------------------------------------- internals
    def _check_settings(self) -> None:
        """Refuses a `batch_size` or `max_channels` the stream cannot run (checked at
        construction and at each call: both are read per call, so they may be changed)."""
        batch_size, max_channels = self.batch_size, self.max_channels
        if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
            raise ValueError(
                f"`batch_size` must be an int >= 1 (masked inputs per forward pass) or None to "
                f"choose it from a memory budget; received {batch_size!r}."
            )
        if max_channels is not None and (
            not _is_int(max_channels) or not 1 <= max_channels <= self.num_channels
        ):
            raise ValueError(
                f"`max_channels` must be an int from 1 to {self.num_channels} (the channel count "
                f"of layer {self.layer.name!r}), or None for all channels; received "
                f"{max_channels!r}."
            )

    def _plan(self, start: int, batch_size: int) -> np.ndarray:
        """int32 `(4,)`: the chunk's first pair, the chunk size, the channels kept per image and
        whether constant channels are skipped (read at each call, never traced in)."""
        kept = self.max_channels or self.num_channels
        return np.array([start, batch_size, kept, self.skip_constant], np.int32)

    def _first_pass_in_parts(
        self, first_fn: Any, images: tf.Tensor, others: tuple[tf.Tensor, ...], classes: np.ndarray
    ) -> tuple[tf.Tensor, ...]:
        """Step 1 for a batch of more than `images_per_pass` images, in parts of that many."""
        step = self.images_per_pass
        parts = [
            first_fn(
                images[start : start + step],
                tuple(o[start : start + step] for o in others),
                classes[start : start + step],
                start,
            )
            for start in range(0, int(images.shape[0]), step)
        ]
        return tuple(tf.concat(part, axis=0) for part in zip(*parts))

    def _first_pass(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        targets: tf.Tensor,
        offset: tf.Tensor,
        score_fn: ScoreFn | None,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Step 1 (traced): features `(n, *cells, K)`, each image's class (top-1 resolved) and
        `reference_scores`, for the images from row `offset` of the call's batch."""
        features, _, outputs = self._forward(images, others)
        features = tf.cast(features, tf.float32)
        # An image whose model output is not finite gets NaN features, so its map is NaN
        # (`_finish`) and refused: never a map of a class read from NaN.
        finite = finite_rows(tf.cast(outputs, tf.float32))
        features = tf.where(_rows_like(finite, features), features, float("nan"))
        # A callable's classes are unused (and `outputs` per position for a segmentation head).
        classes = targets if score_fn is not None else explained_classes(targets, outputs)
        index = offset + tf.range(tf.shape(classes)[0])
        return features, classes, self.reference_scores(features, classes, score_fn, index)

    def _step(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        features: tf.Tensor,
        classes: tf.Tensor,
        reference: tf.Tensor,
        scores: tf.Tensor,
        plan: tf.Tensor,
        placement: tf.Tensor,
        score_fn: ScoreFn | None,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Steps 2-4 for the chunk of pairs `plan` names (traced).

        Returns:
            The scores `(B, K)` with the chunk's written in; the maps `(B, *cells)` when the
            chunk is the stream's last (else zeros); int32 `(4,)`: the pairs streamed, the
            pairs selected, the selected pairs skipped, the baseline passes run.
        """
        start, batch_size, kept, skip_constant = tf.unstack(plan)
        maps, selected, constant = self._channels(features, kept)
        run = selected & ~(constant & tf.cast(skip_constant, tf.bool))
        pairs = tf.cast(tf.where(run), tf.int32)  # image-major: one stream across images
        count = tf.shape(pairs)[0]
        chunk = pairs[start : start + batch_size]
        chunk_scores = tf.cond(
            tf.size(chunk) > 0,
            lambda: self.pair_scores(
                images, others, maps, chunk, tf.gather(classes, chunk[:, 0]), placement, score_fn
            ),
            lambda: tf.zeros([0], tf.float32),
        )
        scores = tf.tensor_scatter_nd_update(scores, chunk, chunk_scores)
        skipped = selected & ~run
        result, baseline_passes = tf.cond(
            start + batch_size >= count,
            lambda: self._finish(
                images, others, features, classes, reference, scores,
                (selected, constant, skipped), score_fn,
            ),
            lambda: (tf.zeros(tf.shape(features)[:-1], tf.float32), tf.constant(0, tf.int32)),
        )
        counted = [tf.reduce_sum(tf.cast(flags, tf.int32)) for flags in (selected, skipped)]
        return scores, result, tf.stack([count, *counted, baseline_passes])

    def _channels(
        self, features: tf.Tensor, kept: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Channel-major maps `(B, K, *cells)` (one gather per chunk picks a channel), the
        selected channels (the `kept` of largest variance per image, the lower index first
        among equals) and the known ones (`known_channels`), bool `(B, K)`."""
        cells = spatial_dims(features)
        maps = tf.transpose(features, (0, len(cells) + 1, *cells))
        flat = tf.reshape(maps, tf.concat([tf.shape(maps)[:2], [-1]], axis=0))
        top = tf.math.top_k(tf.math.reduce_variance(flat, axis=-1), kept).indices
        selected = tf.reduce_max(tf.one_hot(top, self.num_channels), axis=1) > 0.0
        return maps, selected, self.known_channels(flat)

    def _finish(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        features: tf.Tensor,
        classes: tf.Tensor,
        reference: tf.Tensor,
        scores: tf.Tensor,
        flags: tuple[tf.Tensor, tf.Tensor, tf.Tensor],
        score_fn: ScoreFn | None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Step 4 (traced): the maps `(B, *cells)` from all scores, and the baseline passes run
        for the skipped constant channels (`flags`: selected, constant, skipped)."""
        selected, constant, skipped = flags
        runs = tf.constant(0, tf.int32)
        if self.needs_constant_scores():
            baseline, runs = tf.cond(
                tf.reduce_any(skipped),
                lambda: self._baseline_scores(images, others, classes, score_fn),
                lambda: (tf.zeros(tf.shape(classes), tf.float32), tf.constant(0, tf.int32)),
            )
            scores = tf.where(skipped, baseline[:, tf.newaxis], scores)
        weights = self.weights_from_scores(
            self.relative_scores(scores, reference), selected, constant
        )
        maps = self.compute_cam(features, weights)
        # Non-finite features, reference or weights (a model output NaN for an image or for
        # some of its perturbed inputs) make the image's map NaN, which `__call__` refuses;
        # the ReLU and the weighting may otherwise hide them in a plausible map.
        finite = finite_rows(features) & finite_rows(weights) & tf.math.is_finite(reference)
        return tf.where(_rows_like(finite, maps), maps, float("nan")), runs

    def _baseline_scores(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        classes: tf.Tensor,
        score_fn: ScoreFn | None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The constant channels' score (`blank_inputs`) of each image `(B,)`, and the passes
        run (traced)."""
        inputs = self.blank_inputs(images)
        image_index = tf.range(tf.shape(classes)[0])
        scores = self._mean_scores(inputs, others, image_index, classes, score_fn)
        # A blank shared by every image is run once per image with its other inputs.
        runs = tf.shape(image_index)[0] * self.perturbations if others else tf.shape(inputs)[0]
        return scores, runs

    def _auto_batch_size(self, images: tf.Tensor) -> int:
        """Chunk size from `MEMORY_BUDGET_BYTES` (see the class docstring for the rule)."""
        pixels = math.prod(self.image_size(images))
        channels = int(images.shape[1:].num_elements()) // pixels
        per_input = 4 * pixels * (channels + 1 + 2 * self._activations_per_pixel)
        pairs = MEMORY_BUDGET_BYTES // (per_input * self.perturbations)
        return int(np.clip(pairs, 1, MAX_AUTO_BATCH_SIZE))

    def _progress(
        self, progress: Any, done: int, count: int, start_time: float
    ) -> keras.utils.Progbar | None:
        """The progress bar after `done` of `count` pairs: started once the stream is expected
        to take more than `_PROGRESS_AFTER_SECONDS` (with `verbose`), then updated."""
        if progress is None and self.verbose:
            expected = (time.perf_counter() - start_time) * count / done
            if expected > _PROGRESS_AFTER_SECONDS:
                progress = keras.utils.Progbar(count, verbose=self.verbose, unit_name="pass")
        if progress is not None:
            progress.update(done)
        return progress

    def _masks(self, maps: tf.Tensor, size: tf.Tensor, placement: tf.Tensor) -> tf.Tensor:
        """`(n, *cells)` channel maps -> masks in [0, 1] on the input grid, shaped like
        `perturb` expects them (a channel axis of size 1 added)."""
        masks = place_maps(maps, size, placement)
        axes = tuple(range(1, masks.shape.rank))
        low = tf.reduce_min(masks, axis=axes, keepdims=True)
        high = tf.reduce_max(masks, axis=axes, keepdims=True)
        masks = tf.math.divide_no_nan(masks - low, high - low)
        return tf.expand_dims(masks, 1 if self._cam.data_format == "channels_first" else -1)

    def _mean_scores(
        self,
        inputs: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        image_index: tf.Tensor,
        classes: tf.Tensor,
        score_fn: ScoreFn | None,
    ) -> tf.Tensor:
        """Mean target score over the `perturbations` of each of `n` rows: `(n,)`.

        `inputs` holds `perturbations * m` perturbation-major inputs, `m` either `n` or 1
        (one input shared by every row); row `r` belongs to image `image_index[r]`, whose
        other inputs (`others`, one row per image) go with each of its perturbed copies.
        """
        rows = tf.shape(classes)[0]
        if others:  # each row's copies go with its own image's other inputs
            shape = tf.shape(inputs)
            inputs = tf.reshape(inputs, tf.concat([[self.perturbations, -1], shape[1:]], 0))
            inputs = tf.broadcast_to(inputs, tf.concat([[self.perturbations, rows], shape[1:]], 0))
            inputs = [
                tf.reshape(inputs, tf.concat([[-1], shape[1:]], 0)),
                *(_tile(tf.gather(other, image_index), self.perturbations) for other in others),
            ]
        outputs = self._scores(inputs, training=False)
        width = tf.shape(outputs)[1:]
        outputs = tf.reshape(outputs, tf.concat([[self.perturbations, -1], width], 0))
        outputs = tf.broadcast_to(outputs, tf.concat([[self.perturbations, rows], width], 0))
        outputs = tf.reshape(outputs, tf.concat([[self.perturbations * rows], width], 0))
        scores = target_scores(
            outputs,
            tf.tile(classes, [self.perturbations]),
            score_fn,
            tf.tile(image_index, [self.perturbations]),
        )
        return tf.reduce_mean(tf.reshape(scores, [self.perturbations, rows]), axis=0)

    def _stream(self, score_fn: ScoreFn | None) -> tuple[Any, Any, Any]:
        """The compiled functions (`_compile_stream`) for class targets, or for one callable,
        with this thread's `eigen_smooth` (`eigen_smoothing`).

        Those of class targets are compiled once per explainer and `eigen_smooth`, so a plain
        call and a smoothed one never retrace each other. A callable is read when it is
        traced (its attributes and closure variables become constants), so its functions are
        compiled once per call (`_call_compiled`: shared by the call's `aug_smooth` views) and
        never outlive it: a `Target` whose fields changed
        since the last call is explained as it is now. Target objects need not be hashable.
        """
        eigen_smooth = eigen_smoothing(self)
        if score_fn is None:
            return self._class_streams[eigen_smooth]
        return self._call_compiled(
            ("stream", eigen_smooth), score_fn,
            lambda: self._compile_stream(score_fn, eigen_smooth),
        )

    def _compile_stream(
        self, score_fn: ScoreFn | None, eigen_smooth: bool
    ) -> tuple[Any, Any, Any]:
        """Compiles the functions scoring with `score_fn` (`None`: classes): step 1 on a part of
        the batch, steps 1-4 up to the first chunk, and steps 2-4 of a further chunk; the maps
        of the last step are traced with `eigen_smooth` (see `BaseCAM.compute_cam`)."""

        def first(
            images: tf.Tensor, others: tuple[tf.Tensor, ...], targets: tf.Tensor, offset: tf.Tensor
        ) -> tuple[tf.Tensor, ...]:
            return self._first_pass(images, others, targets, offset, score_fn)

        def begin(
            images: tf.Tensor,
            others: tuple[tf.Tensor, ...],
            targets: tf.Tensor,
            plan: tf.Tensor,
            placement: tf.Tensor,
        ) -> tuple[tf.Tensor, ...]:
            features, classes, reference = self._first_pass(images, others, targets, 0, score_fn)
            scores = tf.zeros([tf.shape(images)[0], self.num_channels], tf.float32)
            with self._smoothing(eigen_smooth):
                return (features, classes, reference) + self._step(
                    images, others, features, classes, reference, scores, plan, placement, score_fn
                )

        def step(
            images: tf.Tensor,
            others: tuple[tf.Tensor, ...],
            features: tf.Tensor,
            classes: tf.Tensor,
            reference: tf.Tensor,
            scores: tf.Tensor,
            plan: tf.Tensor,
            placement: tf.Tensor,
        ) -> tuple[tf.Tensor, ...]:
            with self._smoothing(eigen_smooth):
                return self._step(
                    images, others, features, classes, reference, scores, plan, placement, score_fn
                )

        rows = tf.TensorSpec((None,), tf.int32)
        plan = tf.TensorSpec((4,), tf.int32)
        placement = tf.TensorSpec((len(self._cam.spatial_axes), 4), tf.float32)
        inputs = [self._image_spec, self._others_spec]
        return (
            compile_fn(first, [*inputs, rows, tf.TensorSpec((), tf.int32)]),
            compile_fn(begin, [*inputs, rows, plan, placement]),
            compile_fn(
                step,
                [
                    *inputs,
                    self._feature_spec,
                    rows,
                    tf.TensorSpec((None,), tf.float32),
                    tf.TensorSpec((None, self.num_channels), tf.float32),
                    plan,
                    placement,
                ],
            ),
        )


def _rows_like(flags: tf.Tensor, tensor: tf.Tensor) -> tf.Tensor:
    """Per-row `flags` `(B,)` reshaped to broadcast against `tensor` `(B, ...)`."""
    return tf.reshape(flags, [-1] + [1] * (tensor.shape.rank - 1))


def _tile(rows: tf.Tensor, times: int) -> tf.Tensor:
    """`rows` repeated `times` times along the batch axis (perturbation-major)."""
    return tf.tile(rows, [times] + [1] * (len(rows.shape) - 1))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _activations_per_pixel(model: keras.Model, sizes: list[int | None]) -> float:
    """The largest layer output of `model`, in elements per input pixel of spatial `sizes`
    (`(H, W)` for images, `(T,)` signals, `(D, H, W)` volumes)."""
    if None in sizes:
        return _UNKNOWN_ACTIVATIONS_PER_PIXEL
    largest = max(
        math.prod(tensor.shape[1:])
        for layer in model.layers
        for tensor in keras.tree.flatten(layer.output)
        if None not in tensor.shape[1:]
    )
    return largest / math.prod(sizes)
