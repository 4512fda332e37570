"""Model surgery: pick the explained layer and expose it next to the logits and probabilities.

`build_cam_model` re-traces the user's model on a fresh `keras.Input`, calling the *same* layer
objects (so weights are shared, never copied, and the user's model is not modified), and records
three tensors on the way: the chosen layer's feature maps, the pre-softmax logits and the
probabilities. Nested models (a `keras.applications` base inside a Sequential or Functional
model) are re-traced layer by layer, so a layer deep inside them can be exposed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers as klayers
from keras import ops
from keras.src.models.functional import Functional
from keras.src.models.functional import operation_fn as functional_operation_fn
from keras.src.ops import nn as keras_nn_ops
from keras.src.ops.numpy import Flip, Fliplr

from keras_cam.geometry import Grid, layer_grid, spatial_axes, spatial_sizes

logger = logging.getLogger("keras_cam")

_POOLING = (
    klayers.MaxPooling1D,
    klayers.MaxPooling2D,
    klayers.MaxPooling3D,
    klayers.AveragePooling1D,
    klayers.AveragePooling2D,
    klayers.AveragePooling3D,
)
_GLOBAL_AVERAGE = (
    klayers.GlobalAveragePooling1D,
    klayers.GlobalAveragePooling2D,
    klayers.GlobalAveragePooling3D,
)
INPUT_KINDS = {3: "signals (batch, length, channels)", 4: "images (batch, height, width, "
               "channels)", 5: "volumes (batch, depth, height, width, channels)"}
"""The inputs keras_cam explains, by rank (batch axis included): 1-D, 2-D and 3-D grids."""
# Layers that are activations of their own; one keras_cam does not recognise gets a warning.
_ACTIVATION_LAYERS = (klayers.ReLU, klayers.LeakyReLU, klayers.ELU, klayers.PReLU)


@dataclasses.dataclass(frozen=True)
class CamModel:
    """The Functional sub-model behind every explainer.

    Attributes:
        model: `inputs -> (features, logits, scores)`, sharing the user's weights. Logits
            and scores are float32 `(B, num_classes)` as `head` reads them (`Head.logits`,
            `Head.scores`): scores are probabilities for a classifier and the raw output for
            a `"linear"` head; a binary single-unit head is expanded to two classes: logits
            `[-z, z]`, probabilities `[1 - p, p]`.
        layer: the explained layer.
        head: the `Head` reading of the model's output (see `read_head`).
        num_classes: number of classes (2 for a binary single-unit head, 1 for a single raw
            score).
        input_shape: the model's input shape without the batch axis, e.g. `(224, 224, 3)`
            (`(3, 224, 224)` channels-first); spatial dimensions may be `None`.
        data_format: `"channels_last"` or `"channels_first"`: the layout of the model's input.
            The sub-model's features are always channels-last `(B, *cells, C)`: `(B, h, w, C)`
            for images (tokens reshaped to their patch grid), `(B, t, C)` for signals,
            `(B, d, h, w, C)` for volumes.
        placement: `placement(*sizes)` (e.g. `placement(height, width)`) -> float32 `(n, 4)`:
            where the feature map sits on an input of those spatial sizes, `(offset, scale,
            lo, hi)` per spatial axis, for `keras_cam.methods.base.place_maps`.
        input_name: the name of the explained input.
        other_inputs: the model's other inputs (symbolic tensors, in the model's order), held
            fixed while explaining; the sub-model takes `[explained, *other_inputs]` when
            there are any, else the explained input alone.
    """

    model: keras.Model
    layer: keras.layers.Layer
    head: Head
    num_classes: int
    input_shape: tuple[int | None, ...]
    data_format: str
    placement: Callable[..., np.ndarray]
    input_name: str = ""
    other_inputs: tuple[Any, ...] = ()

    @property
    def image_shape(self) -> tuple[int | None, ...]:
        """The input shape as `(height, width, channels)`, whatever the data format."""
        return channels_last_shape(self.input_shape, self.data_format)

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        """Spatial axes of an input batch: `(1, 2)` for images (`(2, 3)` channels-first),
        `(1,)` for signals, `(1, 2, 3)` for volumes."""
        return spatial_axes(self.data_format, len(self.input_shape) + 1)


def is_graph_model(obj: Any) -> bool:
    """Whether `obj` is a Functional or Sequential model, whose layer graph can be walked.

    Args:
        obj: any object, e.g. a layer of a model.

    Returns:
        `True` for a Functional or Sequential model (a subclassed model is `False`).
    """
    return isinstance(obj, (Functional, keras.Sequential))


def is_readable(model: Any) -> bool:
    """Whether `read_head` can read `model`: a Functional or Sequential model with one
    `(batch, ..., units)` output.

    Args:
        model: any object, e.g. the callable a metric is given.

    Returns:
        `True` when the model's graph, and so its head, can be read.
    """
    if not is_graph_model(model):
        return False
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return False
    return bool(inputs) and len(outputs) == 1 and len(outputs[0].shape) >= 2


def check_model(model: Any, input: int | str | None = None) -> int:
    """Raises a clear error unless `model` is a traceable single-output Keras model whose
    explained input is an image batch; returns the index of that input.

    Args:
        model: the object to check.
        input: the explained input of a model with several (see `select_input`). Defaults
            to `None` (the only input).

    Returns:
        The index of the explained input in `model.inputs`.

    Raises:
        TypeError: not a Keras model, or a subclassed model (its graph cannot be traced).
        ValueError: an unbuilt Sequential model, several outputs (choose one with
            `select_output`), several inputs without `input`, or an input that is not 4-D.
    """
    check_graph_model(model)
    index = select_input(model, input)
    shape = tuple(model.inputs[index].shape)
    if len(shape) not in INPUT_KINDS:
        raise ValueError(
            f"`model` must take {', '.join(INPUT_KINDS.values())} (or channels-first); its "
            f"input {model.inputs[index].name!r} has shape {shape}. Class activation maps need "
            "an input with 1 to 3 spatial axes and a channel axis (add one with a Reshape if "
            "missing)."
        )
    return index


def check_graph_model(model: Any) -> None:
    """Raises a clear error unless `model` is a built Functional or Sequential model with one
    output.

    Args:
        model: the object to check.

    Raises:
        TypeError: not a Keras model, or a subclassed model (its graph cannot be traced).
        ValueError: an unbuilt Sequential model, or several outputs (the message lists them
            and names `output=`).
    """
    _check_traceable(model)
    output_index(model, None)


def _check_traceable(model: Any) -> None:
    """Refuses anything but a built Functional or Sequential model."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model; received an object of type {type(model).__name__}."
        )
    if not is_graph_model(model):
        raise TypeError(
            f"`model` is a subclassed Keras model ({type(model).__name__}) whose layer graph cannot "
            "be traced, so its intermediate feature maps are not reachable. Rebuild it with the "
            "Functional API (`inputs = keras.Input(shape); outputs = ...; keras.Model(inputs, "
            "outputs)`) or a keras.Sequential, or pass the Functional backbone and head it wraps."
        )
    try:
        model.inputs, model.outputs  # noqa: B018 -- raises for an unbuilt Sequential
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"`model` ({model.name}) has no defined inputs yet: build it first, e.g. start the "
            "Sequential with `keras.Input(shape=(H, W, C))` or call `model.build((None, H, W, C))`."
        ) from error


def _listing(tensors: list[Any], names: list[str]) -> str:
    return ", ".join(
        f"{i}: {name!r} {tuple(t.shape)}" for i, (name, t) in enumerate(zip(names, tensors))
    )


