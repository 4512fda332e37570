"""BaseCAM: the machinery every class activation map method shares.

The flow is one-way: images -> input checks -> sub-model `(features, logits, probabilities)` ->
channel weights (the only thing a method defines) -> `ReLU(sum_k w_k A^k)` -> upsample to the
input size -> normalization (`normalize_maps`: per image by default) -> NumPy. For the methods
of one pass (the gradient family) all of it, and the head's class scores, is one compiled
function per `(upsample, normalize)` (`BaseCAM._pass`, a concrete function: it cannot retrace),
called once per batch of up to `images_per_pass` images: one dispatch and one transfer back to
the host. Methods with passes of their own (Score-CAM) return their raw maps from
`explain_batch`, then one shared compiled placement and normalization (`_POSTPROCESS`). NumPy
appears once, at the public boundary.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from keras_cam._checks import check_flag
from keras_cam.methods.projection import principal_projection
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
_AXIS_NAMES = {3: ("T",), 4: ("H", "W"), 5: ("D", "H", "W")}
_AXIS_WORDS = {3: ("length",), 4: ("height", "width"), 5: ("depth", "height", "width")}
_INPUT_KINDS = {3: "signal", 4: "image", 5: "volume"}
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


_PLACE_EQUATIONS = {
    1: ("ta,na->nt",),
    3: ("za,nabc->nzbc", "yb,nzbc->nzyc", "xc,nzyc->nzyx"),
}
"""`tf.einsum` equations sampling `(B, *cells)` signals and volumes with one `(pixels, cells)`
matrix per axis, one axis at a time (each a matrix product); images take two `tf.matmul`s."""


def place_maps(maps: tf.Tensor, size: tf.Tensor, placement: tf.Tensor) -> tf.Tensor:
    """Places conv-resolution maps on the input grid: `(B, h, w)` -> `(B, H, W)`.

    Each input pixel's centre is mapped through the placement's affine map into the feature
    grid and sampled bilinearly (linearly per axis: linear for signals, trilinear for
    volumes), clamped at the grid's edges; pixels outside the input region the features come
    from get 0. With offset 0 and scale `H / h` this is `tf.image.resize(..., "bilinear")`
    (half-pixel centres).

    Args:
        maps: float32 `(B, *cells)` with 1 to 3 spatial axes: `(B, t)` for a signal,
            `(B, h, w)` for an image, `(B, d, h, w)` for a volume.
        size: int32 `(n,)`: the input's spatial sizes, e.g. `(H, W)`.
        placement: float32 `(n, 4)`: `(offset, scale, lo, hi)` of each spatial axis in input
            pixels (see `keras_cam.surgery.CamModel.placement`): feature cell `j` covers input
            `[offset + scale * j, offset + scale * (j + 1))`, a negative scale mirrors the axis,
            and scale 0 stretches the map over `[lo, hi)`.

    Returns:
        float32 `(B, *size)`.

    Example:
    ```python
    place_maps(maps, tf.constant([64, 64]), cam._cam.placement(64, 64))
    ```
    """
    rank = maps.shape.rank - 1
    # Static cell counts (known when the model's input size is) let constant sizes and
    # placements fold the samplers into constants when the graph is optimized.
    cells = [maps.shape[i + 1] or tf.shape(maps)[i + 1] for i in range(rank)]
    samplers = [_axis_weights(cells[i], size[i], placement[i]) for i in range(rank)]
    if rank == 2:  # images: two broadcast matrix products, the cheapest form (no transposes)
        return tf.matmul(tf.matmul(samplers[0], maps), samplers[1], transpose_b=True)
    for sampler, equation in zip(samplers, _PLACE_EQUATIONS[rank]):
        maps = tf.einsum(equation, sampler, maps)
    return maps


def weighted_features(features: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """`w_k A^k` for every channel: channel weights `(B, C)` broadcast over the cells, or
    per-position weights `(B, *cells, C)` as they are.

    Args:
        features: float32 `(B, *cells, C)`.
        weights: float32 `(B, C)` or `(B, *cells, C)`.

    Returns:
        float32 `(B, *cells, C)`.
    """
    if weights.shape.rank == 2:
        for _ in spatial_dims(features):
            weights = weights[:, tf.newaxis]
    return weights * features


def channel_sum(features: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """`sum_k w_k A^k`, the weighted sum of the channels (Grad-CAM, Selvaraju et al., 2017,
    https://arxiv.org/abs/1610.02391, Eq. 2 before its ReLU).

    Channel weights `(B, C)` are contracted with the features in one batched matrix-vector
    product over the flattened cells (`(B, N, C) x (B, C)`), which never materializes the
    `(B, *cells, C)` products `w_k A^k` (as fast as a spelled-out einsum such as
    `"bhwc,bc->bhw"`, for any number of spatial axes; an einsum with `...` measured about 8 %
    of the demo model's forward pass slower); per-position weights `(B, *cells, C)`
    (HiResCAM, LayerCAM) are multiplied, then summed.

    Args:
        features: float32 `(B, *cells, C)`: `(B, t, C)`, `(B, h, w, C)` or `(B, d, h, w, C)`.
        weights: float32 `(B, C)` or `(B, *cells, C)`.

    Returns:
        float32 `(B, *cells)`, not ReLU'd.

    Example:
    ```python
    channel_sum(tf.ones((2, 7, 9, 4)), tf.ones((2, 4)))   # (2, 7, 9), every value 4.0
    ```
    """
    if weights.shape.rank != 2:
        return tf.reduce_sum(weights * features, axis=-1)
    shape = tf.shape(features)
    flat = tf.reshape(features, tf.stack([shape[0], -1, shape[-1]]))
    return tf.reshape(tf.linalg.matvec(flat, weights), shape[:-1])


def spatial_dims(tensor: tf.Tensor) -> tuple[int, ...]:
    """The spatial axes of a channels-last batch of feature maps `(B, *cells, C)`.

    Args:
        tensor: a tensor of static rank 3 (signals), 4 (images) or 5 (volumes).

    Returns:
        `(1,)`, `(1, 2)` or `(1, 2, 3)`.
    """
    return tuple(range(1, tensor.shape.rank - 1))


NORMALIZE_MODES = ("image", "batch", "none")
"""The values of `normalize` (`True` is `"image"`, `False` is `"none"`); see `normalize_maps`."""


def check_normalize(normalize: bool | str) -> str:
    """Reads a `normalize` argument as one of `NORMALIZE_MODES`.

    Args:
        normalize: `True` or `"image"`, `False` or `"none"`, or `"batch"`.

    Returns:
        The mode's name in `NORMALIZE_MODES`.

    Raises:
        ValueError: any other value.

    Example:
    ```python
    check_normalize(True)     # "image"
    ```
    """
    if normalize is True or normalize is False:
        return "image" if normalize else "none"
    if isinstance(normalize, str) and normalize in NORMALIZE_MODES:
        return normalize
    raise ValueError(
        f"`normalize` must be True (same as 'image'), False (same as 'none'), 'image', 'batch' "
        f"or 'none'; received {normalize!r}. Use 'batch' to keep weak maps weak: one scale "
        "for every map explained together."
    )


def normalize_maps(maps: tf.Tensor, mode: str = "image") -> tf.Tensor:
    """Scales ReLU'd maps `(B, H, W)` for display and comparison: the one home of normalization.

    - `"image"`: each map min-max normalized to [0, 1] on its own (Grad-CAM, Selvaraju et al.
      2017, Fig. 1: `(M - min M) / (max M - min M)`). Every map then spans the full colour
      range, so the map of a class of probability 0.001 looks as strong as the top class's:
      use it to see *where* each map points, not *how much*.
    - `"batch"`: every map divided by the largest value of all `B` maps, `M / max_b max M_b`,
      one scale for everything explained together, zero staying zero. Magnitudes stay
      comparable: a class with little evidence gives a faint map next to the top class's.
      To compare the classes of one image, explain them in one call (the image repeated,
      one class per copy, e.g. `cam(np.repeat(image[None], k, 0), targets=classes)`); to
      compare images, explain them as one batch.
    - `"none"`: the raw ReLU'd values, for metrics and your own scaling.

    A map (or, for `"batch"`, a batch) with no positive evidence is all zeros, never NaN.

    Args:
        maps: float32 `(B, H, W)` (`(B, T)`, `(B, D, H, W)`), the ReLU'd maps (non-negative).
        mode: one of `NORMALIZE_MODES`. Defaults to `"image"`.

    Returns:
        float32 `(B, H, W)`, in [0, 1] unless `mode="none"`.

    Raises:
        ValueError: an unknown `mode`.

    Example:
    ```python
    raw = kc.GradCAM(model)(np.repeat(image[None], 4, 0), targets=[0, 1, 2, 3],
                            normalize=False)
    comparable = normalize_maps(tf.constant(raw), "batch")   # weak classes look weak
    ```
    """
    mode = check_normalize(mode)
    if mode == "none":
        return maps
    spatial = tuple(range(1, maps.shape.rank))
    axes = spatial if mode == "image" else (0, *spatial)
    high = tf.reduce_max(maps, axis=axes, keepdims=True)
    low = tf.reduce_min(maps, axis=axes, keepdims=True) if mode == "image" else 0.0
    return tf.math.divide_no_nan(maps - low, high - low)


def _postprocess(
    maps: tf.Tensor, size: tf.Tensor, placement: tf.Tensor, upsample: bool, normalize: str
) -> tf.Tensor:
    if upsample:
        maps = place_maps(maps, size, placement)
    return normalize_maps(maps, normalize)


_POSTPROCESS = {
    (rank, upsample, normalize): compile_fn(
        functools.partial(_postprocess, upsample=upsample, normalize=normalize),
        [
            tf.TensorSpec((None,) * (rank + 1), tf.float32),
            tf.TensorSpec((rank,), tf.int32),
            tf.TensorSpec((rank, 4), tf.float32),
        ],
    )
    for rank in (1, 2, 3)
    for upsample in (False, True)
    for normalize in NORMALIZE_MODES
}
"""Placement and normalization, shared by every explainer: `(spatial rank, upsample,
normalize) -> fn`, each compiled once for its signature."""


def check_real_dtype(name: str, dtype: Any) -> None:
    """Refuses values that are not real numbers (complex, strings), which a cast to the
    model's dtype would silently change (a complex number loses its imaginary part).

    Args:
        name: the argument's name, for the message (e.g. `"images"`).
        dtype: a NumPy or TensorFlow dtype.

    Raises:
        TypeError: a complex or non-numeric dtype.

    Example:
    ```python
    check_real_dtype("images", np.float32)   # passes
    ```
    """
    if isinstance(dtype, tf.DType):
        real = dtype.is_floating or dtype.is_integer or dtype.is_bool
    else:
        dtype = np.dtype(dtype)
        real = dtype == bool or np.issubdtype(dtype, np.floating) or np.issubdtype(
            dtype, np.integer
        )
    if not real:
        raise TypeError(
            f"`{name}` must hold real numbers (float, int or bool); received dtype "
            f"{dtype.name}. Pass the real values the model takes (e.g. np.real or np.abs of "
            "complex data, chosen explicitly)."
        )


def check_other_input(value: Any, source: Any, rows: int, single: bool) -> tf.Tensor:
    """Checks one of the inputs held fixed (e.g. metadata) against the model's input.

    Args:
        value: the values given for it: NumPy array or tensor, one row per image (without
            the batch axis when the explained input is a single image).
        source: the model's symbolic input (its `name`, `shape` and `dtype`).
        rows: the number of images explained.
        single: whether the explained input was a single image (no batch axis).

    Returns:
        A tensor of `source`'s dtype, `(rows, *source.shape[1:])`.

    Raises:
        ValueError: a shape that does not match the input, another row count, or non-finite
            values in a float input.
        TypeError: values that cannot be read as an array.
    """
    try:
        array = value if keras.ops.is_tensor(value) else np.asarray(value)
        shape = tuple(array.shape)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Input {source.name!r} must be a NumPy array or tensor of shape "
            f"{tuple(source.shape)}; received {type(value).__name__}."
        ) from error
    check_real_dtype(f"input {source.name!r}", array.dtype)
    batch_shape = (1, *shape) if single else shape
    expected = tuple(source.shape[1:])
    fits = len(batch_shape) == len(expected) + 1 and all(
        size is None or size == given for size, given in zip(expected, batch_shape[1:])
    )
    if not fits or batch_shape[0] != rows:
        raise ValueError(
            f"Input {source.name!r} has shape {shape}, but model input {source.name!r} takes "
            f"{tuple(source.shape)}, with one row per explained image ({rows})."
        )
    tensor = tf.reshape(tf.cast(array, source.dtype), batch_shape)
    if tensor.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(tensor))):
        raise ValueError(f"Input {source.name!r} contains NaN or infinite values.")
    return tensor


@functools.partial(tf.function, input_signature=[tf.TensorSpec(None, tf.float32)])
def finite_rows(batch: tf.Tensor) -> tf.Tensor:
    """Whether each row of a batch holds only finite values: bool `(B,)`, one compiled call
    (inlined when called inside another compiled function)."""
    return tf.reduce_all(tf.math.is_finite(tf.reshape(batch, (tf.shape(batch)[0], -1))), axis=1)


def check_finite_images(finite: np.ndarray, index: np.ndarray | None = None) -> None:
    """Raises a `ValueError` naming the first image whose `finite` flag (bool `(B,)`) is off:
    by its `index` (int `(B,)`, e.g. its position in a dataset) if given, else its position
    in the batch."""
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        bad = bad if index is None else int(index[bad])
        raise ValueError(
            f"`images` contain NaN or infinite values (first in image {bad}); a class "
            "activation map of such an input is meaningless. Check the preprocessing."
        )


def eigen_smoothing(explainer: BaseCAM | None) -> bool:
    """Whether `explainer`'s maps are being computed with `eigen_smooth=True` in this thread.

    `__call__` sets it for its own duration (in each layer's explainer) and every compiled
    function that calls `compute_cam` sets it while it is traced, from its cache key; it is a
    Python bool, so the choice is part of the traced graph and concurrent calls in other
    threads never see it.

    Args:
        explainer: a `BaseCAM`, or `None` (`compute_cam` called as a function).

    Returns:
        `False` outside an explainer's call, for `None`, and for plain calls.

    Example:
    ```python
    eigen_smoothing(cam)   # False: no call of cam is running in this thread
    ```
    """
    tracing = getattr(explainer, "_tracing", None)
    return bool(getattr(tracing, "eigen_smooth", False))


def _defaults(function: Callable[..., Any]) -> dict[str, Any]:
    """The default values of `function`'s parameters that have one."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


class BaseCAM:
    """Base class of all class activation map methods.

    A method overrides `compute_weights` (pure: tensors in, tensors out) and, rarely,
    `compute_cam`. Capabilities are declared as class flags and checked here: methods that
    need no gradient set `requires_gradients = False`, methods that need one class per image
    (CAM) set `supports_callable_targets = False`; methods whose weights need extra forward
    passes (Score-CAM) override `explain_batch`.

    Args:
        model: a single-input Functional or Sequential Keras classifier of images
            `(B, H, W, C)`, signals `(B, T, C)` (Conv1D networks) or volumes
            `(B, D, H, W, C)` (Conv3D networks), channels-first too (nested models such as
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
        output: the output to explain of a model with several (an auxiliary head, a
            multi-task model): its name (`model.output_names`) or index. `None` takes the only
            output; with several, the error lists them with their shapes. Defaults to `None`.
        input: the explained input of a model with several (an image plus metadata, two
            images): its name or index. The call then takes the model's own input structure
            (a list in the model's order or a dict keyed by input name); the other inputs are
            held fixed at the values given, the maps have the explained input's size, and
            Score-CAM masks only the explained input. `None` takes the only input; with
            several, the error lists them with their shapes. Defaults to `None`.
        token_grid: for a layer that outputs `(B, N, D)` tokens (a vision transformer's
            block), the `(h, w)` patch grid they follow; `None` reads it from the model's
            patch embedding (a strided Conv2D flattened into tokens). The extra `N - h * w`
            tokens (class, register tokens) must lead; they are left out, and the map is placed
            on the image by the patch geometry. See `keras_cam.surgery.build_cam_model`.
            Defaults to `None`.

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

    pixel_resolution: ClassVar[bool] = False
    """Whether the maps come at the input's pixels (Guided Backpropagation): `upsample` then
    changes nothing."""

    expensive: ClassVar[bool] = False
    """Whether the method runs many passes per image (tens per channel or per sample), so tools
    that run every method (the demo) leave it out unless asked."""

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
        output: int | str | None = None,
        input: int | str | None = None,
        token_grid: tuple[int, int] | None = None,
    ) -> None:
        several = isinstance(layer, (list, tuple))
        if several and not layer:
            raise ValueError("`layer` is an empty list; name at least one layer (or pass None).")
        self._siblings: list[BaseCAM] = [self._sibling(other) for other in layer[1:]] if (
            several
        ) else []
        layer = layer[0] if several else layer
        if score not in _SCORES:
            raise ValueError(f"`score` must be one of {_SCORES}; received {score!r}.")
        if isinstance(verbose, bool) or verbose not in _VERBOSE:
            raise ValueError(f"`verbose` must be 0, 1 or 2; received {verbose!r}.")
        self.model = model
        self.score = score
        self.verbose = int(verbose)
        self._cam: CamModel = build_cam_model(
            model,
            layer,
            layer_call=layer_call,
            head=head,
            output=output,
            input=input,
            token_grid=token_grid,
        )
        self.layer: keras.layers.Layer = self._cam.layer
        self.layers: list[keras.layers.Layer] = [self.layer, *(s.layer for s in self._siblings)]
        self.num_classes: int = self._cam.num_classes
        self._image_spec = tf.TensorSpec((None, *self._cam.input_shape), tf.float32)
        self._others_spec = tuple(
            tf.TensorSpec((None, *other.shape[1:]), other.dtype)
            for other in self._cam.other_inputs
        )
        self._passes: dict[tuple[bool, str, bool, bool], Any] = {}
        """The compiled passes by `(upsample, normalize mode, with scores, eigen_smooth)` (see
        `_pass`)."""
        self._tracing = threading.local()
        """Per thread, `recorded`: the scores of the pass being traced (see `_recording`), and
        `eigen_smooth`: what `compute_cam` combines (see `eigen_smoothing`)."""
        self._geometry: dict[tuple[int, ...], tuple[tf.Tensor, tf.Tensor]] = {}
        self._predict_fn = compile_fn(
            lambda images, others: tf.cast(self._forward(images, others)[2], tf.float32),
            [self._image_spec, self._others_spec],
        )

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        images: Any,
        targets: Targets = None,
        *,
        upsample: bool = True,
        normalize: bool | str = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Computes one class activation map per image.

        Args:
            images: one image `(H, W, C)` or a batch `(B, H, W, C)`, NumPy or tensor,
                preprocessed the way the model expects. For a model with several inputs, all
                of them in the model's structure: a list in its order or a dict keyed by
                input name (`cam([images, metadata])`), one row per image in each.
            targets: `None` (each image's top-1 class), an int (one class for all images), a
                sequence of ints (one class per image: a list, NumPy array, tensor or pandas
                Series, see `keras_cam.targets.class_indices`), a callable
                `f(logits) -> (B,)`, or a target object (`keras_cam.targets.ClassTarget`,
                `TopPredictionTarget`, `BinaryTarget`, `MultiLabelTarget`, `RegressionTarget`,
                `SegmentationTarget`, `SimilarityTarget`, a `Target` of your own) or a list of
                target objects, one per image. Defaults to `None`.
            upsample: place the maps on the input's pixels: each pixel samples (bilinearly)
                the features its position maps to through the crops, paddings, strides and
                resizes between the input and the layer, and pixels outside the region the
                features come from are 0 (see `place_maps`). Defaults to `True`; `False`
                returns the conv-resolution maps.
            normalize: how the maps are scaled (see `normalize_maps`): `True` or `"image"`
                min-max normalizes each map to [0, 1] on its own; `"batch"` divides every map
                by the largest value of the whole call, so weak maps look weak (explain the
                classes of one image, or the images to compare, in one call); `False` or
                `"none"` returns the raw ReLU'd values. A map with no positive evidence is all
                zeros. Defaults to `True`. Combined maps (several layers, `aug_smooth`) are the
                average of the per-image normalized maps, then scaled by this mode.
            aug_smooth: test-time augmentation (pytorch-grad-cam's `aug_smooth`): the map of
                each of `AUGMENTATIONS` (a horizontal flip x the intensity factors 1.0, 1.1,
                0.9, the set of pytorch-grad-cam), flipped back, placed on the input grid and
                normalized, averaged (for an integer input, the scaled pixels are rounded and
                clipped to its range). Top-1 targets are read once, on the original images.
                Needs `upsample=True`. Defaults to `False`.
            eigen_smooth: the map is the first principal component of the weighted activations
                `w_k A^k` (`principal_projection`, centred and oriented along the plain map, then
                ReLU'd) instead of their sum (pytorch-grad-cam's `eigen_smooth`). Each choice
                has compiled passes of its own (see `eigen_smoothing`): no retracing between
                plain and smoothed calls, and concurrent calls in other threads are unaffected.
                Eigen-CAM, EigenGrad-CAM and KPCA-CAM are projections already: unchanged.
                Defaults to `False`.

        Returns:
            float32 NumPy array `(H, W)` for one image, `(B, H, W)` for a batch; for a
            signal model `(T,)` / `(B, T)`, for a volume model `(D, H, W)` / `(B, D, H, W)`.

        Raises:
            ValueError: an unknown `normalize`; images of the wrong rank, channel count or
                size, an empty batch,
                non-finite values, or targets out of range / of the wrong length; for a model
                with an integer (or bool) input, images that are not integers in its range; a
                callable target for a method that needs class indices
                (`supports_callable_targets = False`); `upsample=False` with several layers or
                `aug_smooth`; `eigen_smooth` for a method without weighted activations
                (`supports_eigen_smooth = False`).
            TypeError: `upsample`, `aug_smooth` or `eigen_smooth` not a bool (a string such
                as `"False"` is refused, not read as true).
        """
        maps, _ = self._explain(images, targets, upsample, normalize, aug_smooth, eigen_smooth)
        return maps

    def _explain(
        self,
        images: Any,
        targets: Targets,
        upsample: bool,
        normalize: bool | str,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        scores: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """`__call__`'s maps and, with `scores`, `predict`'s scores of the same images."""
        mode = check_normalize(normalize)
        upsample = check_flag("upsample", upsample)
        aug_smooth = check_flag("aug_smooth", aug_smooth)
        eigen_smooth = check_flag("eigen_smooth", eigen_smooth)
        combined = aug_smooth or bool(self._siblings)
        own_passes = type(self).explain_batch is not BaseCAM.explain_batch
        fused = not combined and not own_passes
        # The fused pass checks that the images are finite itself, in the same compiled call.
        batch, others, single = self._check_inputs(images, check_finite=not fused)
        resolved = resolve_targets(
            targets, int(batch.shape[0]), self.num_classes, self._cam.head
        )
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
        if combined and not upsample:
            raise ValueError(
                "Maps of several layers or augmentations (`layer=[...]`, `aug_smooth=True`) are "
                "combined on the input grid, so `upsample` must be True; received "
                "upsample=False. Explain one layer without aug_smooth for conv-resolution maps."
            )
        size, placement = self._placement_of(batch)
        probabilities = None
        with contextlib.ExitStack() as smoothing:  # this thread's choice, for every layer
            for explainer in (self, *self._siblings):
                smoothing.enter_context(explainer._smoothing(eigen_smooth))
                smoothing.enter_context(explainer._call_passes())
            if combined:
                maps = self._combined_maps(batch, resolved, aug_smooth, others)
                maps = _POSTPROCESS[len(size), False, mode](maps, size, placement).numpy()
            elif own_passes:
                # A method with passes of its own (Score-CAM): its raw maps, then placement.
                raw = self.explain_batch(batch, resolved, others)
                maps = _POSTPROCESS[len(size), upsample, mode](raw, size, placement)
                maps = maps.numpy()
            else:
                maps, probabilities, finite_images = self._fused_maps(
                    batch, others, resolved, upsample, mode, scores
                )
                check_finite_images(finite_images)
                maps = maps.numpy()
        if scores and probabilities is None:
            probabilities = self._model_scores(batch, others)
        finite = np.isfinite(maps).reshape(len(maps), -1).all(axis=1)
        if probabilities is not None:  # never a class or score read from NaN
            finite &= np.isfinite(probabilities).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"The model produced non-finite values while explaining image {bad}; check its "
                "weights and the preprocessing of the input (a heatmap is never returned as NaN)."
            )
        if single:
            return maps[0], None if probabilities is None else probabilities[0]
        return maps, probabilities

    def _fused_maps(
        self,
        batch: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        targets: np.ndarray | ScoreFn,
        upsample: bool,
        mode: str,
        scores: bool,
    ) -> tuple[tf.Tensor, np.ndarray | None, np.ndarray]:
        """Placed, normalized maps, the head's scores (NumPy, with `scores`) and whether each
        image is finite (bool NumPy `(B,)`), by the compiled pass in chunks of
        `images_per_pass`; a batch that fits in one chunk takes one call."""
        count, step = int(batch.shape[0]), self.images_per_pass
        size, placement = self._placement_of(batch)
        chunked = count > step
        # One scale over every chunk: the chunks' raw maps, then the batch's normalization.
        chunk_mode = "none" if chunked and mode == "batch" else mode
        score_fn = targets if callable(targets) else None
        pass_fn = self._pass(upsample, chunk_mode, scores, score_fn)
        if score_fn is not None:
            rows = tf.range(count)
        else:  # int32 on the host: the conversion's fast path
            rows = tf.constant(np.asarray(targets, np.int32))
        try:
            if not chunked:
                outputs = [pass_fn(batch, others, rows, size, placement)]
            else:
                outputs = [
                    pass_fn(
                        batch[start : start + step],
                        tuple(other[start : start + step] for other in others),
                        rows[start : start + step],
                        size,
                        placement,
                    )
                    for start in range(0, count, step)
                ]
            finite = np.concatenate([o[-1].numpy() for o in outputs])
        except tf.errors.OpError:  # an op of the model or method refusing a non-finite image
            check_finite_images(finite_rows(batch).numpy())
            raise
        maps = outputs[0][0] if not chunked else tf.concat([o[0] for o in outputs], axis=0)
        if not finite.all():  # no normalization over a batch with a non-finite image
            return maps, None, finite
        if chunk_mode != mode:
            maps = _POSTPROCESS[len(self._cam.spatial_axes), False, mode](maps, size, placement)
        if not scores:
            return maps, None, finite
        return maps, np.concatenate([o[1].numpy() for o in outputs]), finite

    def _pass(
        self, upsample: bool, mode: str, scores: bool, score_fn: ScoreFn | None = None
    ) -> Any:
        """The compiled pass `(images, others, rows, size, placement) -> (maps[, scores],
        finite)`.

        One function from the images to the placed, normalized maps: the forward and backward
        pass, the method's weights, their combination, placement and normalization, with
        `scores` the head's scores (`predict`'s) read from the same forward pass, and bool
        `(B,)` whether each image holds only finite values (checked by the caller). `rows` are
        the classes to explain (`TOP_PREDICTION` for each top-1), or, for a callable target,
        each image's index in the call. Compiled once per `(upsample, mode, scores,
        eigen_smooth)`, `eigen_smooth` being this thread's choice for the call (see
        `eigen_smoothing`): it is decided when the pass is traced, so a plain call and an
        `eigen_smooth` call run passes of their own and never retrace each other.

        A callable target is read when the pass is traced: its attributes (a `Target`'s
        fields) and closure variables become constants of the compiled pass. Keeping that
        pass for a later call would explain the callable as it was then, not as it is now,
        so a pass for a callable is compiled once per call (`_call_compiled`: shared by the
        call's chunks and `aug_smooth` views) and dropped at its end.
        """
        eigen_smooth = eigen_smoothing(self)
        key = (upsample, mode, scores, eigen_smooth)
        if score_fn is not None:
            return self._call_compiled(
                key, score_fn, lambda: self._compile_pass(upsample, mode, scores, score_fn, eigen_smooth)
            )
        if key not in self._passes:
            self._passes[key] = self._compile_pass(upsample, mode, scores, None, eigen_smooth)
        return self._passes[key]

    def _compile_pass(
        self,
        upsample: bool,
        mode: str,
        scores: bool,
        score_fn: ScoreFn | None,
        eigen_smooth: bool,
    ) -> Any:
        """Traces `_pass`'s function, its maps combined with `eigen_smooth`."""
        # A model of one input size has one geometry: the pass holds it as constants, which
        # the graph optimizer folds the placement's sampling matrices into (computed once).
        sizes = tuple(self._cam.input_shape[axis - 1] for axis in self._cam.spatial_axes)
        fixed = None
        if None not in sizes:  # NumPy values: constants of the graph, not captured inputs
            fixed = tuple(value.numpy() for value in self._placement_of_size(sizes))

        def explained_pass(
            images: tf.Tensor,
            others: tuple[tf.Tensor, ...],
            rows: tf.Tensor,
            size: tf.Tensor,
            placement: tf.Tensor,
        ) -> tuple[tf.Tensor, ...]:
            if score_fn is None:
                class_idx, image_index = rows, None
            else:
                class_idx, image_index = tf.fill(tf.shape(images)[:1], TOP_PREDICTION), rows
            with self._recording() as recorded, self._smoothing(eigen_smooth):
                raw = self._weighted_maps(images, others, class_idx, score_fn, image_index)
            if fixed is not None:  # the same values as the arguments, as constants
                size, placement = (tf.constant(value) for value in fixed)
            maps = _postprocess(raw, size, placement, upsample, mode)
            if recorded:  # an image whose scores are not finite gets a NaN map: refused
                finite = finite_rows(tf.cast(recorded[0], tf.float32))
                finite = tf.reshape(finite, [-1] + [1] * (maps.shape.rank - 1))
                maps = tf.where(finite, maps, float("nan"))
            finite_images = finite_rows(images)
            if not scores:
                return maps, finite_images
            # A method that differentiates without `total_score` reads them with a forward pass.
            probabilities = recorded[0] if recorded else self._forward(images, others)[2]
            return maps, tf.cast(probabilities, tf.float32), finite_images

        rank = len(self._cam.spatial_axes)
        compiled = compile_fn(
            explained_pass,
            [
                self._image_spec,
                self._others_spec,
                tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((rank,), tf.int32),
                tf.TensorSpec((rank, 4), tf.float32),
            ],
        )
        return compiled.get_concrete_function()  # called directly: no dispatch per call

    @contextlib.contextmanager
    def _recording(self) -> Iterator[list[tf.Tensor]]:
        """Collects the head's scores of the first `total_score` of a pass being traced."""
        recorded: list[tf.Tensor] = []
        self._tracing.recorded = recorded  # per thread: passes may be traced at once
        try:
            yield recorded
        finally:
            self._tracing.recorded = None

    def _placement_of(self, batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The int32 spatial sizes of a checked batch and the layer's placement on them."""
        return self._placement_of_size(self.image_size(batch))

    def _placement_of_size(self, size: tuple[int, ...]) -> tuple[tf.Tensor, tf.Tensor]:
        """The int32 spatial `size` and the layer's placement on inputs of that size."""
        if size not in self._geometry:
            self._geometry[size] = (tf.constant(size, tf.int32), self.placement(*size))
        return self._geometry[size]

    def _model_scores(self, batch: tf.Tensor, others: tuple[tf.Tensor, ...]) -> np.ndarray:
        """The head's scores of a checked batch, `(B, num_classes)`, in compiled chunks."""
        step = self.images_per_pass
        chunks = [
            self._predict_fn(
                batch[start : start + step], tuple(o[start : start + step] for o in others)
            ).numpy()
            for start in range(0, int(batch.shape[0]), step)
        ]
        return np.concatenate(chunks)

    def explain(
        self,
        images: Any,
        targets: Targets = None,
        *,
        upsample: bool = True,
        normalize: bool | str = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The maps of `__call__` and the model's scores of each class (those of `predict`).

        What `keras_cam.explain_dataset` records per image: the map, the predicted class and
        its score. For the gradient methods the scores come from the forward pass the maps
        are computed with (no second pass); the others run one compiled forward pass more.

        Args:
            images: a batch, as `__call__` takes it (the model's input structure for a model
                with several inputs).
            targets: what to explain (see `__call__`). Defaults to `None`.
            upsample: see `__call__`. Defaults to `True`.
            normalize: see `__call__`. Defaults to `True`.

        Returns:
            `(maps, scores)`: float32 `(B, *pixels)` and float32 `(B, num_classes)`.

        Raises:
            ValueError: see `__call__`.

        Example:
        ```python
        maps, scores = kc.GradCAM(model).explain(images)
        predicted = scores.argmax(axis=-1)
        ```
        """
        return self._explain(images, targets, upsample, normalize, scores=True)

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
        batch, others, single = self._check_inputs(images)
        scores = self._model_scores(batch, others)
        return scores[0] if single else scores

    def settings(self) -> dict[str, Any]:
        """What the explainer was built with, besides the model: every argument of the
        method's constructor (defaults filled in, `BaseCAM`'s too), `layer` as the names of
        the explained layers, `verbose` left out (it changes no map).

        Two explainers of one class and model with equal settings compute the same maps;
        `keras_cam.explain_dataset` records them to refuse mixing runs with other ones.

        Returns:
            `{argument: value}`, the values as given; `layer` the list of layer names.

        Example:
        ```python
        kc.ScoreCAM(model, max_channels=16).settings()["max_channels"]   # 16
        ```
        """
        args, kwargs = self._arguments
        values: dict[str, Any] = {}
        for cls in reversed(type(self).__mro__):  # BaseCAM's defaults, then each subclass's
            if "__init__" in vars(cls) and cls is not object:
                values.update(_defaults(cls.__init__))
        bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
        for name, value in bound.arguments.items():
            kind = bound.signature.parameters[name].kind
            values.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
        for name in ("self", "model", "verbose", "args", "kwargs"):
            values.pop(name, None)
        values["layer"] = [layer.name for layer in self.layers]
        return values

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

    def image_size(self, batch: tf.Tensor) -> tuple[int, ...]:
        """The spatial sizes of a checked batch, whatever the model's data format: `(H, W)`
        for images, `(T,)` for signals, `(D, H, W)` for volumes."""
        return tuple(int(batch.shape[axis]) for axis in self._cam.spatial_axes)

    def placement(self, *sizes: int) -> tf.Tensor:
        """Where the layer's maps sit on inputs of spatial `sizes` (e.g. `height, width`):
        float32 `(n, 4)` for `place_maps` (see `keras_cam.surgery.CamModel.placement`)."""
        return tf.constant(self._cam.placement(*sizes))

    # ------------------------------------------------------------- method hooks
    def compute_weights(
        self, features: tf.Tensor, grads: tf.Tensor | None, class_idx: tf.Tensor
    ) -> tf.Tensor:
        """Returns the channel weights of each map: `(B, C)`, or `(B, h, w, C)` per position.

        Args:
            features: float32 feature maps `A`, `(B, h, w, C)` (`(B, t, C)` for a signal
                model, `(B, d, h, w, C)` for a volume model; `spatial_dims` names the axes).
            grads: float32 `dScore/dA`, same shape, or `None` when `requires_gradients` is False
                (a method that overrides `feature_gradients` receives what it returns there,
                e.g. ShapleyCAM's `(g, H A)` stacked on a last axis).
            class_idx: int32 `(B,)` explained class of each image (`-1` with a callable target).

        Returns:
            float32 weights, `(B, C)` or `(B, h, w, C)`.
        """
        raise NotImplementedError

    def compute_cam(self, features: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        """Combines feature maps and weights: `ReLU(sum_k w_k A^k)` (`channel_sum`).

        In a pass traced for `eigen_smooth=True` (see `eigen_smoothing`; decided when the pass
        is traced, so nothing is chosen at run time), `ReLU(principal_projection(w_k A^k))`.
        Called outside a pass (as a function, `self` may be `None`), it is the plain sum.

        Args:
            features: float32 `(B, *cells, C)` feature maps `A`.
            weights: float32 `(B, C)` channel weights or `(B, *cells, C)` per position.

        Returns:
            float32 `(B, *cells)`: `(B, h, w)` for images, `(B, t)` signals, `(B, d, h, w)`
            volumes.
        """
        if eigen_smoothing(self):
            return tf.nn.relu(principal_projection(weighted_features(features, weights)))
        return tf.nn.relu(channel_sum(features, weights))

    def explain_batch(
        self,
        images: tf.Tensor,
        targets: np.ndarray | ScoreFn,
        others: tuple[tf.Tensor, ...] = (),
    ) -> tf.Tensor:
        """Raw ReLU'd maps at the layer's resolution, `(B, h, w)` (`(B, t)`, `(B, d, h, w)`),
        for checked inputs.

        Runs the compiled pass (without placement or normalization) in chunks of
        `images_per_pass` images. `others` are the model's other inputs
        (`CamModel.other_inputs`), one row per image, held fixed. A method with passes of its
        own (Score-CAM) overrides it; `__call__` then places and normalizes what it returns.
        """
        return self._fused_maps(images, others, targets, False, "none", False)[0]

    # ------------------------------------------------ combining and smoothing
    def _sibling(self, layer: str | keras.layers.Layer | None) -> BaseCAM:
        """An explainer of the same method and arguments for another layer of `layer=[...]`."""
        args, kwargs = self._arguments
        bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
        bound.arguments["layer"] = layer
        return type(self)(*bound.args[1:], **bound.kwargs)

    @contextlib.contextmanager
    def _smoothing(self, eigen_smooth: bool) -> Iterator[None]:
        """Sets `eigen_smoothing(self)` in this thread (a call's choice, or the choice a pass
        is traced for), then restores it: other threads' calls are untouched."""
        previous = eigen_smoothing(self)
        self._tracing.eigen_smooth = eigen_smooth
        try:
            yield
        finally:
            self._tracing.eigen_smooth = previous

    @contextlib.contextmanager
    def _call_passes(self) -> Iterator[None]:
        """Holds, in this thread and for one call, the compiled functions of the call's
        callable target (see `_call_compiled`), then drops them."""
        previous = getattr(self._tracing, "call_passes", None)
        self._tracing.call_passes = {}
        try:
            yield
        finally:
            self._tracing.call_passes = previous

    def _call_compiled(
        self, key: tuple[Any, ...], score_fn: ScoreFn, build: Callable[[], Any]
    ) -> Any:
        """The compiled function(s) `build()` of a callable target, built once per call.

        A callable is read when it is traced (its fields and closure variables become
        constants), so its functions never outlive the call; within one call it cannot change,
        and every view of `aug_smooth` and every chunk reuse one trace. Outside a call (no
        `_call_passes` in this thread), `build()` runs each time.

        Args:
            key: what else the function depends on (e.g. `(upsample, mode, scores,
                eigen_smooth)`).
            score_fn: the call's callable target (alive for the whole call).
            build: compiles the function(s).

        Returns:
            What `build()` returned, for this call.
        """
        passes = getattr(self._tracing, "call_passes", None)
        if passes is None:
            return build()
        key = (*key, id(score_fn))
        if key not in passes:
            passes[key] = build()
        return passes[key]

    def _combined_maps(
        self,
        batch: tf.Tensor,
        targets: np.ndarray | ScoreFn,
        aug_smooth: bool,
        others: tuple[tf.Tensor, ...] = (),
    ) -> tf.Tensor:
        """The mean of the normalized, placed maps of every layer and augmentation
        `(B, *pixels)`; `aug_smooth` flips the last spatial axis (an image's width)."""
        if not callable(targets) and (targets == TOP_PREDICTION).any():
            top = self.predict([batch, *others] if others else batch).argmax(axis=-1)
            targets = np.where(targets == TOP_PREDICTION, top, targets).astype(np.int32)
        size = self.image_size(batch)
        last_axis = self._cam.spatial_axes[-1]
        total, count = 0.0, 0
        for flip, factor in AUGMENTATIONS if aug_smooth else ((False, 1.0),):
            view = self._intensity_view(batch, factor)
            view = tf.reverse(view, [last_axis]) if flip else view
            for explainer in (self, *self._siblings):
                maps = _POSTPROCESS[len(size), True, "image"](
                    explainer.explain_batch(view, targets, others),
                    tf.constant(size, tf.int32),
                    explainer.placement(*size),
                )
                total += tf.reverse(maps, [len(size)]) if flip else maps
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
    def _forward(
        self, images: tf.Tensor, others: tuple[tf.Tensor, ...] = ()
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        inputs = [images, *others] if others else images
        features, logits, probabilities = self._cam.model(inputs, training=False)
        return features, logits, probabilities

    def total_score(
        self,
        logits: tf.Tensor,
        probabilities: tf.Tensor,
        class_idx: tf.Tensor,
        score_fn: ScoreFn | None = None,
        image_index: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The sum over the batch of the explained scores of one forward pass, to differentiate.

        Every pass that differentiates a score goes through here, whatever runs the model
        (`_forward`, a guided re-run, FullGrad's probe): top-1 classes are read from the head's
        scores, as `predict` reports them (so the map explains the class `explain` records,
        ties of saturated scores included), and the scores of the first pass of a pass being
        traced are kept for `explain` (see `_pass`).

        Args:
            logits: `(B, num_classes)` logits of the pass.
            probabilities: `(B, num_classes)` the head's scores of the pass.
            class_idx: int32 `(B,)` classes, `TOP_PREDICTION` (-1) for each top-1 class.
            score_fn: the callable target, or `None` for class indices. Defaults to `None`.
            image_index: int32 `(B,)` each image's index in the call (see
                `explained_scores`). Defaults to `None`.

        Returns:
            `(total, class_idx)`: the scalar sum of `explained_scores` (each image's score
            depends only on its own input, so its gradient gives every image its own) and the
            int32 `(B,)` explained classes.
        """
        recorded = getattr(self._tracing, "recorded", None)
        if recorded is not None and not recorded:
            recorded.append(probabilities)
        if score_fn is None:
            class_idx = explained_classes(class_idx, probabilities)
        scores = self.explained_scores(logits, probabilities, class_idx, score_fn, image_index)
        return tf.reduce_sum(scores), class_idx

    def _weighted_maps(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        class_idx: tf.Tensor,
        score_fn: ScoreFn | None = None,
        image_index: tf.Tensor | None = None,
    ) -> tf.Tensor:
        features, grads, class_idx = self.feature_gradients(
            images, others, class_idx, score_fn, image_index
        )
        weights = self.compute_weights(features, grads, class_idx)
        return self.compute_cam(features, weights)

    def explained_scores(
        self,
        logits: tf.Tensor,
        probabilities: tf.Tensor,
        class_idx: tf.Tensor,
        score_fn: ScoreFn | None = None,
        image_index: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """The score each image's map explains, `(B,)`: the hook of methods with their own
        score (FinerCAM).

        Args:
            logits: float32 `(B, num_classes)`.
            probabilities: float32 `(B, num_classes)` (the head's scores).
            class_idx: int32 `(B,)` explained classes (top-1 already resolved).
            score_fn: the callable target, or `None` for class indices. Defaults to `None`.
            image_index: int32 `(B,)` each image's index in the call, for targets holding
                data per image (a mask, a reference embedding). Defaults to `None`.

        Returns:
            `(B,)`: the logit (or probability, `score="probability"`) of each class, or
            `score_fn` of them.
        """
        outputs = logits if self.score == "logit" else probabilities
        return target_scores(outputs, class_idx, score_fn, image_index)

    def feature_gradients(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        class_idx: tf.Tensor,
        score_fn: ScoreFn | None = None,
        image_index: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """One forward (and, if `requires_gradients`, backward) pass of the sub-model.

        Args:
            images: float32 batch, as the model takes it.
            others: the model's other inputs, held fixed (empty for a single-input model).
            class_idx: int32 `(B,)` classes, `TOP_PREDICTION` (-1) for each top-1 class.
            score_fn: the callable target, or `None` for class indices. Defaults to `None`.
            image_index: int32 `(B,)` each image's index in the call (see
                `explained_scores`). Defaults to `None`.

        Returns:
            `(features, grads, class_idx)`: float32 `(B, *cells, C)` features, their gradient
            `dS/dA` (same shape; `None` when `requires_gradients` is False) and the int32
            `(B,)` explained classes.
        """
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            # Watching the input records the whole forward pass even when every weight is
            # frozen; the backward pass still stops at the explained layer.
            tape.watch(images)
            features, logits, probabilities = self._forward(images, others)
            total_score, class_idx = self.total_score(
                logits, probabilities, class_idx, score_fn, image_index
            )
        grads = None
        if self.requires_gradients:
            grads = tf.cast(tape.gradient(total_score, features), tf.float32)
        return tf.cast(features, tf.float32), grads, class_idx

    def _check_inputs(
        self, inputs: Any, check_finite: bool = True
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, ...], bool]:
        """Splits the model's input structure into the checked explained images (float32),
        the other inputs (one row per image, in `CamModel.other_inputs` order, each of its
        input's dtype) and `single`; `check_finite` as in `_check_images`."""
        others = self._cam.other_inputs
        if not others:
            batch, single = self._check_images(inputs, check_finite)
            return batch, (), single
        sources = list(self.model.inputs)
        names = [source.name for source in sources]
        listing = ", ".join(f"{name!r} {tuple(t.shape)}" for name, t in zip(names, sources))
        if isinstance(inputs, dict) and set(inputs) == set(names):
            values = dict(inputs)
        elif isinstance(inputs, (list, tuple)) and len(inputs) == len(names):
            values = dict(zip(names, inputs))
        else:
            given = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"Model {self.model.name!r} takes {len(names)} inputs ({listing}); pass them "
                f"all, in its own structure: a list in this order or a dict keyed by these "
                f"names. Received {given}. The explained input is {self._cam.input_name!r}; "
                "the others are held fixed."
            )
        batch, single = self._check_images(values[self._cam.input_name], check_finite)
        rows = int(batch.shape[0])
        fixed = tuple(check_other_input(values[t.name], t, rows, single) for t in others)
        return batch, fixed, single

    def _check_images(self, images: Any, check_finite: bool = True) -> tuple[tf.Tensor, bool]:
        """Validates images against the model's input; returns a float32 batch and `single`.

        With `check_finite=False` the caller checks that the values are finite (the fused
        pass does, in the same compiled call, with `check_finite_images`)."""
        if not isinstance(images, np.ndarray) and (
            isinstance(images, (tf.Tensor, tf.Variable)) or keras.ops.is_tensor(images)
        ):
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
        check_real_dtype("images", array.dtype)
        expected = self._cam.input_shape
        rank = len(expected) + 1
        channels_first = self._cam.data_format == "channels_first"
        names = _AXIS_NAMES[rank]
        layout = "(" + ", ".join(("C", *names) if channels_first else (*names, "C")) + ")"
        kind = _INPUT_KINDS[rank]
        shape = tuple(array.shape)
        if len(shape) not in (rank - 1, rank):
            raise ValueError(
                f"`images` must be one {kind} {layout} or a batch (B, {layout[1:]} (the model "
                f"takes {kind}s of shape {expected}); received shape {shape}, of rank "
                f"{len(shape)}. Add or remove axes (e.g. with np.expand_dims) to match."
            )
        single = len(shape) == rank - 1
        if single:
            shape = (1, *shape)
        if shape[0] == 0:
            raise ValueError("`images` is an empty batch (shape[0] == 0); pass at least one image.")
        channel_axis = 1 if channels_first else rank - 1
        channels = expected[channel_axis - 1]
        if channels is not None and shape[channel_axis] != channels:
            raise ValueError(
                f"`images` have {shape[channel_axis]} channel(s) (shape {tuple(array.shape)}, "
                f"{layout}), but the model expects {channels}: its input shape is {expected}."
            )
        axes = self._cam.spatial_axes
        sizes = tuple(expected[axis - 1] for axis in axes)
        for axis, name, size in zip(axes, _AXIS_WORDS[rank], sizes):
            if size is not None and shape[axis] != size:
                wanted = "x".join(map(str, sizes))
                raise ValueError(
                    f"`images` have {name} {shape[axis]} (shape {tuple(array.shape)}, {layout}), "
                    f"but the model expects {size}: resize them to {wanted} "
                    "(e.g. with tf.image.resize) first."
                )
        source = next(t for t in self.model.inputs if t.name == self._cam.input_name)
        # An integer input's values are read on the host below: a NaN is named there first.
        check_finite = check_finite or not keras.backend.is_float_dtype(
            keras.backend.standardize_dtype(source.dtype)
        )
        if isinstance(array, np.ndarray):  # checked on the host: no device work
            values = array.astype(np.float32, copy=False).reshape(shape)
            if check_finite:
                check_finite_images(np.isfinite(values.reshape(shape[0], -1)).all(axis=1))
            batch = tf.convert_to_tensor(values)
        else:
            batch = array if array.dtype == tf.float32 else tf.cast(array, tf.float32)
            if tuple(batch.shape) != shape:
                batch = tf.reshape(batch, shape)
            if check_finite:
                check_finite_images(finite_rows(batch).numpy())
        # A model with an integer input takes integer images (explained as float32).
        check_input_values(batch, source.dtype, self.model.name)
        return batch, single
