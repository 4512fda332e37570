"""Walking a Functional or Sequential model's graph: its layers (nested models too), their
output shapes, the input's rank, dtype and data format, and the operation behind its output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras
from keras.src.models.functional import Functional

INPUT_KINDS = {3: "signals (batch, length, channels)", 4: "images (batch, height, width, "
               "channels)", 5: "volumes (batch, depth, height, width, channels)"}
"""The inputs keras_cam explains, by rank (batch axis included): 1-D, 2-D and 3-D grids."""


def is_graph_model(obj: Any) -> bool:
    """Whether `obj` is a Functional or Sequential model, whose layer graph can be walked.

    Args:
        obj: any object, e.g. a layer of a model.

    Returns:
        `True` for a Functional or Sequential model (a subclassed model is `False`).
    """
    return isinstance(obj, (Functional, keras.Sequential))


def input_rank(model: Any) -> int | None:
    """The rank of the model's input, batch axis included: 3 signals, 4 images, 5 volumes.

    Args:
        model: a Keras model with a built input (or any callable: a subclassed model or a
            function has no `inputs` to read).

    Returns:
        The rank, e.g. `4` for `keras.Input((24, 40, 3))`; `None` when it cannot be read.
    """
    try:
        ranks = [len(tensor.shape) for tensor in model.inputs]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    # Of a model with several inputs (an image and its metadata), the spatial one's.
    return next((rank for rank in ranks if rank in INPUT_KINDS), ranks[0] if ranks else None)


def iter_layers(model: keras.Model) -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yields `(path, layer)` in execution order, descending into nested models."""
    for layer in model.layers:
        if is_graph_model(layer):
            for path, inner in iter_layers(layer):
                yield f"{layer.name}/{path}", inner
        else:
            yield layer.name, layer


def output_shape(layer: keras.layers.Layer) -> tuple | None:
    """The shape of `layer`'s single output, or `None` if it has none or several.

    Args:
        layer: a layer of a built model.

    Returns:
        The output shape as a tuple (batch axis included), or `None`.
    """
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return None
    if isinstance(output, (list, tuple)):
        return None
    return tuple(output.shape)


def data_format(model: keras.Model) -> str:
    """The image layout of `model`: that of its first layer with a `data_format`.

    Falls back to `keras.config.image_data_format()` for a model without such a layer.

    Args:
        model: a Functional or Sequential model; nested models are searched too.

    Returns:
        `"channels_last"` or `"channels_first"`.
    """
    for _, layer in iter_layers(model):
        layout = getattr(layer, "data_format", None)
        if layout in ("channels_last", "channels_first"):
            return layout
    return keras.config.image_data_format()


def channels_last_shape(shape: tuple, layout: str) -> tuple:
    """An image shape without the batch axis as `(height, width, channels)`, whatever `layout`.

    Args:
        shape: `(H, W, C)` for `"channels_last"`, `(C, H, W)` for `"channels_first"`.
        layout: the data format of `shape`.

    Returns:
        `(H, W, C)`.

    Example:
    ```python
    channels_last_shape((3, 24, 40), "channels_first")   # (24, 40, 3)
    ```
    """
    shape = tuple(shape)
    return (*shape[1:], shape[0]) if layout == "channels_first" else shape


def input_dtype(model: Any) -> str:
    """The standardized dtype of a model's input; `"float32"` for one without declared inputs.

    Args:
        model: a Keras model (or any callable: a subclassed model has no `inputs` to read).

    Returns:
        e.g. `"float32"`, `"uint8"`.

    Example:
    ```python
    input_dtype(keras.Model(keras.Input((8, 8, 3), dtype="uint8"), ...))   # "uint8"
    ```
    """
    try:
        return keras.backend.standardize_dtype(model.inputs[0].dtype)
    except (AttributeError, IndexError, ValueError):
        return "float32"


def layer_format(layer: keras.layers.Layer, default: str) -> str:
    """The data format `layer` declares, else `default` (the model's)."""
    layout = getattr(layer, "data_format", None)
    return layout if layout in ("channels_last", "channels_first") else default


def iter_nested_models(model: keras.Model) -> Iterator[tuple[str, keras.Model]]:
    """Yields `(path, model)` for every Functional or Sequential model nested in `model`.

    Args:
        model: a Functional or Sequential model.

    Yields:
        `(path, nested)`: the nested model and its path of names, e.g. `"outer/inner"`.
    """
    for layer in model.layers:
        if is_graph_model(layer):
            yield layer.name, layer
            for path, inner in iter_nested_models(layer):
                yield f"{layer.name}/{path}", inner


def output_call(model: keras.Model) -> tuple[Any, Any]:
    """The operation that produces `model`'s output, and the tensor it was called on.

    Args:
        model: a Functional or Sequential model (see `is_graph_model`).

    Returns:
        `(operation, input_tensor)`: the layer (or nested model) whose call gives the model's
        first output, and the first input tensor of that call.

    Example:
    ```python
    pool, features = output_call(keras.applications.VGG16(include_top=False, pooling=None))
    ```
    """
    operation, node_index, _ = model.outputs[0]._keras_history
    return operation, operation._inbound_nodes[node_index].input_tensors[0]


def final_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer that produces the model's output, looking inside a nested final model."""
    if isinstance(model, keras.Sequential):
        last = model.layers[-1]
    else:
        last = model.outputs[0]._keras_history.operation
    return final_layer(last) if is_graph_model(last) else last