def _choose(what: str, value: Any, names: list[str], tensors: list[Any], model: Any) -> int:
    """The index `value` (a name, an index or `None` for the only one) names among `names`."""
    listing = _listing(tensors, names)
    if value is None:
        if len(names) == 1:
            return 0
        raise ValueError(
            f"`model` {model.name!r} has {len(names)} {what}s ({listing}); choose the {what} "
            f"to explain with `{what}=` (a name or an index)."
        )
    if isinstance(value, str) and value in names:
        return names.index(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if -len(names) <= value < len(names):
            return int(value) % len(names)
    raise ValueError(
        f"`{what}`={value!r} is not an {what} of model {model.name!r}; its {what}s are "
        f"({listing}): pass one of their names or indices."
    )


def output_names(model: keras.Model) -> list[str]:
    """The names of a model's outputs, in order (the names of the layers that produce them)."""
    names = getattr(model, "output_names", None)
    if names and len(names) == len(model.outputs):
        return list(names)
    return [tensor._keras_history.operation.name for tensor in model.outputs]


def output_index(model: keras.Model, output: int | str | None) -> int:
    """The index of the explained output of `model` in `model.outputs`.

    Args:
        model: a Functional or Sequential model.
        output: an output's name (its layer's name, as `model.output_names` lists them) or
            index, or `None` for the only output.

    Returns:
        The index.

    Raises:
        ValueError: no such output, or `None` for a model with several; the message lists
            the outputs with their shapes.
    """
    return _choose("output", output, output_names(model), list(model.outputs), model)


def select_output(model: keras.Model, output: int | str | None = None) -> keras.Model:
    """The model to explain for one of its outputs: a Functional view sharing its layers.

    A multi-task or auxiliary-head model is explained one output at a time: the view
    `keras.Model(model.input, model.outputs[k])` calls the same layer objects (no weight is
    copied, the model is not modified) and has that output only.

    Args:
        model: a Functional or Sequential Keras model.
        output: the output's name or index, or `None` for the only output. Defaults to
            `None`.

    Returns:
        `model` itself when it has one output, else the single-output view.

    Raises:
        TypeError: `model` is not a traceable Keras model.
        ValueError: no such output, or `None` for a model with several (the message lists
            the outputs and their shapes).

    Example:
    ```python
    aux = select_output(model, "aux_logits")
    kc.GradCAM(model, output="aux_logits")   # the same, inside every explainer
    ```
    """
    _check_traceable(model)
    index = output_index(model, output)
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.input, model.outputs[index], name=model.name)


def select_input(model: keras.Model, input: int | str | None = None) -> int:
    """The index of the explained input of `model` in `model.inputs`.

    Args:
        model: a Functional or Sequential Keras model.
        input: the input's name (that of its `keras.Input`) or index, or `None` for the only
            input. Defaults to `None`.

    Returns:
        The index.

    Raises:
        ValueError: no such input, or `None` for a model with several (the message lists
            the inputs and their shapes).

    Example:
    ```python
    select_input(image_and_metadata_model, "image")   # 0
    ```
    """
    names = [tensor.name for tensor in model.inputs]
    return _choose("input", input, names, list(model.inputs), model)


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


def _layer_format(layer: keras.layers.Layer, default: str) -> str:
    layout = getattr(layer, "data_format", None)
    return layout if layout in ("channels_last", "channels_first") else default


def is_spatial(shape: tuple | None, layout: str = "channels_last", rank: int = 4) -> bool:
    """A map of the model input's `rank` (4 for images, 3 signals, 5 volumes) with at least
    one spatial axis longer than 1 (unknown sizes count as long)."""
    if shape is None or len(shape) != rank:
        return False
    return any(
        dim is None or dim > 1 for dim in spatial_sizes(shape, spatial_axes(layout, rank))
    )


def _has_conv_kernel(layer: keras.layers.Layer, rank: int) -> bool:
    """A convolution over `rank - 2` spatial axes: a kernel of rank `rank` (Conv1D: 3)."""
    return any(len(weight.shape) == rank for weight in layer.weights)


def spatial_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """Lists the layers that can be explained: outputs of the input's rank (4-D for images,
    3-D for signals, 5-D for volumes) with a spatial axis > 1.

    Only layers from the first convolution on count (an input rescaling layer is spatial but
    carries no learned features).

    Args:
        model: a Functional or Sequential Keras model; nested models are searched too.

    Returns:
        `(path, layer)` pairs in execution order; the path names nested models, e.g.
        `"vgg16/block5_conv3"`.
    """
    candidates = []
    seen_conv = False
    layout, rank = data_format(model), input_rank(model)
    for path, layer in iter_layers(model):
        seen_conv = seen_conv or _has_conv_kernel(layer, rank)
        if seen_conv and is_spatial(output_shape(layer), _layer_format(layer, layout), rank):
            candidates.append((path, layer))
    return candidates


def token_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """Lists the token layers after the last spatial layer of an image model (a ViT's blocks).

    A token layer outputs `(batch, N, D)` tokens with `N >= h * w`, the cells of the last
    spatial layer (the patch embedding): the patch tokens, plus extra (class, register) ones.

    Args:
        model: a Functional or Sequential Keras model taking images; nested models are
            searched too.

    Returns:
        `(path, layer)` pairs in execution order; empty for a model without tokens (or one
        whose sizes are unknown).
    """
    spatial = spatial_layers(model)
    if input_rank(model) != 4 or not spatial:
        return []
    last = spatial[-1][1]
    cells = spatial_sizes(output_shape(last), spatial_axes(_layer_format(last, data_format(model))))
    if None in cells:
        return []
    layers = [layer for _, layer in iter_layers(model)]
    after = layers.index(last) + 1 if last in layers else len(layers)
    found = []
    for path, layer in list(iter_layers(model))[after:]:
        shape = output_shape(layer)
        if shape is not None and len(shape) == 3 and (shape[1] or 0) >= cells[0] * cells[1]:
            found.append((path, layer))
    return found


def _last_mixed_tokens(
    tokens: list[tuple[str, keras.layers.Layer]],
) -> tuple[str, keras.layers.Layer]:
    """The token layer to explain: the input of the last attention layer, else the last one.

    After the last `MultiHeadAttention` each token is processed on its own (normalization,
    MLP, residual adds), so with a class token the patch tokens there no longer reach the
    head and their gradient is zero; the tokens the last attention mixes (the last block's
    first normalization, pytorch-grad-cam's ViT recipe) are the last that do.
    """
    attention = [layer for _, layer in tokens if isinstance(layer, klayers.MultiHeadAttention)]
    if not attention:
        return tokens[-1]
    query = keras.tree.flatten(attention[-1].input)[0]
    producer = query._keras_history.operation
    return next(((p, t) for p, t in tokens if t is producer), tokens[-1])


def find_conv_layer(model: keras.Model, *, input: int | str | None = None) -> keras.layers.Layer:
    """Finds the layer to explain automatically: the last spatial layer before the head.

    Picks the last layer with an output of the input's rank (4-D for images, 3-D for
    signals, 5-D for volumes) with a spatial axis > 1 (a 1x1 map carries no spatial
    information; the 1xN map of an audio-style network does), stepping back over a trailing
    pooling layer, and searching inside nested models (a `keras.applications` base inside a
    Sequential, for example). In an image model whose last spatial layer is followed by token
    layers (a vision transformer: patch embedding, then blocks on `(batch, N, D)` tokens), it
    picks a token layer instead (see `token_layers`): the tokens the last attention layer
    mixes (the last block's first normalization; after it each token is processed alone, so
    the patch tokens no longer reach a class-token head), or the last token layer of a model
    without `MultiHeadAttention`.

    Args:
        model: a Functional or Sequential Keras model.
        input: the explained input of a model with several (its name or index, see
            `select_input`); only layers its values reach are candidates. Defaults to `None`
            (the only input).

    Returns:
        The chosen layer object (`layer.name` gives its name).

    Raises:
        ValueError: the model has no convolutional layer with a spatial output (reached from
            the explained input).

    Example:
    ```python
    model = keras.applications.VGG16(weights=None)
    kc.find_conv_layer(model).name  # "block5_conv3"
    ```
    """
    index = check_model(model, input)
    candidates = spatial_layers(model)
    if len(model.inputs) > 1:
        reached = reached_layers(model, index)
        candidates = [(path, layer) for path, layer in candidates if id(layer) in reached]
    if not candidates:
        raise ValueError(
            f"`model` ({model.name}) has no convolutional layer with a spatial output (of its "
            f"input's rank, {input_rank(model)}-D, a spatial axis > 1), so there is no feature "
            "map to explain. Class activation maps need a convolutional network; for a larger "
            "map use a bigger input size."
        )
    tokens = token_layers(model)
    if tokens:
        path, layer = _last_mixed_tokens(tokens)
        logger.info("keras_cam: explaining token layer %r, shape %s", path, output_shape(layer))
        return layer
    index = len(candidates) - 1
    while index > 0 and isinstance(candidates[index][1], _POOLING):
        index -= 1
    path, layer = candidates[index]
    logger.info("keras_cam: explaining layer %r with output shape %s", path, output_shape(layer))
    return layer


