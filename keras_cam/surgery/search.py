"""Layer search: the layers that can be explained (feature maps, vision-transformer tokens),
the automatic choice among them, and the user's `layer=` turned into a layer object."""

from __future__ import annotations

import logging

import keras
from keras import layers as klayers

from keras_cam.geometry import spatial_axes, spatial_sizes
from keras_cam.surgery.checks import check_model
from keras_cam.surgery.graph import (
    INPUT_KINDS,
    data_format,
    input_rank,
    iter_layers,
    iter_nested_models,
    layer_format,
    output_shape,
)
from keras_cam.surgery.tracing import reached_layers

logger = logging.getLogger("keras_cam")

_POOLING = (
    klayers.MaxPooling1D,
    klayers.MaxPooling2D,
    klayers.MaxPooling3D,
    klayers.AveragePooling1D,
    klayers.AveragePooling2D,
    klayers.AveragePooling3D,
)


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
        if seen_conv and is_spatial(output_shape(layer), layer_format(layer, layout), rank):
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
    cells = spatial_sizes(output_shape(last), spatial_axes(layer_format(last, data_format(model))))
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
    if not is_spatial(shape, layer_format(chosen, data_format(model)), rank):
        logger.warning(
            "keras_cam: layer %r has a 1x1 map (output shape %s): the heatmap is constant.",
            chosen.name,
            shape,
        )
    return chosen
