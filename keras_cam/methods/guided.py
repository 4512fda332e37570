"""Guided Backpropagation and Guided Grad-CAM: pixel-resolution maps.

The guided ReLU gradient is applied to this explainer's own pass only: the sub-model's graph is
re-run operation by operation (`keras_cam.surgery.call_with_hook`) and each ReLU's output goes
through an identity whose gradient keeps only the positive part. The user's model, its layers
and every other explainer built on it are untouched.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_cam.methods.base import BaseCAM, place_maps
from keras_cam.methods.gradient import GradCAM
from keras_cam.surgery import call_with_hook, is_relu_operation
from keras_cam.targets import ScoreFn

_RELUS = (
    keras.activations.relu,
    keras.activations.relu6,
    keras.ops.relu,
    keras.ops.relu6,
    tf.nn.relu,
    tf.nn.relu6,
)


def is_relu(operation: Any) -> bool:
    """Whether an operation ends in a ReLU (a `ReLU` layer without a negative slope, a
    layer with `activation="relu"` / `"relu6"` in any spelling, `keras.ops.relu` in a
    Functional graph or a `Lambda` of a ReLU function)."""
    if isinstance(operation, keras.layers.ReLU):
        return not operation.negative_slope
    if is_relu_operation(operation):
        return True
    if isinstance(operation, keras.layers.Lambda):
        activation = operation.function
    else:
        activation = getattr(operation, "activation", None)
    return any(activation is relu for relu in _RELUS)


@tf.custom_gradient
def positive_gradient(values: tf.Tensor) -> tuple[tf.Tensor, Any]:
    """The identity, whose gradient keeps only the positive part of the incoming gradient.

    Placed after a ReLU `y = max(z, 0)`, the gradient reaching `z` is
    `dL/dz = [z > 0] * ReLU(dL/dy)`: the guided ReLU of Springenberg et al. (2015).
    """

    def gradient(upstream: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(upstream)

    return tf.identity(values), gradient


def _guide(operation: Any, output: Any) -> Any:
    return positive_gradient(output) if is_relu(operation) else output


def saliency(gradients: tf.Tensor) -> tf.Tensor:
    """A gradient image as a map: `max_c |g_c|` per pixel (Simonyan et al., 2014).

    Args:
        gradients: float32 `(B, *pixels, C)`.

    Returns:
        float32 `(B, *pixels)`, >= 0.
    """
    return tf.reduce_max(tf.abs(gradients), axis=-1)


class GuidedBackprop(BaseCAM):
    """Guided Backpropagation (Springenberg et al., 2015, https://arxiv.org/abs/1412.6806).

    The gradient of the class score w.r.t. the input pixels, where every ReLU passes back only
    positive gradients at positions where it was active: `dL/dz = [z > 0] * ReLU(dL/dy)`. The
    map is `max_c |g_c|` over the colour channels (`saliency`), at the input's resolution
    (`upsample` changes nothing). pytorch-grad-cam returns the signed `(H, W, 3)` gradient and
    swaps the model's ReLU modules while it runs; keras_cam re-runs the graph with a guided
    gradient of its own (`keras_cam.surgery.call_with_hook`), so the model is never modified.
    ReLUs are `ReLU` layers and layers with `activation="relu"` (or relu6); other activations
    pass the plain gradient (a model with none warns: the map is then the plain gradient).

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer `cam.layer` reports (Guided Grad-CAM's Grad-CAM layer); the guided
            gradient itself always reaches the input. Defaults to `None`.
        **kwargs: the other options of `keras_cam.BaseCAM` (`score`, `layer_call`, `head`,
            `verbose`).

    Warns:
        UserWarning: the model has no ReLU, so nothing is guided.

    Example:
    ```python
    maps = keras_cam.GuidedBackprop(model)(images)   # (B, H, W), pixel-sharp
    ```
    """

    display_name = "Guided Backprop"
    pixel_resolution = True
    supports_eigen_smooth = False  # the map is the input gradient's: no weighted activations

    def __init__(
        self, model: keras.Model, layer: str | keras.layers.Layer | None = None, **kwargs: Any
    ) -> None:
        super().__init__(model, layer, **kwargs)
        if not any(is_relu(operation) for operation in self._cam.model.operations):
            warnings.warn(
                f"keras_cam: model {model.name!r} has no ReLU layer or ReLU activation, so "
                f"{self.display_name} guides nothing: the map is the plain input gradient.",
                stacklevel=2,
            )

    def feature_gradients(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        class_idx: tf.Tensor,
        score_fn: ScoreFn | None = None,
        image_index: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The images and their guided gradients, both channels-last `(B, *pixels, C)`."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            inputs = [images, *others] if others else images
            # The forward values are the model's own; only the backward pass is guided.
            _, logits, probabilities = call_with_hook(self._cam.model, inputs, _guide)
            total_score, class_idx = self.total_score(
                logits, probabilities, class_idx, score_fn, image_index
            )
        grads = tf.cast(tape.gradient(total_score, images), tf.float32)
        if self.data_format == "channels_first":
            rank = images.shape.rank
            images, grads = (tf.transpose(t, (0, *range(2, rank), 1)) for t in (images, grads))
        return images, grads, class_idx

    def compute_weights(self, features, grads, class_idx):
        return grads

    def compute_cam(self, features, weights):
        return saliency(weights)

    def placement(self, *sizes: int) -> tf.Tensor:
        """The identity: the maps already are on the input's pixels."""
        return tf.constant([[0.0, 1.0, 0.0, size] for size in sizes], tf.float32)


class GuidedGradCAM(GuidedBackprop):
    """Guided Grad-CAM (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391, Sec. 3.1).

    `map = GuidedBackprop ⊙ upsample(Grad-CAM)`: the pixel-sharp guided gradient (`max_c |g_c|`,
    see `GuidedBackprop`) masked by the class-discriminative Grad-CAM map of `layer`, placed on
    the input grid. pytorch-grad-cam multiplies the signed `(H, W, 3)` gradient; keras_cam's map
    is `(H, W)` like every method's. Same arguments as `GuidedBackprop`; `layer` is Grad-CAM's.

    Example:
    ```python
    maps = keras_cam.GuidedGradCAM(model)(images, targets=[1, 4])
    ```
    """

    display_name = "Guided Grad-CAM"

    def __init__(
        self, model: keras.Model, layer: str | keras.layers.Layer | None = None, **kwargs: Any
    ) -> None:
        super().__init__(model, layer, **kwargs)
        self.gradcam = GradCAM(model, layer, **kwargs)

    def explain_batch(
        self,
        images: tf.Tensor,
        targets: np.ndarray | ScoreFn,
        others: tuple[tf.Tensor, ...] = (),
    ) -> tf.Tensor:
        guided = super().explain_batch(images, targets, others)
        size = self.image_size(images)
        coarse = self.gradcam.explain_batch(images, targets, others)
        return guided * place_maps(coarse, tf.constant(size), self.gradcam.placement(*size))