def resolve_layer(
    model: keras.Model,
    layer: str | keras.layers.Layer | None,
    *,
    input: int | str | None = None,
) -> keras.layers.Layer:
    """Turns the user's `layer` argument into a layer object of `model`.

    Args:
        model: the model to explain.
        layer: a layer name (nested models are searched too; `"outer/inner"` paths also work),
            a layer object, or `None` for the automatic choice of `find_conv_layer`.
        input: the explained input of a model with several (see `select_input`). Defaults
            to `None` (the only input).

    Returns:
        The layer object.

    Raises:
        ValueError: no such layer, a name matching several nested layers, or a layer whose
            output is neither a feature map of the input's rank nor (for an image model)
            `(batch, N, D)` tokens.
        TypeError: `layer` is neither a string, a layer nor None.
    """
    if layer is None:
        return find_conv_layer(model, input=input)
    check_model(model, input)
    everything = list(iter_layers(model))
    everything += [(path, nested) for path, nested in iter_nested_models(model)]
    if isinstance(layer, str):
        matches = [obj for path, obj in everything if layer in (path, obj.name)]
        if not matches:
            names = [path for path, _ in spatial_layers(model)]
            raise ValueError(
                f"`layer`={layer!r} is not a layer of model {model.name!r}. Layers with a spatial "
                f"output that can be explained: {names}."
            )
        if len({id(obj) for obj in matches}) > 1:
            paths = [path for path, obj in everything if layer in (path, obj.name)]
            raise ValueError(
                f"`layer`={layer!r} matches several layers in nested models: {paths}. "
                "Pass the full path or the layer object instead."
            )
        chosen = matches[0]
    elif isinstance(layer, keras.layers.Layer):
        if not any(obj is layer for _, obj in everything):
            raise ValueError(
                f"`layer` ({layer.name}) is not part of model {model.name!r} (nested models "
                "included). Pass a layer of this model, or its name."
            )
        chosen = layer
    else:
        raise TypeError(
            "`layer` must be a layer name, a keras layer of the model, or None for the automatic "
            f"choice; received an object of type {type(layer).__name__}."
        )
    shape, rank = output_shape(chosen), input_rank(model)
    if shape is not None and rank == 4 and len(shape) == 3:
        return chosen  # tokens, reshaped to their patch grid while tracing (`token_grid`)
    if shape is None or len(shape) != rank:
        names = [path for path, _ in spatial_layers(model) + token_layers(model)]
        raise ValueError(
            f"`layer`={chosen.name!r} outputs shape {shape}, not a {rank}-D feature map "
            f"like the model's input ({INPUT_KINDS[rank]}). Choose one of: {names}."
        )
    if not is_spatial(shape, _layer_format(chosen, data_format(model)), rank):
        logger.warning(
            "keras_cam: layer %r has a 1x1 map (output shape %s): the heatmap is constant.",
            chosen.name,
            shape,
        )
    return chosen


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


# Layers that return their input's values unchanged at inference (reshapes, identities, noise
# and dropout); with `Activation("linear")` they may follow the activation that is the head.
_PASS_THROUGH = (
    klayers.Flatten,
    klayers.Reshape,
    klayers.Identity,
    klayers.Dropout,
    klayers.GaussianNoise,
    klayers.GaussianDropout,
    klayers.AlphaDropout,
    klayers.ActivityRegularization,
)


def passes_values(operation: Any) -> bool:
    """Whether a layer returns its input's values unchanged at inference.

    Args:
        operation: a layer or Keras operation.

    Returns:
        `True` for `Flatten`, `Reshape`, `Identity`, the dropout and noise layers,
        `ActivityRegularization` and `Activation("linear")` (the mixed-precision guide's
        `Activation("linear", dtype="float32")`).

    Example:
    ```python
    passes_values(keras.layers.Activation("linear", dtype="float32"))   # True
    ```
    """
    if isinstance(operation, klayers.Activation):
        return _function_name(operation.activation)[0] == "linear"
    return isinstance(operation, _PASS_THROUGH)


def _head_layer(model: keras.Model) -> Any:
    """The layer or operation whose activation gives the model's output.

    That is the final layer (inside a nested final model too), stepping back over layers that
    pass the same `(batch, units)` values through, e.g. the mixed-precision
    `Activation("linear", dtype="float32")` after a `Dense(activation="softmax")`, a `Flatten`
    or a `Dropout`.
    """
    tensor = model.outputs[0]
    while True:
        operation, node_index, _ = tensor._keras_history
        if is_graph_model(operation):
            tensor = operation.outputs[0]
            continue
        inputs = operation._inbound_nodes[node_index].input_tensors
        if not passes_values(operation) or len(inputs) != 1 or (
            tuple(inputs[0].shape[1:]) != tuple(tensor.shape[1:])
        ):
            return operation
        tensor = inputs[0]


HEADS: tuple[str, ...] = ("softmax", "sigmoid", "logits", "sigmoid_logits", "linear")
"""Valid values of `head=`, naming what the model's output is:

- `"softmax"`: class probabilities from a softmax.
- `"sigmoid"`: probabilities from a sigmoid; one unit is a binary classifier (the probability
  of class 1, class 0 gets one minus it), several units are independent (multi-label) classes.
- `"logits"`: pre-softmax class scores; one unit is a binary logit (pre-sigmoid score of
  class 1). Log-probabilities (`log_softmax`) are logits too.
- `"sigmoid_logits"`: pre-sigmoid scores of independent (multi-label) classes.
- `"linear"`: raw scores explained as they are (e.g. a regression output); each unit is one
  "class" and is scored by its own value.
"""

# The head each recognised activation gives; its input is then read as the logits.
_SPLIT_KINDS = {"softmax": "softmax", "sigmoid": "sigmoid", "log_softmax": "logits"}
_EPSILON = 1e-7


def _known_activations() -> dict[Any, str]:
    """Every spelling of the activations a head is read by, TensorFlow's wrapped ones too."""
    spellings = {
        "softmax": (keras.activations.softmax, ops.softmax, tf.nn.softmax, tf.math.softmax),
        "sigmoid": (
            keras.activations.sigmoid, ops.sigmoid, tf.nn.sigmoid, tf.math.sigmoid, tf.sigmoid
        ),
        "log_softmax": (keras.activations.log_softmax, ops.log_softmax, tf.nn.log_softmax),
        "linear": (keras.activations.linear,),
    }
    return {
        spelling: name
        for name, functions in spellings.items()
        for function in functions
        for spelling in (function, inspect.unwrap(function))
    }


_KNOWN_ACTIVATIONS = _known_activations()
# `keras.ops.softmax(x)` and its relatives applied in a Functional graph leave an Operation (not
# a layer) as the model's final node.
_KNOWN_OPERATIONS = {
    keras_nn_ops.Softmax: "softmax",
    keras_nn_ops.Sigmoid: "sigmoid",
    keras_nn_ops.LogSoftmax: "log_softmax",
}
_AXIS_ACTIVATIONS = ("softmax", "log_softmax")


def is_relu_operation(operation: Any) -> bool:
    """Whether `operation` is `keras.ops.relu` or `keras.ops.relu6` applied in a Functional
    graph (an Operation of the graph, not a layer).

    Args:
        operation: an operation of a Functional model (`model.operations`).

    Returns:
        `True` for those two operations.
    """
    return isinstance(operation, (keras_nn_ops.Relu, keras_nn_ops.Relu6))


@dataclasses.dataclass(frozen=True)
class _Activation:
    """What the model's final operation applies, as far as it can be recognised.

    `name` is `"softmax"`, `"sigmoid"`, `"log_softmax"`, `"linear"` or `None` (unrecognised);
    `pre_activation` says where its input can be read: `"input"` (the operation's input),
    `"dense"` (a Dense layer's own pre-activation) or `None`.
    """

    name: str | None
    description: str
    pre_activation: str | None = None


def _function_name(function: Any) -> tuple[str | None, Any]:
    """`(activation name or None, axis)` of an activation callable, unwrapping partials."""
    keywords: dict[str, Any] = {}
    while isinstance(function, functools.partial):
        keywords = {**function.keywords, **keywords}
        function = function.func
    if function is None:
        return "linear", None
    if isinstance(function, klayers.Softmax):
        return "softmax", function.axis
    if isinstance(function, klayers.Activation):
        return _function_name(function.activation)
    try:
        name = _KNOWN_ACTIVATIONS.get(function)
    except TypeError:  # an unhashable callable
        name = None
    return name, keywords.get("axis", -1)


def _spelling(function: Any) -> str:
    return getattr(function, "__name__", None) or type(function).__name__


def _last_axis(axis: Any, rank: int) -> bool:
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis is None or axis in (-1, rank - 1)


