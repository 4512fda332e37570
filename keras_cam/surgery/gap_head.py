"""The conv -> GlobalAveragePooling -> Dense head that CAM needs, found by walking the graph
back from the model's output (`find_gap_head`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import layers as klayers

from keras_cam.surgery.graph import is_graph_model
from keras_cam.surgery.head import Head, activation_name, passes_values, read_head

_GLOBAL_AVERAGE = (
    klayers.GlobalAveragePooling1D,
    klayers.GlobalAveragePooling2D,
    klayers.GlobalAveragePooling3D,
)


@dataclasses.dataclass(frozen=True)
class GapHead:
    """The classification head of a conv -> GlobalAveragePooling2D -> Dense model.

    Attributes:
        features: the layer whose output is pooled (its feature maps are what CAM weighs).
        pooling: the `GlobalAveragePooling2D` layer (`GlobalAveragePooling1D` for a signal
            model, `GlobalAveragePooling3D` for a volume model).
        dense: the `Dense` classifier; its kernel `(C, num_units)` holds the CAM weights.
        head: how the model's output is read (`keras_cam.surgery.read_head`): its softmax,
            sigmoid or log_softmax sits in the Dense layer or in a separate operation after
            it, or the Dense layer is linear.
        layers: every layer of the head, from the pooling layer to the model's output.
    """

    features: keras.layers.Layer
    pooling: keras.layers.Layer
    dense: klayers.Dense
    head: Head
    layers: tuple[keras.layers.Layer, ...]


def _producer(tensor: Any, outer: tuple[Any, ...] = ()) -> tuple[keras.layers.Layer, Any, tuple]:
    """The layer (never a nested model) that produced `tensor`, with its graph node.

    Steps into a nested model through its output, and out of it through its input: `outer`
    is the stack of nodes at which nested models were entered.
    """
    operation, node_index, _ = tensor._keras_history
    while is_graph_model(operation):
        outer = (*outer, operation._inbound_nodes[node_index])
        operation, node_index, _ = operation.outputs[0]._keras_history
    if isinstance(operation, klayers.InputLayer) and outer:
        return _producer(outer[-1].input_tensors[0], outer[:-1])
    return operation, operation._inbound_nodes[node_index], outer


def _describe(chain: list[keras.layers.Layer]) -> str:
    return " <- ".join(f"{layer.name!r} ({type(layer).__name__})" for layer in chain)


def find_gap_head(model: keras.Model, head: str | Head | None = None) -> GapHead:
    """Finds the conv -> GlobalAveragePooling2D -> Dense head that CAM needs.

    Signal and volume models end with `GlobalAveragePooling1D` / `GlobalAveragePooling3D`
    instead; their heads are found the same way.

    Accepted between the pooling and the output: layers that are the identity at inference
    (`Dropout`, `GaussianDropout`, `GaussianNoise`, `AlphaDropout`, `Flatten`), then a `Dense`
    layer whose activation is a softmax, sigmoid, log_softmax or linear, or a linear `Dense`
    followed by the softmax / sigmoid / log_softmax as an operation of its own (`Softmax`,
    `Activation`, `Lambda(tf.nn.softmax)`, `keras.ops.softmax(x)`), in any spelling
    `keras_cam.surgery.read_head` recognises. The head and the base may sit in nested models.

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
        if isinstance(pooling, _GLOBAL_AVERAGE):
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
