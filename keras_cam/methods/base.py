"""BaseCAM: the machinery every class activation map method shares.

The flow is one-way: images -> input checks -> sub-model `(features, logits, probabilities)` ->
channel weights (the only thing a method defines) -> `ReLU(sum_k w_k A^k)` -> upsample to the
input size -> per-image min-max normalization -> NumPy. Everything runs in TensorFlow inside
`tf.function`s with fixed input signatures (no retracing per call or per batch size); NumPy
appears once, at the public boundary.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from keras_cam.surgery import CamModel, Head, build_cam_model, check_input_values
from keras_cam.targets import (
    TOP_PREDICTION,
    ScoreFn,
    Targets,
    explained_classes,
    resolve_targets,
    target_scores,
)

_SCORES = ("logit", "probability")
_VERBOSE = (0, 1, 2)


def compile_fn(fn: Callable[..., Any], input_signature: list[tf.TensorSpec]) -> Any:
    """`tf.function(fn, input_signature)`: every compiled function of keras_cam goes through here.

    Each explainer (and each model a metric or the callback scores) compiles its own functions
    from the same Python code, which TensorFlow's "function created in a loop" heuristic counts
    as retracing once a few of them exist (explainers per layer, per fold, per `evaluate` call).
    The fixed signature already rules real retracing out, so that warning is switched off.

    Args:
        fn: the Python function to compile.
        input_signature: one `tf.TensorSpec` per argument of `fn`.

    Returns:
        The compiled function.

    Example:
    ```python
    square = compile_fn(lambda x: x * x, [tf.TensorSpec((None,), tf.float32)])
    ```
    """
    compiled = tf.function(fn, input_signature=input_signature)
    compiled._omit_frequent_tracing_warning = True
    return compiled


def _axis_weights(cells: tf.Tensor, pixels: tf.Tensor, placement: tf.Tensor) -> tf.Tensor:
    """Bilinear sampling weights `(pixels, cells)` of one axis; rows outside `[lo, hi)` are 0."""
    offset, scale, lo, hi = tf.unstack(placement)
    count = tf.cast(cells, tf.float32)
    stretch = tf.equal(scale, 0.0)
    scale = tf.where(stretch, (hi - lo) / count, scale)
    offset = tf.where(stretch, lo, offset)
    centres = tf.range(tf.cast(pixels, tf.float32)) + 0.5
    position = tf.clip_by_value((centres - offset) / scale - 0.5, 0.0, count - 1.0)
    low = tf.floor(position)
    fraction = (position - low)[:, tf.newaxis]
    high = tf.minimum(low + 1.0, count - 1.0)
    weights = tf.one_hot(tf.cast(low, tf.int32), cells) * (1.0 - fraction) + tf.one_hot(
        tf.cast(high, tf.int32), cells
    ) * fraction
    inside = tf.logical_and(centres >= lo, centres < hi)
    return weights * tf.cast(inside, tf.float32)[:, tf.newaxis]


def place_maps(maps: tf.Tensor, size: tf.Tensor, placement: tf.Tensor) -> tf.Tensor:
    """Places conv-resolution maps on the input grid: `(B, h, w)` -> `(B, H, W)`.

    Each input pixel's centre is mapped through the placement's affine map into the feature
    grid and sampled bilinearly, clamped at the grid's edges; pixels outside the input region
    the features come from get 0. With offset 0 and scale `H / h` this is
    `tf.image.resize(..., "bilinear")` (half-pixel centres).

    Args:
        maps: float32 `(B, h, w)`.
        size: int32 `(2,)`: the input's `(H, W)`.
        placement: float32 `(2, 4)`: `(offset, scale, lo, hi)` of height and width in input
            pixels (see `keras_cam.surgery.CamModel.placement`): feature cell `j` covers input
            `[offset + scale * j, offset + scale * (j + 1))`, a negative scale mirrors the axis,
            and scale 0 stretches the map over `[lo, hi)`.

    Returns:
        float32 `(B, H, W)`.

    Example:
    ```python
    place_maps(maps, tf.constant([64, 64]), cam._cam.placement(64, 64))
    ```
    """
    shape = tf.shape(maps)
    rows = _axis_weights(shape[1], size[0], placement[0])
    columns = _axis_weights(shape[2], size[1], placement[1])
    return tf.einsum("yh,bhw,xw->byx", rows, maps, columns)


def _postprocess(
    maps: tf.Tensor, size: tf.Tensor, placement: tf.Tensor, upsample: bool, normalize: bool
) -> tf.Tensor:
    if upsample:
        maps = place_maps(maps, size, placement)
    if normalize:
        low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
        high = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
        maps = tf.math.divide_no_nan(maps - low, high - low)
    return maps


_POSTPROCESS_SIGNATURE = [
    tf.TensorSpec((None, None, None), tf.float32),
    tf.TensorSpec((2,), tf.int32),
    tf.TensorSpec((2, 4), tf.float32),
]
_POSTPROCESS = {
    (upsample, normalize): compile_fn(
        functools.partial(_postprocess, upsample=upsample, normalize=normalize),
        _POSTPROCESS_SIGNATURE,
    )
    for upsample in (False, True)
    for normalize in (False, True)
}
"""Placement and normalization, shared by every explainer: `(upsample, normalize) -> fn`."""


class BaseCAM:
    """Base class of all class activation map methods.

    A method overrides `compute_weights` (pure: tensors in, tensors out) and, rarely,
    `compute_cam`. Capabilities are declared as class flags and checked here: methods that
    need no gradient set `requires_gradients = False`, methods that need one class per image
    (CAM) set `supports_callable_targets = False`; methods whose weights need extra forward
    passes (Score-CAM) override `explain_batch`.

    Args:
        model: a single-input Functional or Sequential Keras classifier (nested models such as
            a `keras.applications` base inside a Sequential are supported). It is not
            modified; its weights are shared, so a model that keeps training is explained as
            it is at call time.
        layer: the layer to explain: a name, a layer object, or `None` for the last layer with
            a spatial output (see `keras_cam.find_conv_layer`). Defaults to `None`.
        score: what gradient methods differentiate: `"logit"` (the pre-softmax score; the
            softmax saturates) or `"probability"` (the softmax output). For a raw-score head
            (`head="linear"`) both are the raw output. Defaults to `"logit"`.
        layer_call: which call of `layer` to explain when the model calls it (or a nested
            model holding it) several times, e.g. a backbone run on an image and on its flip
            for test-time augmentation: the index of the call as the refusal message lists
            the calls (Keras' execution order, which need not be the order of the Python
            code). `None` refuses such a layer with that listing. The map of the chosen call
            is placed where that call's features sit on the input (a flipped call's map is
            flipped back). Defaults to `None`.
        head: how the model's output is read: `None` reads it automatically (a softmax or
            sigmoid in any spelling, log_softmax, several linear units as logits, one linear
            unit as a raw score; an unrecognised activation is read like a linear one, with a
            warning), or one of `keras_cam.surgery.HEADS` (`"softmax"`, `"sigmoid"`,
            `"logits"`, `"sigmoid_logits"`, `"linear"`) states it. See
            `keras_cam.surgery.read_head`. Defaults to `None`.
        verbose: progress output of methods that run many passes: 0 (silent), 1 (progress
            bar) or 2 (one line at the end). Every method accepts it, so tools pass it without
            asking; methods with a single pass (the gradient methods, CAM) show nothing.
            Defaults to `0`.

    Attributes:
        layer: the explained layer (`cam.layer.name` is its name).
        num_classes: the number of classes of the model's head (2 for a single-unit binary
            head: class 1 is the positive class, class 0 its complement; 1 for a single raw
            score).
    """

    requires_gradients: ClassVar[bool] = True
    """Whether `compute_weights` receives the gradient of the score w.r.t. the feature maps."""

    supports_callable_targets: ClassVar[bool] = True
    """Whether `targets` may be a score function (a callable, or a `keras_cam.targets.Target`
    that stands for no single class); `False` for methods that need one class per image."""

    display_name: ClassVar[str] = "CAM method"
    """Human-readable name for figures and tables."""

    images_per_pass: ClassVar[int] = 32
    """Images per compiled gradient pass; bounds memory for large batches."""

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        score: str = "logit",
        layer_call: int | None = None,
        head: str | Head | None = None,
        verbose: int = 0,
    ) -> None:
        if score not in _SCORES:
            raise ValueError(f"`score` must be one of {_SCORES}; received {score!r}.")
        if isinstance(verbose, bool) or verbose not in _VERBOSE:
            raise ValueError(f"`verbose` must be 0, 1 or 2; received {verbose!r}.")
        self.model = model
        self.score = score
        self.verbose = int(verbose)
        self._cam: CamModel = build_cam_model(model, layer, layer_call=layer_call, head=head)
        self.layer: keras.layers.Layer = self._cam.layer
        self.num_classes: int = self._cam.num_classes
        image_spec = tf.TensorSpec((None, *self._cam.input_shape), tf.float32)
        self._raw_pass_fn = compile_fn(
            lambda images, class_idx: self._weighted_maps(images, class_idx)[0],
            [image_spec, tf.TensorSpec((None,), tf.int32)],
        )
        self._fused_passes: dict[tuple[bool, bool], Any] = {}
        self._pass_fn = self._fused_pass(True, True)
        self._predict_fn = compile_fn(lambda images: self._forward(images)[2], [image_spec])

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        images: Any,
        targets: Targets = None,
        *,
        upsample: bool = True,
        normalize: bool = True,
    ) -> np.ndarray:
        """Computes one class activation map per image.

        Args:
            images: one image `(H, W, C)` or a batch `(B, H, W, C)`, NumPy or tensor,
                preprocessed the way the model expects.
            targets: `None` (each image's top-1 class), an int (one class for all images), a
                sequence of ints (one class per image: a list, NumPy array, tensor or pandas
                Series, see `keras_cam.targets.class_indices`), a callable
                `f(logits) -> (B,)`, or a target object (`keras_cam.targets.ClassTarget`,
                `TopPredictionTarget`, `BinaryTarget`, a `Target` of your own) or a list of
                class targets, one per image. Defaults to `None`.
            upsample: place the maps on the input's pixels: each pixel samples (bilinearly)
                the features its position maps to through the crops, paddings, strides and
                resizes between the input and the layer, and pixels outside the region the
                features come from are 0 (see `place_maps`). Defaults to `True`; `False`
                returns the conv-resolution maps.
            normalize: min-max normalize each map to [0, 1] (a map with no positive evidence
                is all zeros). Defaults to `True`; `False` returns the raw ReLU'd values.

        Returns:
            float32 NumPy array `(H, W)` for one image, `(B, H, W)` for a batch.

        Raises:
            ValueError: images of the wrong rank, channel count or size, an empty batch,
                non-finite values, or targets out of range / of the wrong length; for a model
                with an integer (or bool) input, images that are not integers in its range; a
                callable target for a method that needs class indices
                (`supports_callable_targets = False`).
        """
        batch, single = self._check_images(images)
        resolved = resolve_targets(targets, int(batch.shape[0]), self.num_classes)
        if callable(resolved) and not self.supports_callable_targets:
            raise ValueError(
                f"{self.display_name} explains one class per image, so `targets` must be None, "
                "a class index, one index per image or class targets (`ClassTarget`); received "
                f"a callable score ({getattr(resolved, '__name__', type(resolved).__name__)}). "
                "Use `keras_cam.GradCAM` for arbitrary differentiable scores."
            )
        maps = self._maps_and_scores(batch, resolved, bool(upsample), bool(normalize))[0]
        return maps[0] if single else maps

    def explain(
        self, images: Any, targets: Targets = None, *, upsample: bool = True,
        normalize: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The maps of `__call__` and the model's scores of each class (those of `predict`).

        For the gradient methods both come from the one compiled pass that computes the maps
        (no second forward pass); for methods that override `explain_batch` (Score-CAM) the
        scores take one more forward pass. Class-index targets only.

        Args:
            images: a batch `(B, H, W, C)` (see `__call__`).
            targets: `None`, a class index or one per image (see `__call__`). Defaults to
                `None`.
            upsample: see `__call__`. Defaults to `True`.
            normalize: see `__call__`. Defaults to `True`.

        Returns:
            `(maps, scores)`: float32 `(B, H, W)` and float32 `(B, num_classes)`.

        Raises:
            ValueError: see `__call__`; a callable target.

        Example:
        ```python
        maps, scores = kc.GradCAM(model).explain(images)
        predicted = scores.argmax(axis=-1)
        ```
        """
        batch, _ = self._check_images(images)
        resolved = resolve_targets(targets, int(batch.shape[0]), self.num_classes)
        if callable(resolved):
            raise ValueError(
                "`explain` takes class targets (None, an int or one per image); for a callable "
                "score call the explainer itself."
            )
        return self._maps_and_scores(batch, resolved, bool(upsample), bool(normalize))

    def _maps_and_scores(
        self, batch: tf.Tensor, resolved: np.ndarray | ScoreFn, upsample: bool, normalize: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Maps (checked finite) and, where the pass computes them, the class scores.

        Class targets of a method that keeps `BaseCAM.explain_batch` run the fused pass
        (maps placed and normalized in the same graph, scores alongside); other methods and
        callable targets run `explain_batch`, then placement and normalization, and `predict`.
        """
        size = self.image_size(batch)
        size_tensor, placement = tf.constant(size, tf.int32), self.placement(*size)
        if callable(resolved) or type(self).explain_batch is not BaseCAM.explain_batch:
            raw = self.explain_batch(batch, resolved)
            postprocess = _POSTPROCESS[upsample, normalize]
            maps = postprocess(raw, size_tensor, placement).numpy()
            scores = None if callable(resolved) else self._scores(batch)
        else:
            pass_fn, class_idx = self._fused_pass(upsample, normalize), tf.constant(resolved)
            outputs = [
                pass_fn(batch[start:stop], class_idx[start:stop], size_tensor, placement)
                for start, stop in self._chunks(int(batch.shape[0]))
            ]
            maps, scores = (tf.concat(list(part), axis=0).numpy() for part in zip(*outputs))
        if not np.isfinite(maps).all():
            bad = int(np.flatnonzero(~np.isfinite(maps).reshape(len(maps), -1).all(axis=1))[0])
            raise ValueError(
                f"The model produced non-finite values while explaining image {bad}; check its "
                "weights and the preprocessing of the input (a heatmap is never returned as NaN)."
            )
        return maps, scores

    def predict(self, images: Any) -> np.ndarray:
        """The model's scores of each class, as the explainer reads the head.

        One compiled forward pass of the sub-model the explainer already has (the model is not
        traced again): probabilities for a classifier (a softmax or sigmoid output, or logits
        through their softmax; `[1 - p, p]` for a single-unit binary head) and the raw output
        for a `"linear"` head, the scores Score-CAM and the metrics use.

        Args:
            images: one image or a batch, as `__call__` takes them (checked the same way).

        Returns:
            float32 NumPy `(num_classes,)` for one image, `(B, num_classes)` for a batch.

        Raises:
            ValueError: images the model does not take (see `__call__`).

        Example:
        ```python
        cam = kc.GradCAM(model)
        top = cam.predict(images).argmax(axis=-1)
        maps = cam(images, targets=top)
        ```
        """
        batch, single = self._check_images(images)
        scores = self._scores(batch)
        return scores[0] if single else scores

    def _scores(self, batch: tf.Tensor) -> np.ndarray:
        """`predict` of a checked batch."""
        chunks = [
            self._predict_fn(batch[start:stop]).numpy()
            for start, stop in self._chunks(int(batch.shape[0]))
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _chunks(self, count: int) -> list[tuple[int, int]]:
        """`(start, stop)` of the chunks of `images_per_pass` images of a batch of `count`."""
        return [
            (start, min(start + self.images_per_pass, count))
            for start in range(0, count, self.images_per_pass)
        ]

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """The model's input shape without the batch axis, in its own layout, e.g.
        `(224, 224, 3)` (`(3, 224, 224)` channels-first); a size may be `None` (any)."""
        return self._cam.input_shape

    @property
    def image_shape(self) -> tuple[int | None, ...]:
        """The model's input as `(height, width, channels)`, whatever its data format."""
        return self._cam.image_shape

    @property
    def data_format(self) -> str:
        """`"channels_last"` or `"channels_first"`: the layout of the images the model takes."""
        return self._cam.data_format

    def image_size(self, batch: tf.Tensor) -> tuple[int, int]:
        """`(H, W)` of a checked batch, whatever the model's data format."""
        return tuple(int(batch.shape[axis]) for axis in self._cam.spatial_axes)

    def placement(self, height: int, width: int) -> tf.Tensor:
        """Where the layer's maps sit on `height x width` inputs: float32 `(2, 4)` for
        `place_maps` (see `keras_cam.surgery.CamModel.placement`)."""
        return tf.constant(self._cam.placement(height, width))

    # ------------------------------------------------------------- method hooks
    def compute_weights(
        self, features: tf.Tensor, grads: tf.Tensor | None, class_idx: tf.Tensor
    ) -> tf.Tensor:
        """Returns the channel weights of each map: `(B, C)`, or `(B, h, w, C)` per position.

        Args:
            features: float32 feature maps `A`, `(B, h, w, C)`.
            grads: float32 `dScore/dA`, same shape, or `None` when `requires_gradients` is False.
            class_idx: int32 `(B,)` explained class of each image (`-1` with a callable target).

        Returns:
            float32 weights, `(B, C)` or `(B, h, w, C)`.
        """
        raise NotImplementedError

    def compute_cam(self, features: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        """Combines feature maps and weights: `ReLU(sum_k w_k A^k)`, shape `(B, h, w)`."""
        if weights.shape.rank == 2:
            weights = weights[:, tf.newaxis, tf.newaxis, :]
        return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))

    def explain_batch(self, images: tf.Tensor, targets: np.ndarray | ScoreFn) -> tf.Tensor:
        """Raw ReLU'd maps at the layer's resolution, `(B, h, w)`, for checked inputs.

        Runs the compiled gradient pass in chunks of `images_per_pass` images.
        """
        if callable(targets):
            pass_fn, class_idx = self._callable_pass(targets), None
        else:
            pass_fn, class_idx = self._raw_pass_fn, tf.constant(targets, tf.int32)
        chunks = []
        for start in range(0, int(images.shape[0]), self.images_per_pass):
            chunk = images[start : start + self.images_per_pass]
            if class_idx is None:
                chunks.append(pass_fn(chunk))
            else:
                chunks.append(pass_fn(chunk, class_idx[start : start + self.images_per_pass]))
        return tf.concat(chunks, axis=0)

    # -------------------------------------------------------------- internals
    def _forward(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        features, logits, probabilities = self._cam.model(images, training=False)
        return features, logits, probabilities

    def _weighted_maps(
        self, images: tf.Tensor, class_idx: tf.Tensor, score_fn: ScoreFn | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Raw maps `(B, h, w)` and the model's class scores `(B, num_classes)`, float32."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            # Watching the input records the whole forward pass even when every weight is
            # frozen; the backward pass still stops at the explained layer.
            tape.watch(images)
            features, logits, probabilities = self._forward(images)
            class_idx = explained_classes(class_idx, logits)
            outputs = logits if self.score == "logit" else probabilities
            scores = target_scores(outputs, class_idx, score_fn)
            # Each image's score depends only on its own features, so one gradient of the
            # sum gives every image its own gradient.
            total_score = tf.reduce_sum(scores)
        grads = None
        if self.requires_gradients:
            grads = tf.cast(tape.gradient(total_score, features), tf.float32)
        features = tf.cast(features, tf.float32)
        weights = self.compute_weights(features, grads, class_idx)
        return self.compute_cam(features, weights), tf.cast(probabilities, tf.float32)

    def _fused_pass(self, upsample: bool, normalize: bool) -> Any:
        """The compiled gradient pass with placement and normalization in the same graph:
        `(images, class_idx, size, placement) -> (maps, scores)`, one per option pair (built
        once; `_pass_fn` is the default pair's)."""
        if (upsample, normalize) not in self._fused_passes:

            def fused(images, class_idx, size, placement):  # type: ignore[no-untyped-def]
                maps, scores = self._weighted_maps(images, class_idx)
                return _postprocess(maps, size, placement, upsample, normalize), scores

            signature = self._raw_pass_fn.input_signature
            self._fused_passes[upsample, normalize] = compile_fn(
                fused, [*signature, *_POSTPROCESS_SIGNATURE[1:]]
            )
        return self._fused_passes[upsample, normalize]

    def _callable_pass(self, score_fn: ScoreFn) -> Any:
        """A compiled pass for a callable target, traced afresh for each call.

        A callable is read when it is traced: its attributes (a `Target`'s fields) and closure
        variables become constants of the compiled pass. Keeping that pass for a later call
        would explain the callable as it was then, not as it is now, so it serves one call.
        """
        def pass_fn(images: tf.Tensor) -> tf.Tensor:
            class_idx = tf.fill(tf.shape(images)[:1], TOP_PREDICTION)
            return self._weighted_maps(images, class_idx, score_fn)[0]

        return compile_fn(pass_fn, [self._raw_pass_fn.input_signature[0]])

    def _check_images(self, images: Any) -> tuple[tf.Tensor, bool]:
        """Validates images against the model's input; returns a float32 batch and `single`."""
        if isinstance(images, (tf.Tensor, tf.Variable)) or keras.ops.is_tensor(images):
            array = images
        else:
            try:
                array = np.asarray(images)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    "`images` must be a NumPy array or tensor of shape (H, W, C) or (B, H, W, C); "
                    f"received {type(images).__name__}."
                ) from error
            if array.dtype == object or not (
                np.issubdtype(array.dtype, np.number) or array.dtype == bool
            ):
                raise TypeError(f"`images` must be numeric; received dtype {array.dtype}.")
        expected = self._cam.input_shape
        channels_first = self._cam.data_format == "channels_first"
        layout = "(C, H, W)" if channels_first else "(H, W, C)"
        shape = tuple(array.shape)
        if len(shape) not in (3, 4):
            raise ValueError(
                f"`images` must be one image {layout} or a batch (B, {layout[1:]}; received "
                f"shape {shape}. The model expects images of shape {expected}."
            )
        single = len(shape) == 3
        if single:
            shape = (1, *shape)
        if shape[0] == 0:
            raise ValueError("`images` is an empty batch (shape[0] == 0); pass at least one image.")
        channel_axis = 1 if channels_first else 3
        channels = expected[channel_axis - 1]
        if channels is not None and shape[channel_axis] != channels:
            raise ValueError(
                f"`images` have {shape[channel_axis]} channel(s) (shape {tuple(array.shape)}, "
                f"{layout}), but the model expects {channels}: its input shape is {expected}."
            )
        height_axis, width_axis = self._cam.spatial_axes
        sizes = (expected[height_axis - 1], expected[width_axis - 1])
        for axis, name, size in zip((height_axis, width_axis), ("height", "width"), sizes):
            if size is not None and shape[axis] != size:
                raise ValueError(
                    f"`images` have {name} {shape[axis]} (shape {tuple(array.shape)}, {layout}), "
                    f"but the model expects {size}: resize them to {sizes[0]}x{sizes[1]} "
                    "(e.g. with tf.image.resize) first."
                )
        batch = tf.reshape(tf.cast(array, tf.float32), shape)
        finite = tf.math.is_finite(tf.reshape(batch, (shape[0], -1)))
        if not bool(tf.reduce_all(finite)):
            bad = int(np.flatnonzero(~tf.reduce_all(finite, axis=1).numpy())[0])
            raise ValueError(
                f"`images` contain NaN or infinite values (first in image {bad}); a class "
                "activation map of such an input is meaningless. Check the preprocessing."
            )
        # A model with an integer input takes integer images (explained as float32).
        check_input_values(batch, self.model.inputs[0].dtype, self.model.name)
        return batch, single