def _final_activation(final: Any, rank: int) -> _Activation:
    """Recognises the activation the model's final operation applies (by identity, any spelling)."""
    what = f"{type(final).__name__} {final.name!r}"
    pre_activation: str | None = "input"
    if isinstance(final, klayers.Softmax):
        name, axis, spelling = "softmax", final.axis, "Softmax"
    elif type(final) in _KNOWN_OPERATIONS:
        name, axis = _KNOWN_OPERATIONS[type(final)], getattr(final, "axis", -1)
        spelling = f"keras.ops.{name}"
    elif isinstance(final, klayers.Lambda):
        function = functools.partial(final.function, **(final.arguments or {}))
        (name, axis), spelling = _function_name(function), _spelling(final.function)
    elif isinstance(final, keras.layers.Layer) and hasattr(final, "activation"):
        (name, axis), spelling = _function_name(final.activation), _spelling(final.activation)
        if not isinstance(final, klayers.Activation):
            pre_activation = "dense" if isinstance(final, klayers.Dense) else None
    elif isinstance(final, keras.layers.Layer) and not isinstance(final, _ACTIVATION_LAYERS):
        return _Activation("linear", f"{what} (no activation)")
    else:
        return _Activation(None, f"{what} (an operation keras_cam does not recognise)")
    if name in _AXIS_ACTIVATIONS and not _last_axis(axis, rank):
        return _Activation(
            None, f"{what} applying {spelling} over axis {axis}, not the class axis"
        )
    if name is None:
        return _Activation(None, f"{what} with activation {spelling}")
    return _Activation(name, f"{what} with activation {spelling}", pre_activation)


def activation_name(layer: Any) -> str | None:
    """The activation a layer or operation applies, recognised in any spelling.

    Args:
        layer: a layer (its `activation=`, or the layer itself: `Softmax`, `Activation`,
            `Lambda`) or a Keras operation such as the one `keras.ops.softmax(x)` leaves in a
            Functional graph.

    Returns:
        `"softmax"` or `"log_softmax"` (over the last axis of a `(batch, units)` output),
        `"sigmoid"`, `"linear"` (no activation), or `None` when it is not recognised.

    Example:
    ```python
    activation_name(keras.layers.Dense(4, activation=tf.nn.softmax))   # "softmax"
    ```
    """
    return _final_activation(layer, 2).name


@dataclasses.dataclass(frozen=True)
class Head:
    """How a model's output is read: the one reading every method, metric and tool uses.

    Attributes:
        kind: one of `HEADS`: `"softmax"`, `"sigmoid"`, `"logits"`, `"sigmoid_logits"` or
            `"linear"`.
        units: output units of the model.
        description: how the reading was reached, e.g. `"Dense 'predictions' with activation
            softmax_v2"` or `"stated by head='logits'"`.
        pre_activation: where the pre-activation logits are read when the model's own final
            softmax/sigmoid/log_softmax was recognised: `"input"` (the input of the final activation
            operation) or `"dense"` (the final Dense layer's kernel and bias); `None` when the
            logits follow from the output.
        final: the model's final layer or operation.
        shape: the output's shape without the batch axis: `(units,)` for a classifier,
            `(H, W, K)` for a segmentation output (scores per position, read on the last
            axis); `()` when unknown (read as `(units,)`).
    """

    kind: str
    units: int
    description: str
    pre_activation: str | None = None
    final: Any = dataclasses.field(default=None, compare=False, repr=False)
    shape: tuple[int | None, ...] = ()

    def __post_init__(self) -> None:
        check_head(self.kind)
        if self.kind == "softmax" and self.units == 1:
            raise ValueError(
                "A softmax over a single output unit is always 1, so its output cannot be "
                "explained. Read it with head='sigmoid' (a probability of class 1), "
                "head='logits' (a binary logit) or head='linear' (a raw score)."
            )

    @property
    def binary(self) -> bool:
        """Whether one unit stands for two classes: class 1 and its complement, class 0."""
        return self.units == 1 and self.kind != "linear"

    @property
    def num_classes(self) -> int:
        """Classes the explainers and metrics index: 2 for a binary head, else `units`."""
        return 2 if self.binary else self.units

    def scores(self, outputs: Any) -> Any:
        """What Score-CAM and the metrics score: `(n, units)` outputs -> `(n, num_classes)`.

        Probabilities for classifiers (`[1 - p, p]` for a binary head), the raw output for a
        `"linear"` head.
        """
        outputs = ops.cast(outputs, "float32")
        if self.kind == "logits" and self.units > 1:
            outputs = ops.softmax(outputs, axis=-1)
        elif self.kind in ("logits", "sigmoid_logits"):
            outputs = ops.sigmoid(outputs)
        return ops.concatenate([1.0 - outputs, outputs], axis=-1) if self.binary else outputs

    def logits(self, outputs: Any, pre_activation: Any = None) -> Any:
        """What gradient methods differentiate: `(n, num_classes)` float32 logits.

        Args:
            outputs: the model's `(n, units)` output.
            pre_activation: the pre-activation values of a recognised final softmax/sigmoid,
                or `None` to derive logits from `outputs` (log-probabilities for a softmax,
                log-odds for a sigmoid, the output itself otherwise).

        Returns:
            `[-z, z]` for a binary head, else `z`.
        """
        if pre_activation is not None:
            logits = ops.cast(pre_activation, "float32")
        elif self.kind in ("softmax", "sigmoid"):
            clipped = ops.clip(ops.cast(outputs, "float32"), _EPSILON, 1.0 - _EPSILON)
            logits = ops.log(clipped)
            if self.kind == "sigmoid":
                logits = logits - ops.log1p(-clipped)
        else:
            logits = ops.cast(outputs, "float32")
        return ops.concatenate([-logits, logits], axis=-1) if self.binary else logits


def check_head(head: Any) -> None:
    """Raises a `ValueError` unless `head` is `None` (automatic), one of `HEADS` or a `Head`.

    Args:
        head: the user's `head=` argument (a `Head` is a reading already made by `read_head`).

    Raises:
        ValueError: any other value; the message lists the valid ones.
    """
    if head is not None and not isinstance(head, Head) and not (
        isinstance(head, str) and head in HEADS
    ):
        raise ValueError(
            f"`head` must be None (read the model's head automatically) or one of {HEADS}; "
            f"received {head!r}. See keras_cam.surgery.HEADS for what each one means."
        )


def _automatic_kind(activation: str | None, units: int) -> str:
    if activation in ("softmax", "sigmoid"):
        return activation
    if activation == "log_softmax" or units > 1:
        return "logits"
    return "linear"


def read_head(model: keras.Model, head: str | Head | None = None) -> Head:
    """Reads how the model's output is to be interpreted: the one place this is decided.

    The final activation is recognised by identity, in every spelling Keras and TensorFlow
    offer: as a layer's `activation=` (`"softmax"`, `keras.activations.softmax`,
    `keras.ops.softmax`, `tf.nn.softmax`, `tf.math.softmax`, a `keras.layers.Softmax()`
    instance, ...; sigmoid and log_softmax likewise), as a layer of its own (`Softmax`,
    `Activation(...)`, `Lambda(tf.nn.softmax)`) or as `keras.ops.softmax(x)` in a Functional
    graph. A softmax over another axis than the last is not a classifier head. Layers after
    it that pass its values through (`passes_values`: `Flatten`, `Dropout`, the mixed-precision
    `Activation("linear", dtype="float32")`...) are looked through. The rule:

    - a softmax / sigmoid output is read as probabilities; logits are read before it;
    - a log_softmax output is read as logits (those before it), and so is a linear output
      with several units;
    - a linear output with **one** unit is a raw score (e.g. a regression), explained as it
      is; `head="logits"` says it is a binary logit instead;
    - an activation keras_cam does not know (`"tanh"`, `"relu"`, a custom function) is read
      like a linear output, with a warning that names `head=`;
    - an output with scores per position, `(batch, H, W, K)` (a segmentation model), is read
      the same way on its last axis; it is explained with a target that reads one score per
      image (`keras_cam.targets.SegmentationTarget`).

    Args:
        model: a single-output Functional or Sequential Keras model whose output is
            `(batch, units)` or `(batch, ..., units)`.
        head: `None` to read the head automatically, or one of `HEADS` to state it (no warning
            then); a `Head` already read for this model is returned as it is. Defaults to
            `None`.

    Returns:
        The `Head` reading.

    Raises:
        ValueError: an invalid `head`, an output that is not `(batch, units)`, or a softmax
            over a single unit.
        TypeError: `model` is not a traceable Keras model.

    Example:
    ```python
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, activation=tf.nn.softmax)(x))
    read_head(model).kind          # "softmax"
    ```
    """
    check_graph_model(model)
    check_head(head)
    if isinstance(head, Head):
        return head
    shape = tuple(model.outputs[0].shape)
    if len(shape) < 2 or shape[-1] is None:
        raise ValueError(
            f"`model` must output scores of shape (batch, units), or (batch, ..., units) per "
            f"position; model {model.name!r} outputs shape {shape}. Build a Functional model "
            "that returns the scores to explain."
        )
    units = int(shape[-1])
    final = _head_layer(model)
    activation = _final_activation(final, len(shape))
    if head is not None:
        matches = _SPLIT_KINDS.get(activation.name) == head
        return Head(
            head,
            units,
            f"stated by head={head!r} ({activation.description})",
            activation.pre_activation if matches else None,
            final,
            shape[1:],
        )
    kind = _automatic_kind(activation.name, units)
    if activation.name is None:
        warnings.warn(
            f"keras_cam: the model's final layer is {activation.description}; its output is "
            f"read as {'logits' if kind == 'logits' else 'a raw score'} (head={kind!r}). If "
            f"that is wrong, pass `head=` (one of {HEADS}) to state how to read it.",
            stacklevel=1,
        )
    recognised = _SPLIT_KINDS.get(activation.name) == kind
    pre_activation = activation.pre_activation if recognised else None
    if recognised and pre_activation is None and kind != "logits":
        logger.warning(
            "keras_cam: the final layer %r applies %s inside a %s layer; logits are recovered "
            "from its outputs (log-probabilities for softmax, log-odds for sigmoid).",
            final.name,
            kind,
            type(final).__name__,
        )
    return Head(kind, units, activation.description, pre_activation, final, shape[1:])


