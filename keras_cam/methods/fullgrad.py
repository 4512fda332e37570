"""FullGrad: the input-gradient term plus the bias-gradient term of every conv / BN layer."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_cam.methods.base import BaseCAM
from keras_cam.surgery import Head, layer_calls
from keras_cam.targets import ScoreFn

BIAS_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.BatchNormalization,
)
"""Layers whose bias FullGrad reads (those of pytorch-grad-cam: convolutions and BN)."""


def layer_bias(layer: keras.layers.Layer) -> tf.Tensor | None:
    """The bias a layer adds per output channel, or `None` if it adds none.

    A convolution's `bias` (when `use_bias`); for `BatchNormalization` at inference, the bias of
    its affine map `gamma (x - mean) / sqrt(var + eps) + beta`, i.e.
    `beta - gamma * mean / sqrt(var + eps)` (as pytorch-grad-cam's FullGrad reads it). Read
    from the layer's variables: inside a compiled pass, at each run, so an explainer reused
    while the model trains (`keras_cam.HeatmapCallback`) sees the current weights.

    Args:
        layer: a layer of `BIAS_LAYERS`.

    Returns:
        float32 `(C,)` tensor, or `None` for a convolution without bias.
    """
    if isinstance(layer, keras.layers.BatchNormalization):
        gamma = tf.convert_to_tensor(layer.gamma) if layer.scale else 1.0
        beta = tf.convert_to_tensor(layer.beta) if layer.center else 0.0
        variance = tf.convert_to_tensor(layer.moving_variance)
        scale = gamma / tf.sqrt(variance + layer.epsilon)
        return tf.cast(beta - scale * tf.convert_to_tensor(layer.moving_mean), tf.float32)
    if not layer.use_bias:
        return None
    return tf.cast(tf.convert_to_tensor(layer.bias), tf.float32)


def normalized_sum(maps: Any) -> tf.Tensor:
    """Min-max normalizes each channel of each map, then sums the channels (pure).

    Args:
        maps: float `(B, h, w, C)`, non-negative.

    Returns:
        float32 `(B, h, w)`: `sum_c (m_c - min m_c) / (max m_c - min m_c)` (a constant channel
        counts as 0).

    Example:
    ```python
    normalized_sum([[[[0.0]], [[2.0]]]])   # one 2x1 map: [[[0.0], [1.0]]]
    ```
    """
    maps = tf.cast(maps, tf.float32)
    low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    high = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return tf.reduce_sum(tf.math.divide_no_nan(maps - low, high - low), axis=-1)


class FullGrad(BaseCAM):
    """FullGrad (Srinivas & Fleuret, NeurIPS 2019, https://arxiv.org/abs/1905.00780).

    The full-gradient decomposition of the score `y = grad_x y . x + sum_l grad_{b_l} y . b_l`
    (Eq. 2) gives the saliency map (Eq. 4, with pytorch-grad-cam's post-processing `psi`:
    absolute value, per-map min-max normalization, bilinear resize to the input, sum):

    `S = sum_c psi(|x (.) grad_x y|_c) + sum_l sum_c psi(|b_{l,c} * dy/dz_{l,c}|)`

    where the first term runs over the input channels, `z_l` is the pre-activation output of
    bias layer `l` and `b_l` its bias. The bias layers are every call of a `Conv2D`,
    `DepthwiseConv2D`, `SeparableConv2D` with `use_bias` and every `BatchNormalization` (its
    inference bias `beta - gamma mean / sqrt(var + eps)`, `layer_bias`), in nested models too.
    A model with neither (no conv bias, no BN) gets the input-gradient term alone. A fused
    `relu` activation is undone exactly (`dy/dz = dy/da * [a > 0]`); a layer with another
    fused activation is refused, since its pre-activation gradient cannot be read from its
    output. Each layer's channels are normalized and summed at the layer's resolution, then
    resized (bilinear) to the input, which equals resizing each channel first (the resize is
    linear). The resize stretches the layer's grid over the image, as pytorch-grad-cam does;
    it does not follow the crops and paddings that `keras_cam.BaseCAM` places maps with.

    The map is at the input's resolution: `upsample=False` returns it as is. The score is the
    logit (`score="logit"`) or the probability; `layer` must be `None` (every bias layer takes
    part).

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported). It is
            not modified.
        layer: must be `None`. Defaults to `None`.
        layer_call: must be `None` (accepted so tools can pass it). Defaults to `None`.
        score: `"logit"` or `"probability"` (see `keras_cam.BaseCAM`). Defaults to `"logit"`.
        head: how to read the model's output (see `keras_cam.BaseCAM`). Defaults to `None`.
        verbose: accepted for uniformity; FullGrad runs one pass. Defaults to `0`.
        output: the explained output of a model with several (see `keras_cam.BaseCAM`).
            Defaults to `None`.
        input: the explained input (see `keras_cam.BaseCAM`); a model with several inputs is
            refused. Defaults to `None`.

    Attributes:
        bias_layers: the layers whose bias terms are summed, input first.

    Raises:
        ValueError: a `layer` or `layer_call` given; a bias layer with a fused activation
            other than `relu` or linear (the message names it), and what `keras_cam.BaseCAM`
            refuses.

    Example:
    ```python
    maps = keras_cam.FullGrad(model)(images)   # (B, H, W)
    ```
    """

    display_name = "FullGrad"
    supports_eigen_smooth = False
    pixel_resolution = True

    def __init__(
        self,
        model: keras.Model,
        layer: None = None,
        *,
        score: str = "logit",
        layer_call: None = None,
        head: str | Head | None = None,
        verbose: int = 0,
        output: int | str | None = None,
        input: int | str | None = None,
    ) -> None:
        if layer is not None or layer_call is not None:
            raise ValueError(
                "FullGrad sums the bias-gradients of every convolution and BatchNormalization "
                "layer and the input gradient, so `layer` and `layer_call` must be None; "
                f"received layer={layer!r}, layer_call={layer_call!r}. "
                "Use a CAM method (e.g. keras_cam.GradCAM) to explain one layer."
            )
        super().__init__(
            model, None, score=score, head=head, verbose=verbose, output=output, input=input
        )
        if len(self._cam.input_shape) != 3 or self._cam.other_inputs:
            raise ValueError(
                f"FullGrad explains single-input image models (B, H, W, C); model "
                f"{model.name!r} takes {len(self.model.inputs)} input(s), the explained one of "
                f"shape {self._cam.input_shape}. Use keras_cam.GradCAM (any rank, several "
                "inputs) instead."
            )
        calls = []
        for called, output in layer_calls(self._cam, BIAS_LAYERS):
            if layer_bias(called) is None:
                continue
            activation = _activation(called)
            if activation not in ("linear", "relu"):
                raise ValueError(
                    f"FullGrad needs the pre-activation gradient of layer {called.name!r}, but "
                    f"its activation {activation!r} is fused into it. Build the model with the "
                    "activation as a layer of its own (keras.layers.Activation), or use another "
                    "method."
                )
            calls.append((called, output, activation == "relu"))
        self.bias_layers: list[keras.layers.Layer] = [call[0] for call in calls]
        self._calls = calls
        self._probe = keras.Model(
            self._cam.model.inputs,
            [*self._cam.model.outputs[1:], *[call[1] for call in calls]],
            name=f"{self._cam.model.name}_fullgrad",
        )

    def placement(self, *sizes: int) -> tf.Tensor:
        """The maps are on the input's pixels already: the identity placement."""
        return tf.constant([[0.0, 1.0, 0.0, size] for size in sizes], tf.float32)

    def compute_weights(self, features, grads, class_idx):  # noqa: D102 -- unused
        raise NotImplementedError("FullGrad has no channel weights; see `_weighted_maps`.")

    def _weighted_maps(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        class_idx: tf.Tensor,
        score_fn: ScoreFn | None = None,
        image_index: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """The FullGrad map of each image, on the input grid `(B, H, W)` (one pass)."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            logits, probabilities, *outputs = self._probe(images, training=False)
            total, class_idx = self.total_score(
                logits, probabilities, class_idx, score_fn, image_index
            )
        grads = tape.gradient(total, [images, *outputs])
        channels_first = self._cam.data_format == "channels_first"
        input_term = tf.abs(images * grads[0])
        if channels_first:
            input_term = tf.transpose(input_term, (0, 2, 3, 1))
        size = tf.shape(input_term)[1:3]
        saliency = normalized_sum(input_term)
        for (called, _, relu), output, grad in zip(self._calls, outputs, grads[1:]):
            bias = layer_bias(called)  # the current weights, read in the pass
            grad = tf.cast(grad, tf.float32)
            if relu:
                grad = grad * tf.cast(output > 0, tf.float32)
            if _channel_axis(called) == 1:
                grad = tf.transpose(grad, (0, 2, 3, 1))
            term = normalized_sum(tf.abs(grad * bias))
            saliency += tf.image.resize(term[..., tf.newaxis], size)[..., 0]
        return saliency


def _activation(layer: keras.layers.Layer) -> str:
    """The name of a layer's fused activation (`"linear"` when it has none)."""
    function = getattr(layer, "activation", None)
    if function is None or function is keras.activations.linear:
        return "linear"
    return getattr(function, "__name__", repr(function))


def _channel_axis(layer: keras.layers.Layer) -> int:
    """1 for a channels-first layer, -1 otherwise."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return 1 if layer.axis in (1, -3) else -1
    return 1 if layer.data_format == "channels_first" else -1
