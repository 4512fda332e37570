"""CAM: the original class activation map, read straight from a GAP -> Dense head.

The head is found by walking the model's graph back from its output: an optional softmax /
sigmoid layer, the `Dense` classifier, any layers that are the identity at inference
(`Dropout` and its relatives, `Flatten`), and the `GlobalAveragePooling2D` layer whose input
is the explained feature map. Nested models (a `keras.applications` base inside a Sequential,
or a head built as its own model) are walked through.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers as klayers

from keras_cam.methods.base import BaseCAM
from keras_cam.surgery import (
    Head,
    _final_layer,
    _is_graph_model,
    activation_name,
    passes_values,
    read_head,
    resolve_layer,
)
from keras_cam.targets import ScoreFn

# Layers that are the identity at inference, allowed between the pooling and the Dense layer.
@dataclasses.dataclass(frozen=True)
class GapHead:
    """The classification head of a conv -> GlobalAveragePooling2D -> Dense model.

    Attributes:
        features: the layer whose output is pooled (its feature maps are what CAM weighs).
        pooling: the `GlobalAveragePooling2D` layer.
        dense: the `Dense` classifier; its kernel `(C, num_units)` holds the CAM weights.
        head: how the model's output is read (`keras_cam.surgery.read_head`): its softmax,
            sigmoid or log_softmax sits in the Dense layer or in a separate operation after
            it, or the Dense layer is linear.
        layers: every layer of the head, from the pooling layer to the model's output.
    """

    features: keras.layers.Layer
    pooling: klayers.GlobalAveragePooling2D
    dense: klayers.Dense
    head: Head
    layers: tuple[keras.layers.Layer, ...]


def _producer(tensor: Any, outer: tuple[Any, ...] = ()) -> tuple[keras.layers.Layer, Any, tuple]:
    """The layer (never a nested model) that produced `tensor`, with its graph node.

    Steps into a nested model through its output, and out of it through its input: `outer`
    is the stack of nodes at which nested models were entered.
    """
    operation, node_index, _ = tensor._keras_history
    while _is_graph_model(operation):
        outer = (*outer, operation._inbound_nodes[node_index])
        operation, node_index, _ = operation.outputs[0]._keras_history
    if isinstance(operation, klayers.InputLayer) and outer:
        return _producer(outer[-1].input_tensors[0], outer[:-1])
    return operation, operation._inbound_nodes[node_index], outer


def _describe(chain: list[keras.layers.Layer]) -> str:
    return " <- ".join(f"{layer.name!r} ({type(layer).__name__})" for layer in chain)


def find_gap_head(model: keras.Model, head: str | Head | None = None) -> GapHead:
    """Finds the conv -> GlobalAveragePooling2D -> Dense head that CAM needs.

    Accepted between the pooling and the output: layers that pass values through at inference
    (`Dropout`, `Flatten`...: see `keras_cam.surgery.passes_values`), then a `Dense`
    layer whose activation is a softmax, sigmoid, log_softmax or linear, or a linear `Dense`
    followed by the softmax / sigmoid / log_softmax as an operation of its own (`Softmax`,
    `Activation`, `Lambda(tf.nn.softmax)`, `keras.ops.softmax(x)`), in any spelling
    `keras_cam.surgery.read_head` recognises, and again layers that pass values through. The
    head and the base may sit in nested models.

    Args:
        model: a single-input, single-output Functional or Sequential classifier.
        head: how to read the model's output (see `keras_cam.surgery.read_head`): `None`
            for automatic, or one of `keras_cam.surgery.HEADS`. Defaults to `None`.

    Returns:
        A `GapHead` naming the feature layer, the pooling, the Dense layer and the activation.

    Raises:
        TypeError: `model` is not a traceable Keras model.
        ValueError: the model does not end with such a head; the message shows what it ends
            with and names `keras_cam.retrofit_gap`, which builds a model that does.

    Example:
    ```python
    head = find_gap_head(keras.applications.ResNet50(weights=None))
    head.features.name, head.dense.name   # ("conv5_block3_out", "predictions")
    ```
    """
    reading = read_head(model, head)
    layer, node, outer = _producer(model.outputs[0])
    chain = [layer]

    def step() -> None:
        nonlocal layer, node, outer
        layer, node, outer = _producer(node.input_tensors[0], outer)
        chain.append(layer)

    while passes_values(layer):  # e.g. a float32 Activation("linear") after the softmax
        step()
    if reading.pre_activation == "input":  # the activation is an operation of its own
        step()
    dense = layer
    # The Dense layer's kernel gives the logits if it is linear, or if its own activation is
    # one whose input `read_head` takes as the logits.
    is_head = (
        isinstance(dense, klayers.Dense)
        and len(node.input_tensors[0].shape) == 2
        and (activation_name(dense) == "linear" or reading.pre_activation == "dense")
    )
    if is_head:
        step()
        while passes_values(layer):
            step()
        pooling = layer
        if isinstance(pooling, klayers.GlobalAveragePooling2D):
            step()
            if not isinstance(layer, klayers.InputLayer):
                return GapHead(
                    features=layer,
                    pooling=pooling,
                    dense=dense,
                    head=reading,
                    layers=tuple(reversed(chain[:-1])),
                )
    raise ValueError(
        f"CAM needs a model that ends with convolutional feature maps -> GlobalAveragePooling2D "
        "-> Dense (Dropout may sit between them; the softmax or sigmoid may be "
        "in the Dense layer or a separate layer after it; another activation has no CAM). "
        f"Model {model.name!r} ends with: "
        f"{_describe(chain)}. Build such a model from its convolutional base with "
        "`keras_cam.retrofit_gap` (and train the new head with `keras_cam.fine_tune_gap`), or "
        "use `keras_cam.GradCAM`, which works with any head."
    )


def cam_weights(kernel: Any, class_idx: Any, binary: bool = True) -> tf.Tensor:
    """CAM's channel weights: the Dense kernel's column of each image's class.

    A single-unit kernel of a binary head is expanded to two classes the way
    `build_cam_model` expands the logits to `[-z, z]`: class 1 gets `+w`, class 0 gets `-w`.

    Args:
        kernel: the Dense kernel `w`, `(C, num_units)`.
        class_idx: int `(B,)` class of each image, in `[0, num_classes)`.
        binary: whether a single-unit kernel is a binary classifier (expanded to two
            classes) rather than one raw score (`head="linear"`, kept as one class).
            Defaults to `True`.

    Returns:
        float32 `(B, C)` with row `b` equal to `w[:, class_idx[b]]`.

    Example:
    ```python
    cam_weights([[1.0, 2.0], [3.0, 4.0]], [1, 0])   # [[2., 4.], [1., 3.]]
    ```
    """
    kernel = tf.cast(kernel, tf.float32)
    if binary and kernel.shape[-1] == 1:
        kernel = tf.concat([-kernel, kernel], axis=-1)
    return tf.gather(tf.transpose(kernel), class_idx)


class CAM(BaseCAM):
    """CAM (Zhou et al., 2016, https://arxiv.org/abs/1512.04150).

    For a model whose logits are `z_c = sum_k w_k^c * mean_ij(A^k_ij) + b_c` (convolutional
    feature maps `A`, then GlobalAveragePooling2D, then a Dense layer with kernel `w`), the
    map of class `c` is

        map_c = ReLU(sum_k w_k^c A^k)

    read directly from the Dense kernel: one forward pass, no gradient. The bias `b_c` is the
    same at every position, so it is left out, as in the paper (the spatial mean of the map
    before the ReLU, plus `b_c`, is exactly the logit `z_c`); the ReLU and the min-max
    normalization are those of every method here. On such a model CAM equals Grad-CAM with
    the logit score (whose weights are `w_k^c / (h * w)`) after normalization.

    The head is found automatically, also through Dropout, a separate Softmax/Activation
    layer and nested models (see `find_gap_head`). For a single-unit sigmoid head, class 1 is
    the positive class (weights `+w`) and class 0 its complement (weights `-w`).

    Args:
        model: a Functional or Sequential classifier ending with conv feature maps ->
            GlobalAveragePooling2D -> Dense. `keras_cam.retrofit_gap` builds one from any
            convolutional base.
        layer: the layer whose output feeds the pooling (a name or the layer object; a nested
            model whose output it is also works), or `None` to find it. CAM is defined only
            on that layer. Defaults to `None`.
        layer_call: which call of that layer to explain when the model makes several (see
            `keras_cam.BaseCAM`). Defaults to `None`.
        head: how to read the model's output: `None` for automatic, or one of
            `keras_cam.surgery.HEADS` (see `keras_cam.BaseCAM`). Defaults to `None`.

    Attributes:
        head: the `GapHead` found (`cam.head.dense.kernel` holds the class weights).

    Raises:
        ValueError: the model has no GAP -> Dense head, `layer` is not the pooled layer, or
            (when called) `targets` is a callable: CAM needs class indices.

    Example:
    ```python
    model = keras_cam.retrofit_gap("vgg16", num_classes=10, weights="imagenet")
    ...  # keras_cam.fine_tune_gap(model, train_data)
    cam = keras_cam.CAM(model)
    maps = cam(images, targets=[3, 7])   # (2, 224, 224) float32 in [0, 1]
    ```
    """

    requires_gradients = False
    display_name = "CAM"

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        layer_call: int | None = None,
        head: str | Head | None = None,
    ) -> None:
        self.head = find_gap_head(model, head)
        features = self.head.features
        if layer is not None:
            chosen = resolve_layer(model, layer)
            if chosen is not features and not (
                _is_graph_model(chosen) and _final_layer(chosen) is features
            ):
                raise ValueError(
                    f"CAM is defined only on the feature maps that feed the "
                    f"GlobalAveragePooling2D layer {self.head.pooling.name!r}, i.e. layer "
                    f"{features.name!r}; received `layer`={chosen.name!r}. Pass `layer=None`, or "
                    "use `keras_cam.GradCAM` to explain another layer."
                )
        super().__init__(model, features, layer_call=layer_call, head=self.head.head)

    def compute_weights(
        self, features: tf.Tensor, grads: tf.Tensor | None, class_idx: tf.Tensor
    ) -> tf.Tensor:
        """Returns the Dense kernel's column of each image's class, `(B, C)`."""
        return cam_weights(self.head.dense.kernel, class_idx, self.head.head.binary)

    def explain_batch(self, images: tf.Tensor, targets: np.ndarray | ScoreFn) -> tf.Tensor:
        """Raw maps `(B, h, w)` for class indices; refuses a callable target."""
        if callable(targets):
            raise ValueError(
                "CAM reads the weights of one class from the Dense kernel, so `targets` must be "
                "None, a class index or one index per image; received a callable score "
                f"({getattr(targets, '__name__', type(targets).__name__)}). Use "
                "`keras_cam.GradCAM` for arbitrary differentiable scores."
            )
        return super().explain_batch(images, targets)