# ---------------------------------------------------------------- GAP head (CAM)
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



class _DenseLogits(keras.layers.Layer):
    """The pre-activation output of a `Dense` layer, sharing its kernel and bias."""

    def __init__(self, dense: klayers.Dense, **kwargs: Any) -> None:
        super().__init__(dtype="float32", **kwargs)
        self._dense = dense

    def call(self, inputs: Any) -> Any:
        kernel = ops.cast(self._dense.kernel, "float32")
        logits = ops.matmul(ops.cast(inputs, "float32"), kernel)
        if self._dense.use_bias:
            logits = logits + ops.cast(self._dense.bias, "float32")
        return logits

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self._dense.units,)


@dataclasses.dataclass(frozen=True, eq=False)
class _Call:
    """One call of the explained layer while tracing: its output (channels-last), grid and a
    description."""

    output: Any
    grid: Grid | None
    description: str


def _flipped_axes(operation: Any, rank: int) -> tuple[int, ...] | None:
    """Tensor axes a rank-`rank` `keras.ops.flip` / `fliplr` reverses; `None` for other
    operations."""
    if isinstance(operation, Fliplr):
        return (1,)
    if not isinstance(operation, Flip):
        return None
    axis = operation.axis
    axes = range(rank) if axis is None else (axis,) if isinstance(axis, int) else axis
    return tuple(int(a) % rank for a in axes)


