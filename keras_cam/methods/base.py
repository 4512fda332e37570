"""BaseCAM: the machinery every class activation map method shares.

The flow is one-way: images -> input checks -> sub-model `(features, logits, probabilities)` ->
channel weights (the only thing a method defines) -> `ReLU(sum_k w_k A^k)` -> upsample to the
input size -> per-image min-max normalization -> NumPy. Everything runs in TensorFlow inside
`tf.function`s with fixed input signatures (no retracing per call or per batch size); NumPy
appears once, at the public boundary.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
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

AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (1.0, 1.1, 0.9)
)
"""`aug_smooth`'s test-time augmentations: (horizontal flip, intensity factor) pairs, the
set of pytorch-grad-cam (ttach's `HorizontalFlip` x `Multiply([0.9, 1, 1.1])`)."""


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


def first_component(weighted: tf.Tensor) -> tf.Tensor:
    """Projects each position on the first principal component of its image's channel vectors.

    `eigen_smooth` (pytorch-grad-cam's `get_2d_projection`; Eigen-CAM, Muhammad & Yeasin 2020,
    https://arxiv.org/abs/2008.00299): with `X` the `(h*w, C)` matrix of one image's weighted
    activations `w_k A^k`, each column centred over the positions, and `X = U S V^T` its SVD,
    the map is `X v_1 = s_1 u_1`. A component has no sign of its own (pytorch-grad-cam keeps
    whatever LAPACK returns): it is oriented so that it correlates positively with the summed
    columns, `sum_n (X v_1)_n sum_c X_nc >= 0`, i.e. with the plain map `sum_k w_k A^k`.

    Args:
        weighted: float32 `(B, h, w, C)`.

    Returns:
        float32 `(B, h, w)`, not ReLU'd.

    Example:
    ```python
    first_component(tf.random.normal((2, 7, 9, 16)))   # (2, 7, 9)
    ```
    """
    shape = tf.shape(weighted)
    matrix = tf.reshape(weighted, tf.stack([shape[0], shape[1] * shape[2], shape[3]]))
    centred = matrix - tf.reduce_mean(matrix, axis=1, keepdims=True)
    _, _, right = tf.linalg.svd(centred)
    projection = tf.einsum("bnc,bc->bn", centred, right[:, :, 0])
    agreement = tf.reduce_sum(projection * tf.reduce_sum(centred, axis=-1), axis=-1)
    projection = projection * tf.where(agreement < 0.0, -1.0, 1.0)[:, tf.newaxis]
    return tf.reshape(projection, shape[:3])


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
            a spatial output (see `keras_cam.find_conv_layer`); or a list of them to combine
            several layers (pytorch-grad-cam's multi-layer mode): each layer's map is placed
            on the input grid and min-max normalized, the maps are averaged (then normalized
            again with `normalize=True`). Every other argument applies to each layer.
            Defaults to `None`.
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
        layer: the explained layer (`cam.layer.name` is its name); the first one when
            `layer` is a list.
        layers: every explained layer, `[cam.layer]` for one.
        num_classes: the number of classes of the model's head (2 for a single-unit binary
            head: class 1 is the positive class, class 0 its complement; 1 for a single raw
            score).
    """

    requires_gradients: ClassVar[bool] = True
    """Whether `compute_weights` receives the gradient of the score w.r.t. the feature maps."""

    supports_callable_targets: ClassVar[bool] = True
    """Whether `targets` may be a score function (a callable, or a `keras_cam.targets.Target`
    that stands for no single class); `False` for methods that need one class per image."""

    supports_eigen_smooth: ClassVar[bool] = True
    """Whether `__call__(eigen_smooth=True)` applies: the map is `compute_cam`'s combination of
    weighted activations."""

    display_name: ClassVar[str] = "CAM method"
    """Human-readable name for figures and tables."""

    images_per_pass: ClassVar[int] = 32
    """Images per compiled gradient pass; bounds memory for large batches."""

    def __new__(cls, *args: Any, **kwargs: Any) -> BaseCAM:
        # The arguments are kept so that `layer=[...]` can build one explainer per layer with
        # the method's own constructor (see `_sibling`).
        instance = super().__new__(cls)
        instance._arguments = (args, kwargs)
        return instance

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None | Sequence[str | keras.layers.Layer] = None,
        *,
        score: str = "logit",
        layer_call: int | None = None,
        head: str | Head | None = None,
        verbose: int = 0,
    ) -> None:
        several = isinstance(layer, (list, tuple))
        if several and not layer:
            raise ValueError("`layer` is an empty list; name at least one layer (or pass None).")
        self._siblings: list[BaseCAM] = [self._sibling(other) for other in layer[1:]] if (
            several
        ) else []
        layer = layer[0] if several else layer
        self._eigen_smooth = tf.Variable(False, trainable=False, name="eigen_smooth")
        if score not in _SCORES:
            raise ValueError(f"`score` must be one of {_SCORES}; received {score!r}.")
        if isinstance(verbose, bool) or verbose not in _VERBOSE:
            raise ValueError(f"`verbose` must be 0, 1 or 2; received {verbose!r}.")
        self.model = model
        self.score = score
        self.verbose = int(verbose)
        self._cam: CamModel = build_cam_model(model, layer, layer_call=layer_call, head=head)
        self.layer: keras.layers.Layer = self._cam.layer
        self.layers: list[keras.layers.Layer] = [self.layer, *(s.layer for s in self._siblings)]
        self.num_classes: int = self._cam.num_classes
        image_spec = tf.TensorSpec((None, *self._cam.input_shape), tf.float32)
        self._pass_fn = compile_fn(
            lambda images, class_idx: self._weighted_maps(images, class_idx),
            [image_spec, tf.TensorSpec((None,), tf.int32)],
        )
        self._predict_fn = compile_fn(lambda images: self._forward(images)[2], [image_spec])

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        images: Any,
        targets: Targets = None,
        *,
        upsample: bool = True,
        normalize: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
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
                is all zeros). Defaults to `True`; `False` returns the raw ReLU'd values
                (combined maps: the average of the normalized maps, not renormalized).
            aug_smooth: test-time augmentation (pytorch-grad-cam's `aug_smooth`): the map of
                each of `AUGMENTATIONS` (a horizontal flip x the intensity factors 1.0, 1.1,
                0.9, the set of pytorch-grad-cam), flipped back, placed on the input grid and
                normalized, averaged (for an integer input, the scaled pixels are rounded and
                clipped to its range). Top-1 targets are read once, on the original images.
                Needs `upsample=True`. Defaults to `False`.
            eigen_smooth: the map is the first principal component of the weighted activations
                `w_k A^k` (`first_component`, centred and oriented along the plain map, then
                ReLU'd) instead of their sum (pytorch-grad-cam's `eigen_smooth`). Defaults to
                `False`.

        Returns:
            float32 NumPy array `(H, W)` for one image, `(B, H, W)` for a batch.

        Raises:
            ValueError: images of the wrong rank, channel count or size, an empty batch,
                non-finite values, or targets out of range / of the wrong length; for a model
                with an integer (or bool) input, images that are not integers in its range; a
                callable target for a method that needs class indices
                (`supports_callable_targets = False`); `upsample=False` with several layers or
                `aug_smooth`; `eigen_smooth` for a method without weighted activations
                (`supports_eigen_smooth = False`).
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
        if eigen_smooth and not self.supports_eigen_smooth:
            raise ValueError(
                f"{self.display_name} does not combine weighted activations, so `eigen_smooth` "
                "does not apply; call it with eigen_smooth=False."
            )
        combined = bool(aug_smooth) or bool(self._siblings)
        if combined and not upsample:
            raise ValueError(
                "Maps of several layers or augmentations (`layer=[...]`, `aug_smooth=True`) are "
                "combined on the input grid, so `upsample` must be True; received "
                "upsample=False. Explain one layer without aug_smooth for conv-resolution maps."
            )
        size = self.image_size(batch)
        with self._smoothing(bool(eigen_smooth)):
            if combined:
                maps = self._combined_maps(batch, resolved, bool(aug_smooth))
                maps = _POSTPROCESS[False, bool(normalize)](
                    maps, tf.constant(size, tf.int32), self.placement(*size)
                ).numpy()
            else:
                raw = self.explain_batch(batch, resolved)
                postprocess = _POSTPROCESS[bool(upsample), bool(normalize)]
                maps = postprocess(raw, tf.constant(size, tf.int32), self.placement(*size))
                maps = maps.numpy()
        if not np.isfinite(maps).all():
            bad = int(np.flatnonzero(~np.isfinite(maps).reshape(len(maps), -1).all(axis=1))[0])
            raise ValueError(
                f"The model produced non-finite values while explaining image {bad}; check its "
                "weights and the preprocessing of the input (a heatmap is never returned as NaN)."
            )
        return maps[0] if single else maps

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
        chunks = [
            self._predict_fn(batch[start : start + self.images_per_pass]).numpy()
            for start in range(0, int(batch.shape[0]), self.images_per_pass)
        ]
        scores = np.concatenate(chunks).astype(np.float32, copy=False)
        return scores[0] if single else scores

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
        """Combines feature maps and weights: `ReLU(sum_k w_k A^k)`, shape `(B, h, w)`.

        With `eigen_smooth=True` (read at run time, no retracing), `ReLU(first_component(w A))`.
        """
        if weights.shape.rank == 2:
            weights = weights[:, tf.newaxis, tf.newaxis, :]
        weighted = weights * features
        eigen_smooth = getattr(self, "_eigen_smooth", None)  # None: used as a pure function
        if eigen_smooth is None:
            return tf.nn.relu(tf.reduce_sum(weighted, axis=-1))
        combined = tf.cond(
            eigen_smooth,
            lambda: first_component(weighted),
            lambda: tf.reduce_sum(weighted, axis=-1),
        )
        return tf.nn.relu(combined)

    def explain_batch(self, images: tf.Tensor, targets: np.ndarray | ScoreFn) -> tf.Tensor:
        """Raw ReLU'd maps at the layer's resolution, `(B, h, w)`, for checked inputs.

        Runs the compiled gradient pass in chunks of `images_per_pass` images.
        """
        if callable(targets):
            pass_fn, class_idx = self._callable_pass(targets), None
        else:
            pass_fn, class_idx = self._pass_fn, tf.constant(targets, tf.int32)
        chunks = []
        for start in range(0, int(images.shape[0]), self.images_per_pass):
            chunk = images[start : start + self.images_per_pass]
            if class_idx is None:
                chunks.append(pass_fn(chunk))
            else:
                chunks.append(pass_fn(chunk, class_idx[start : start + self.images_per_pass]))
        return tf.concat(chunks, axis=0)

    # ------------------------------------------------ combining and smoothing
    def _sibling(self, layer: str | keras.layers.Layer | None) -> BaseCAM:
        """An explainer of the same method and arguments for another layer of `layer=[...]`."""
        args, kwargs = self._arguments
        bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
        bound.arguments["layer"] = layer
        return type(self)(*bound.args[1:], **bound.kwargs)

    @contextlib.contextmanager
    def _smoothing(self, eigen_smooth: bool) -> Iterator[None]:
        """Switches `eigen_smooth` on for one call, in every layer's explainer."""
        explainers = [self, *self._siblings]
        for explainer in explainers:
            explainer._eigen_smooth.assign(eigen_smooth)
        try:
            yield
        finally:
            for explainer in explainers:
                explainer._eigen_smooth.assign(False)

    def _combined_maps(
        self, batch: tf.Tensor, targets: np.ndarray | ScoreFn, aug_smooth: bool
    ) -> tf.Tensor:
        """The mean of the normalized, placed maps of every layer and augmentation `(B, H, W)`."""
        if not callable(targets) and (targets == TOP_PREDICTION).any():
            top = self.predict(batch).argmax(axis=-1)
            targets = np.where(targets == TOP_PREDICTION, top, targets).astype(np.int32)
        size = self.image_size(batch)
        width_axis = self._cam.spatial_axes[1]
        total, count = 0.0, 0
        for flip, factor in AUGMENTATIONS if aug_smooth else ((False, 1.0),):
            view = self._intensity_view(batch, factor)
            view = tf.reverse(view, [width_axis]) if flip else view
            for explainer in (self, *self._siblings):
                maps = _POSTPROCESS[True, True](
                    explainer.explain_batch(view, targets),
                    tf.constant(size, tf.int32),
                    explainer.placement(*size),
                )
                total += tf.reverse(maps, [2]) if flip else maps
                count += 1
        return total / count

    def _intensity_view(self, batch: tf.Tensor, factor: float) -> tf.Tensor:
        """`batch * factor`, rounded and clipped to the range of an integer (or bool) input, so
        the view is an input the model can take."""
        dtype = keras.backend.standardize_dtype(self.model.inputs[0].dtype)
        view = batch * factor
        if factor == 1.0 or keras.backend.is_float_dtype(dtype):
            return view
        low, high = (0, 1) if dtype == "bool" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        return tf.clip_by_value(tf.round(view), float(low), float(high))

    # -------------------------------------------------------------- internals
    def _forward(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        features, logits, probabilities = self._cam.model(images, training=False)
        return features, logits, probabilities

    def _weighted_maps(
        self, images: tf.Tensor, class_idx: tf.Tensor, score_fn: ScoreFn | None = None
    ) -> tf.Tensor:
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
        return self.compute_cam(features, weights)

    def _callable_pass(self, score_fn: ScoreFn) -> Any:
        """A compiled pass for a callable target, traced afresh for each call.

        A callable is read when it is traced: its attributes (a `Target`'s fields) and closure
        variables become constants of the compiled pass. Keeping that pass for a later call
        would explain the callable as it was then, not as it is now, so it serves one call.
        """
        def pass_fn(images: tf.Tensor) -> tf.Tensor:
            class_idx = tf.fill(tf.shape(images)[:1], TOP_PREDICTION)
            return self._weighted_maps(images, class_idx, score_fn)

        return compile_fn(pass_fn, [self._pass_fn.input_signature[0]])

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