def _moves_pixels(layer: Any, arguments: tuple[Any, Any], tensor: Any, axes: tuple) -> bool:
    """Whether a `Lambda`, `Permute` or bare Keras operation that keeps the grid's size moves
    values between positions (a flip written as a Lambda or `x[:, :, ::-1]`, a roll, a
    transpose of a square map). Known layers and pointwise ones keep their grid.

    Probed numerically: a layer that moves nothing commutes with a fixed random shuffle of the
    positions; one that cannot be run on a concrete batch of one counts as moving.
    """
    if isinstance(layer, keras.layers.Layer) and not isinstance(
        layer, (klayers.Lambda, klayers.Permute)
    ):
        return False
    shape = (1, *tensor.shape[1:])
    if None in shape:
        return True
    rng = np.random.default_rng(0)
    order = rng.permutation(int(np.prod([shape[axis] for axis in axes])))
    front = tuple(range(1, len(axes) + 1))

    def shuffle(values: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(values, axes, front)
        flat = moved.reshape(moved.shape[0], -1, *moved.shape[len(axes) + 1 :])[:, order]
        return np.moveaxis(flat.reshape(moved.shape), front, axes)

    values = rng.uniform(0.1, 1.0, shape).astype(np.float32)

    def run(batch: np.ndarray) -> np.ndarray:
        concrete = ops.cast(ops.convert_to_tensor(batch), tensor.dtype)
        args, kwargs = keras.tree.map_structure(
            lambda value: concrete if value is tensor else value, arguments
        )
        return np.asarray(ops.convert_to_numpy(layer(*args, **kwargs)), np.float64)

    try:
        shuffled_output, output = run(shuffle(values)), run(values)
    except Exception:  # noqa: BLE001 -- any failure means its geometry is unknown
        return True
    if output.shape != shape:
        return True
    return not np.allclose(shuffled_output, shuffle(output), rtol=1e-4, atol=1e-5)


def token_order(layer: keras.layers.Layer, arguments: tuple[Any, Any], patches: Any) -> str:
    """Where `layer`, called on the patch tokens `patches` (`(batch, h * w, D)`), puts the
    extra tokens it adds: `"leading"`, `"trailing"` or `"unknown"`.

    The layer is called once on random values (batch 1) in place of its symbolic inputs: the
    patch tokens come out unchanged at the end (the extra tokens lead, a ViT's class token)
    or at the start (they trail).

    Args:
        layer: the layer whose output has more tokens than `patches`.
        arguments: the `(args, kwargs)` of its call, with symbolic tensors.
        patches: the symbolic patch tokens among them.

    Returns:
        `"leading"`, `"trailing"` or `"unknown"`.
    """
    rng = np.random.default_rng(0)
    probe: dict[int, np.ndarray] = {}

    def concrete(value: Any) -> Any:
        if not isinstance(value, keras.KerasTensor):
            return value
        shape = tuple(1 if size is None else size for size in value.shape)
        probe[id(value)] = rng.normal(size=shape).astype(value.dtype or "float32")
        return probe[id(value)]

    args, kwargs = keras.tree.map_structure(concrete, arguments)
    try:
        output = np.asarray(layer(*args, **kwargs))
    except Exception:  # noqa: BLE001 - a layer that cannot be probed: say so, do not guess
        return "unknown"
    values, cells = probe[id(patches)], patches.shape[1]
    if output.ndim != 3 or output.shape[-1] != values.shape[-1]:
        return "unknown"
    close = functools.partial(np.allclose, rtol=1e-2, atol=1e-2)  # float16 models too
    if close(output[:, -cells:], values):
        return "leading"
    if close(output[:, :cells], values):
        return "trailing"
    return "unknown"


class _Recorder:
    """Re-traces a model on new inputs, calling the same layers and recording what we need.

    Besides the features and the head, it follows each traced tensor's `Grid` (where it sits on
    the input) and lists every call of the explained layer (a layer or nested model called
    several times, e.g. on an image and on its flip, has one feature map per call).
    """

    def __init__(
        self,
        target: keras.layers.Layer,
        final: keras.layers.Layer,
        layout: str,
        rank: int = 4,
        token_grid: tuple[int, int] | None = None,
    ) -> None:
        self.target = target
        self.final = final
        self.layout = layout
        self.rank = rank
        self.token_grid = token_grid
        self.patch_grid: Grid | None = None
        self.token_offsets = (0, 0)
        """How many extra (class, register) tokens the layers that add them put before and
        after the patch tokens (`token_order`)."""
        self._patch_tokens: Any = None
        self._token_adder = ""  # a layer that adds tokens in a way `token_order` cannot tell
        self._input_shape: tuple = ()
        self.calls: list[_Call] = []
        self.head_input: Any = None
        self.head_output: Any = None
        self._grids: dict[int, tuple[Any, Grid]] = {}
        self._producers: dict[int, str] = {}
        self._context: list[str] = []
        # Tensors whose values come from the explained input (kept alive: keyed by id), and
        # the layers called on them: only those calls of the explained layer are explained.
        self._explained: dict[int, Any] = {}
        self.reached: set[int] = set()

    def start(self, inputs: Any) -> None:
        """Registers the explained input: the identity grid (when its spatial size is known)."""
        self._producers[id(inputs)] = "the model input"
        self._explained[id(inputs)] = inputs
        shape = tuple(inputs.shape)
        self._input_shape = shape
        if None not in spatial_sizes(shape, spatial_axes(self.layout, self.rank)):
            self._grids[id(inputs)] = (inputs, Grid.identity(shape, self.layout))

    def grid(self, tensor: Any) -> Grid | None:
        entry = self._grids.get(id(tensor))
        return entry[1] if entry is not None else None

    def call(self, layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        flat = keras.tree.flatten((args, kwargs))
        tensors = [tensor for tensor in flat if isinstance(tensor, keras.KerasTensor)]
        where = self._producers.get(id(tensors[0]), "a constant") if tensors else "no tensor"
        if is_graph_model(layer):
            self._context.append(f"{layer.name!r} called on {where}")
            output = self.trace(layer, *args)
            self._context.pop()
        else:
            output = layer(*args, **kwargs)
            if tensors:
                self._follow_grid(layer, tensors, output, (args, kwargs))
                self._follow_tokens(layer, tensors, output, (args, kwargs))
        if not isinstance(output, (list, tuple)):
            self._producers[id(output)] = repr(layer.name)
        # A call on another input's branch only (e.g. metadata) is not explained.
        explained = any(id(tensor) in self._explained for tensor in tensors)
        if explained:
            self.reached.add(id(layer))
        if explained and layer is self.target:
            description = " > ".join([*self._context, f"{layer.name!r} called on {where}"])
            if len(output.shape) == 3 and self.rank == 4:
                features, output, grid = self._tokens(layer, output)
                self.calls.append(_Call(features, grid, description))
            else:
                features = output
                if _layer_format(layer, self.layout) == "channels_first":
                    # The features are explained channels-last; the model goes on from the
                    # same tensor transposed back, so gradients reach them.
                    last = self.rank - 1
                    features = ops.transpose(output, (0, *range(2, self.rank), 1))
                    grid = self._grids.get(id(output))
                    output = ops.transpose(features, (0, last, *range(1, last)))
                    if grid is not None:
                        self._grids[id(output)] = (output, grid[1])
                self.calls.append(_Call(features, self.grid(output), description))
        if explained:
            self._explained.update((id(tensor), tensor) for tensor in keras.tree.flatten(output))
        if layer is self.final:
            self.head_input, self.head_output = args[0], output
        return output

    def _tokens(self, layer: Any, output: Any) -> tuple[Any, Any, Grid | None]:
        """`(features, output, grid)` of a token layer: `(B, N, D)` -> `(B, h, w, D)`.

        The leading `N - h * w` tokens (class and register tokens) are left out of the
        features; the model goes on from the tokens put back together, so gradients reach the
        features. The grid is the patch embedding's (`patch_grid`); with `token_grid` stated
        and no patch embedding found, the grid is stretched over the whole input.
        """
        count, depth = output.shape[1], output.shape[2]
        patch = self.patch_grid
        if self.token_grid is not None:
            grid = self.token_grid
            if patch is not None and tuple(patch.sizes) != grid:
                raise ValueError(
                    f"`token_grid`={grid} does not match the patch embedding of the model: "
                    f"its patch grid is {patch.sizes[0]}x{patch.sizes[1]}, which layer "
                    f"{layer.name!r}'s tokens follow. Pass token_grid={tuple(patch.sizes)} or "
                    "None."
                )
        elif patch is not None:
            grid = tuple(patch.sizes)
        else:
            raise ValueError(
                f"`layer`={layer.name!r} outputs {count} tokens (shape {tuple(output.shape)}), "
                "and keras_cam found no patch embedding (a spatial map flattened into tokens) "
                "to tell their grid. Pass `token_grid=(h, w)`: the patch grid the tokens "
                "follow (the class and other extra tokens lead and are left out)."
            )
        extra = None if count is None else count - grid[0] * grid[1]
        if extra is None or extra < 0:
            raise ValueError(
                f"`layer`={layer.name!r} outputs {count} tokens (shape {tuple(output.shape)}), "
                f"which is not the {grid[0]}x{grid[1]} patch grid ({grid[0] * grid[1]} tokens) "
                "plus leading extra (class, register) tokens. Pass `token_grid=(h, w)` with "
                "h * w <= the token count, or explain a layer whose tokens follow the grid."
            )
        if extra and self._token_adder:
            warnings.warn(
                f"keras_cam: layer {self._token_adder!r} adds token(s) to the patch tokens, "
                "and keras_cam could not tell where; it assumes the extra tokens lead (class "
                "and register tokens first). If they do not, the map is shifted: explain a "
                "layer before it, or add the tokens with a Concatenate layer.",
                stacklevel=2,
            )
        leading = self.token_offsets[0] if sum(self.token_offsets) == extra else extra
        cells = count - extra
        patches = output[:, leading : leading + cells]
        features = ops.reshape(patches, (-1, grid[0], grid[1], depth))
        flat = ops.reshape(features, (-1, cells, depth))
        pieces = [output[:, :leading], flat, output[:, leading + cells :]]
        output = ops.concatenate([p for p in pieces if p.shape[1] != 0], axis=1)
        if patch is None and None not in self._input_shape[1:]:
            identity = Grid.identity(self._input_shape, self.layout)
            patch = identity.stretch(grid, identity.axes)
        return features, output, patch

    def _follow_tokens(
        self, layer: Any, tensors: list[Any], output: Any, arguments: tuple[Any, Any]
    ) -> None:
        """Follows the patch tokens `(batch, h * w, D)` through the layers that add extra
        (class, register) tokens, counting those put before and after them
        (`token_offsets`)."""
        tokens = self._patch_tokens
        if tokens is None or isinstance(output, (list, tuple)) or len(output.shape) != 3:
            return
        if not any(tensor is tokens for tensor in tensors):
            return
        added = None if output.shape[1] is None else output.shape[1] - tokens.shape[1]
        order = token_order(layer, arguments, tokens) if added else None
        if added and added > 0 and order != "unknown":
            leading, trailing = self.token_offsets
            self.token_offsets = (
                (leading + added, trailing) if order == "leading" else (leading, trailing + added)
            )
        elif added:  # tokens dropped, or added in a way the probe cannot tell: stop here
            self._token_adder = layer.name if added > 0 else ""
            self._patch_tokens = None
            return
        self._patch_tokens = output

    def _follow_grid(
        self, layer: Any, tensors: list[Any], output: Any, arguments: tuple[Any, Any]
    ) -> None:
        """Records the grid of `output` from the grids of the layer's spatial inputs.

        `arguments` are the call's `(args, kwargs)`, for `_moves_pixels`. Spatial maps
        flattened into `(batch, h * w, D)` tokens (a patch embedding) are remembered as the
        patch grid of the tokens (`patch_grid`)."""
        if isinstance(output, (list, tuple)):
            return
        grids = [grid for grid in map(self.grid, tensors) if grid is not None]
        if not grids:
            return
        if len(output.shape) == 3 and self.rank == 4 and len(grids) == 1:
            if output.shape[1] == int(np.prod(grids[0].sizes)):
                self.patch_grid = grids[0]
                self._patch_tokens = output
            return
        if len(output.shape) != self.rank:
            return
        axes = grids[0].axes
        if hasattr(layer, "data_format"):
            axes = spatial_axes(_layer_format(layer, self.layout), self.rank)
        sizes = spatial_sizes(tuple(output.shape), axes)
        matching = [grid for grid in grids if grid.sizes == sizes]
        apart = any(matching[0].differs(other) for other in matching[1:])
        if apart:
            warnings.warn(
                f"keras_cam: layer {layer.name!r} ({type(layer).__name__}) merges feature maps "
                "that sit more than a cell apart on the input (e.g. an image and its flip); "
                "the map follows its first input. Explain a layer before the merge (with "
                "`layer_call=` for a layer called on each branch).",
                stacklevel=2,
            )
        flipped = _flipped_axes(layer, self.rank)
        if flipped is not None:
            grid = grids[0].flip(flipped)
        elif matching and len(tensors) == 1 and _moves_pixels(layer, arguments, tensors[0], axes):
            grid = grids[0].stretch(sizes, axes, layer.name)
        elif matching:
            grid = matching[0] if apart else matching[0].average(matching[1:])
        elif set(sizes) == {1}:
            grid = grids[0].stretch(sizes, axes)  # global pooling: no position left
        else:
            grid = layer_grid(layer, grids[0], sizes)
            grid = grids[0].stretch(sizes, axes, layer.name) if grid is None else grid
        self._grids[id(output)] = (output, dataclasses.replace(grid, axes=axes))

    def trace(self, model: keras.Model, inputs: Any) -> Any:
        if isinstance(model, keras.Sequential):
            for layer in model.layers:
                inputs = self.call(layer, inputs)
            return inputs
        # `_run_through_graph` is how Functional.call itself executes the graph; routing each
        # operation through `self.call` re-traces it on `inputs` without building a model.
        outputs = model._run_through_graph(
            inputs, operation_fn=lambda operation: functools.partial(self.call, operation)
        )
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    def chosen_call(self, model: keras.Model, layer_call: int | None) -> int:
        """The index of the call of the explained layer to explain; refuses when ambiguous."""
        name = self.target.name
        if not self.calls:
            raise ValueError(
                f"`layer`={name!r} is not on the path from the explained input to the output of "
                f"model {model.name!r}, so it does not explain the prediction from that input. "
                "Choose another layer (or another `input=`)."
            )
        listing = "; ".join(f"call {i}: {call.description}" for i, call in enumerate(self.calls))
        if layer_call is None and len(self.calls) > 1:
            raise ValueError(
                f"`layer`={name!r} is called {len(self.calls)} times on the way from the input "
                f"to the output of model {model.name!r} ({listing}), so it has one feature map "
                "per call. Choose which call to explain with `layer_call=` (an index from 0 to "
                f"{len(self.calls) - 1}), or choose another layer."
            )
        index = 0 if layer_call is None else layer_call
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not (
            0 <= index < len(self.calls)
        ):
            raise ValueError(
                f"`layer_call` must be None or an int from 0 to {len(self.calls) - 1} (layer "
                f"{name!r} has {len(self.calls)} call(s): {listing}); received {layer_call!r}."
            )
        return int(index)


def _head_tensors(head: Head, recorder: _Recorder, output: Any) -> tuple[Any, Any]:
    """The float32 `(logits, scores)` of the re-traced output, as `head` reads them."""
    pre_activation = None
    if head.pre_activation == "input":
        pre_activation = recorder.head_input
    elif head.pre_activation == "dense":
        dense_logits = _DenseLogits(head.final, name="keras_cam_logits")
        pre_activation = dense_logits(recorder.head_input)
    return head.logits(output, pre_activation), head.scores(output)


def build_cam_model(
    model: keras.Model,
    layer: str | keras.layers.Layer | None = None,
    *,
    layer_call: int | None = None,
    head: str | Head | None = None,
    output: int | str | None = None,
    input: int | str | None = None,
    token_grid: tuple[int, int] | None = None,
) -> CamModel:
    """Builds the Functional sub-model `inputs -> (features, logits, probabilities)`.

    The user's model is not modified: its layers are called again on a new input, so the
    sub-model shares their weights (a model that keeps training is explained as it is now).
    That input is float32 when the model's is integer or bool (see `explained_input_dtype`).
    On the way, the geometry of every layer between the input and the explained layer is
    followed (crops, paddings, strides, resizes, flips), so the maps can be placed on the input
    pixels their features come from.

    A model with several outputs is explained for the one `output` names (`select_output`);
    a model with several inputs for the one `input` names: the sub-model takes that input
    first and the others after it, in the model's order (`CamModel.other_inputs`), and only
    calls of the explained layer on the explained input's branch are explained.

    Args:
        model: a Functional or Sequential model (a classifier, a regression or segmentation
            model, an embedding model) of images `(B, H, W, C)`, signals `(B, T, C)` or
            volumes `(B, D, H, W, C)`; nested models are supported. Channels-first models
            too: the features are returned channels-last.
        layer: the layer to explain: a name, a layer object, or `None` for the automatic
            choice (see `find_conv_layer`). Defaults to `None`.
        layer_call: which call of `layer` to explain when the model calls it (or a nested
            model holding it) more than once, e.g. a backbone run on an image and on its
            flip: an index as the refusal message lists the calls (Keras' execution
            order). `None` requires a single call.
            Defaults to `None`.
        head: how to read the model's output: `None` for the automatic reading of
            `read_head` (which warns when it cannot recognise the final activation), or one
            of `HEADS`, or a `Head` already read. Defaults to `None`.
        output: the explained output of a model with several: its name or index (see
            `select_output`). Defaults to `None` (the only output).
        input: the explained input of a model with several: its name or index (see
            `select_input`). Defaults to `None` (the only input).
        token_grid: for a layer that outputs `(B, N, D)` tokens (a vision transformer's
            block), the `(h, w)` patch grid they follow. `None` reads it from the patch
            embedding (a spatial map flattened into tokens, e.g. a strided Conv2D then a
            Reshape). The `N - h * w` extra tokens (class, register tokens) lead, as in ViT,
            DeiT and DINOv2, or trail (`token_order` tells which); they are left out of the
            map. Defaults to `None`.

    Returns:
        A `CamModel` holding the sub-model, the layer, the head reading, the class count, the
        data format and the placement of the maps.

    Raises:
        TypeError: `model` is not a traceable Keras model.
        ValueError: unusable `layer` or `head`, a model with no spatial layer, a layer
            called several times without `layer_call` (the message lists the calls), an
            `output` / `input` that does not exist or is missing for a model with several
            (the message lists them with their shapes), or tokens whose count is not a patch
            grid (plus extra tokens) and no `token_grid`.

    Warns:
        UserWarning: a layer between the input and the explained layer changes the grid in a
            way keras_cam cannot derive (the map is then stretched over the whole input), or
            the model's final activation is not recognised (see `read_head`).

    Example:
    ```python
    cam_model = build_cam_model(keras.applications.ResNet50(weights=None))
    features, logits, probabilities = cam_model.model(images)
    ```
    """
    model = select_output(model, output)
    reading = read_head(model, head)
    explained = check_model(model, input)
    target = resolve_layer(model, layer, input=explained)
    token_grid = _check_token_grid(token_grid)
    layout = data_format(model)
    source = model.inputs[explained]
    axes = spatial_axes(layout, len(source.shape))
    inputs, recorder, traced = _trace(
        model, target, layout, tuple(source.shape), explained, token_grid
    )
    index = recorder.chosen_call(model, layer_call)
    chosen = recorder.calls[index]
    features = chosen.output
    logits, scores = _head_tensors(reading, recorder, traced)
    others = [tensor for i, tensor in enumerate(inputs) if i != explained]
    sub_model = keras.Model(
        [inputs[explained], *others] if others else inputs[explained],
        [features, logits, scores],
        name=f"keras_cam_{model.name}",
    )

    @functools.lru_cache(maxsize=32)
    def placement(*sizes: int) -> np.ndarray:
        grid = chosen.grid
        if None in spatial_sizes(tuple(source.shape), axes):
            shape = list(source.shape)
            for axis, size in zip(axes, sizes):
                shape[axis] = size
            grid = _trace(model, target, layout, tuple(shape), explained, token_grid)[1]
            grid = grid.calls[index].grid
        return _placement(grid, target, sizes)

    return CamModel(
        model=sub_model,
        layer=target,
        head=reading,
        num_classes=reading.num_classes,
        input_shape=tuple(source.shape[1:]),
        data_format=layout,
        placement=placement,
        input_name=source.name,
        other_inputs=tuple(t for i, t in enumerate(model.inputs) if i != explained),
    )


def reached_layers(model: keras.Model, input: int = 0) -> set[int]:
    """The ids of the layers (nested ones included) that the values of one input reach.

    Args:
        model: a Functional or Sequential model.
        input: the index of the input in `model.inputs`. Defaults to `0`.

    Returns:
        `{id(layer), ...}` of every layer called on a tensor computed from that input.
    """
    source = model.inputs[input]
    return _trace(model, None, data_format(model), tuple(source.shape), input)[1].reached


def _check_token_grid(token_grid: Any) -> tuple[int, int] | None:
    """`token_grid` as a pair of positive ints, or `None`; raises a `ValueError` otherwise."""
    if token_grid is None:
        return None
    try:
        height, width = token_grid
        valid = all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            for v in (height, width)
        )
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "`token_grid` must be None (read from the patch embedding) or a pair of positive "
            f"ints (h, w), the patch grid of the tokens; received {token_grid!r}."
        )
    return int(height), int(width)


def build_head_model(cam_model: CamModel) -> keras.Model:
    """The rest of the network after the explained layer: `features -> (logits, scores)`.

    A Functional model over the same layers as `cam_model.model` (weights shared), whose input
    is the explained layer's feature maps (channels-last, as `CamModel` returns them). Methods
    that perturb the features (Ablation-CAM) run it instead of the whole network, so a pass
    costs only the layers after the explained one.

    Args:
        cam_model: a `CamModel` from `build_cam_model`.

    Returns:
        A `keras.Model` `features (B, h, w, C) -> [logits, scores]`, as `cam_model.model`'s last
        two outputs (float32 `(B, num_classes)`).

    Raises:
        ValueError: the output depends on the input through a path that bypasses the explained
            layer (a skip connection around it, e.g. a layer inside a residual block, or another
            call of the layer), so the network cannot restart from its features. Explain a
            layer every path goes through (e.g. a block's output), or use a method that runs
            the whole network (`keras_cam.ScoreCAM`, `keras_cam.GradCAM`).

    Example:
    ```python
    cam_model = build_cam_model(keras.applications.VGG16(weights=None))
    head = build_head_model(cam_model)
    features, logits, _ = cam_model.model(images)
    head(features)[0]   # == logits
    ```
    """
    features, logits, scores = cam_model.model.outputs
    try:
        return keras.Model(features, [logits, scores], name=f"{cam_model.model.name}_head")
    except ValueError as error:
        raise ValueError(
            f"The network cannot restart from the features of layer {cam_model.layer.name!r}: "
            "the output also depends on the input through a path that bypasses that layer (a "
            "skip connection around it, e.g. a layer inside a residual block, or another call "
            "of the layer). Explain a layer that every path goes through (e.g. the output of a "
            "block, such as ResNet50's 'conv5_block3_out'), or use a method that runs the whole "
            f"network (keras_cam.ScoreCAM, keras_cam.GradCAM). Keras said: {error}"
        ) from error


def layer_calls(cam_model: CamModel, kinds: tuple[type, ...]) -> list[tuple[Any, Any]]:
    """Every call of a layer of the given kinds in the explainer's sub-model, input first.

    The sub-model re-traces nested models layer by layer, so a layer deep inside a nested base
    is found too; a layer called twice appears twice.

    Args:
        cam_model: a `CamModel` from `build_cam_model`.
        kinds: layer classes, e.g. `(keras.layers.Conv2D, keras.layers.BatchNormalization)`.

    Returns:
        `[(layer, output), ...]`: each call's layer and its output `KerasTensor` in
        `cam_model.model`'s graph (usable as an output of a model over `cam_model.model.inputs`),
        from the input towards the output.

    Example:
    ```python
    calls = layer_calls(build_cam_model(model), (keras.layers.Conv2D,))
    probe = keras.Model(cam_model.model.inputs, [output for _, output in calls])
    ```
    """
    graph = cam_model.model
    calls = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if isinstance(node.operation, kinds):
                calls.append((node.operation, node.output_tensors[0]))
    return calls


def _trace(
    model: keras.Model,
    target: keras.layers.Layer | None,
    layout: str,
    batch_shape: tuple,
    explained: int = 0,
    token_grid: tuple[int, int] | None = None,
) -> tuple[list[Any], _Recorder, Any]:
    """Re-traces `model` on new inputs, input `explained` of `batch_shape`: `(inputs, recorder,
    output)`, `inputs` in the model's order."""
    recorder = _Recorder(target, _head_layer(model), layout, len(batch_shape), token_grid)
    inputs = [
        keras.Input(
            batch_shape=batch_shape,
            dtype=explained_input_dtype(source.dtype),
            name="keras_cam_images",
        )
        if i == explained
        else keras.Input(
            batch_shape=tuple(source.shape), dtype=source.dtype, name=f"keras_cam_{source.name}"
        )
        for i, source in enumerate(model.inputs)
    ]
    recorder.start(inputs[explained])
    output = recorder.trace(model, inputs if len(inputs) > 1 else inputs[0])
    return inputs, recorder, output


def _placement(grid: Grid | None, target: keras.layers.Layer, size: tuple[int, ...]) -> np.ndarray:
    """`Grid.placement()` of the features, warning about layers whose geometry is unknown.

    Without a grid (the path left the image grid), the map is stretched over the whole input:
    scale 0 tells `place_maps` to stretch the map over `[lo, hi)`.
    """
    if grid is None:
        warnings.warn(
            f"keras_cam: cannot tell where the feature map of layer {target.name!r} sits on the "
            "input (its path from the input leaves the image grid); the map is stretched over "
            "the whole image. Explain a layer whose path keeps a spatial grid.",
            stacklevel=3,
        )
        return np.array([[0.0, 0.0, 0.0, extent] for extent in size], np.float32)
    if grid.unknown:
        warnings.warn(
            f"keras_cam: layer(s) {list(grid.unknown)} between the input and layer "
            f"{target.name!r} change the feature grid in a way keras_cam cannot derive; the "
            "map is stretched over the whole image from there on and may be misplaced. "
            "Explain a layer before them, or use Keras layers whose geometry is known "
            "(Cropping2D, ZeroPadding2D, CenterCrop, Resizing, UpSampling2D, convolutions, "
            "pooling).",
            stacklevel=3,
        )
    return grid.placement()


# ------------------------------------------------------------------------- input dtypes
def explained_input_dtype(dtype: str) -> str:
    """The input dtype of the sub-model that explains a model whose input is `dtype`.

    A float input keeps its dtype. An integer or bool input (e.g. `keras.Input(shape,
    dtype="uint8")` followed by `Rescaling`) becomes float32: a gradient tape records nothing
    before a cast from an integer, and Score-CAM's masked inputs are fractional. The layers
    behind such an input cast it to float themselves, so integer-valued float32 images give
    exactly the model's own outputs (`check_input_values` makes sure they are integer-valued).

    Args:
        dtype: the model's input dtype, e.g. `"uint8"`, `"float16"`.

    Returns:
        `dtype` itself for floating dtypes, else `"float32"`.

    Example:
    ```python
    explained_input_dtype("uint8")    # "float32"
    explained_input_dtype("float16")  # "float16"
    ```
    """
    dtype = keras.backend.standardize_dtype(dtype)
    return dtype if keras.backend.is_float_dtype(dtype) else "float32"


def check_input_values(images: Any, dtype: str, model_name: str) -> None:
    """Raises unless `images` hold values a model whose input is `dtype` can take.

    For a float input nothing is checked. For an integer or bool input the images are
    explained through a float32 input (`explained_input_dtype`); they must then be integers
    within the dtype's range (0 or 1 for bool), else the map would explain values the model
    never sees (it truncates or wraps them when it casts).

    Args:
        images: float32 tensor or array of images.
        dtype: the model's input dtype.
        model_name: the model's name, for the error message.

    Raises:
        ValueError: non-integer values, or values outside the dtype's range.

    Example:
    ```python
    check_input_values(images, model.inputs[0].dtype, model.name)
    ```
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if keras.backend.is_float_dtype(dtype):
        return
    low, high = (0, 1) if dtype == "bool" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    values = np.asarray(images, dtype=np.float64)
    smallest, largest = float(values.min()), float(values.max())
    integral = bool(np.all(values == np.round(values)))
    if integral and low <= smallest and largest <= high:
        return
    found = "values" if integral else "non-integer values"
    raise ValueError(
        f"`images` hold {found} in [{smallest:g}, {largest:g}], but model {model_name!r} takes "
        f"{dtype} images, which hold integers in [{low}, {high}]: its cast to {dtype} would "
        "change them, so no map could explain them as given. Pass the images as the model "
        "takes them (e.g. raw uint8 pixels, not pixels already scaled to [0, 1])."
    )


# ------------------------------------------------------------------ re-running with hooks
def call_with_hook(model: keras.Model, inputs: Any, hook: Callable[[Any, Any], Any]) -> Any:
    """Runs a Functional model on `inputs`, passing each operation's output through `hook`.

    The model's own graph is executed operation by operation (as `Functional.call` does, in
    inference mode), and `hook(operation, output)` may return a replacement for the output,
    e.g. the same values with another gradient. Nothing is modified: neither the model, its
    layers nor their weights; only this call's tensors.

    Args:
        model: a Functional model whose operations are the layers to hook (a sub-model from
            `build_cam_model` holds the user's layers, nested models flattened).
        inputs: its input tensor.
        hook: `(operation, output) -> output`.

    Returns:
        The model's outputs, in its output structure.

    Example:
    ```python
    outputs = call_with_hook(cam_model.model, images, lambda op, y: tf.stop_gradient(y))
    ```
    """

    def hooked(operation: Any) -> Callable[..., Any]:
        call = functional_operation_fn(operation, training=False)
        return lambda *args, **kwargs: hook(operation, call(*args, **kwargs))

    return model._run_through_graph(inputs, operation_fn=hooked)
