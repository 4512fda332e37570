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
import logging
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
from keras import layers as klayers
from keras import ops
from keras.src.models.functional import Functional

logger = logging.getLogger("keras_cam")

_POOLING = (
    klayers.MaxPooling2D,
    klayers.AveragePooling2D,
)


@dataclasses.dataclass(frozen=True)
class CamModel:
    """The Functional sub-model behind every explainer.

    Attributes:
        model: `inputs -> (features, logits, probabilities)`, sharing the user's weights.
            Logits and probabilities are float32 `(B, num_classes)`; a single-unit
            (binary) head is expanded to two classes: logits `[-z, z]`, probabilities
            `[1 - p, p]`.
        layer: the explained layer.
        head: how logits were obtained: `"softmax"` or `"sigmoid"` (read before the model's
            own output activation) or `"linear"` (the model outputs logits).
        num_classes: number of classes (2 for a single-unit binary head).
        input_shape: the model's input shape without the batch axis, e.g. `(224, 224, 3)`;
            spatial dimensions may be `None`.
    """

    model: keras.Model
    layer: keras.layers.Layer
    head: str
    num_classes: int
    input_shape: tuple[int | None, ...]


def _is_graph_model(obj: Any) -> bool:
    return isinstance(obj, (Functional, keras.Sequential))


def check_model(model: Any) -> None:
    """Raises a clear error unless `model` is a traceable single-input, single-output Keras model.

    Args:
        model: the object to check.

    Raises:
        TypeError: not a Keras model, or a subclassed model (its graph cannot be traced).
        ValueError: an unbuilt Sequential model, or several inputs or outputs.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model; received an object of type {type(model).__name__}."
        )
    if not _is_graph_model(model):
        raise TypeError(
            f"`model` is a subclassed Keras model ({type(model).__name__}) whose layer graph cannot "
            "be traced, so its intermediate feature maps are not reachable. Rebuild it with the "
            "Functional API (`inputs = keras.Input(shape); outputs = ...; keras.Model(inputs, "
            "outputs)`) or a keras.Sequential, or pass the Functional backbone and head it wraps."
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"`model` ({model.name}) has no defined inputs yet: build it first, e.g. start the "
            "Sequential with `keras.Input(shape=(H, W, C))` or call `model.build((None, H, W, C))`."
        ) from error
    if len(inputs) != 1:
        raise ValueError(
            f"`model` must have exactly one image input; {model.name} has {len(inputs)}. "
            "Wrap it in a single-input Functional model that fixes the other inputs."
        )
    if len(outputs) != 1:
        raise ValueError(
            f"`model` must have exactly one classification output; {model.name} has "
            f"{len(outputs)}. Build a Functional model that returns only the output to explain."
        )
    if len(inputs[0].shape) != 4:
        raise ValueError(
            f"`model` must take images of shape (batch, height, width, channels); its input "
            f"has shape {tuple(inputs[0].shape)}."
        )


def _iter_layers(model: keras.Model) -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yields `(path, layer)` in execution order, descending into nested models."""
    for layer in model.layers:
        if _is_graph_model(layer):
            for path, inner in _iter_layers(layer):
                yield f"{layer.name}/{path}", inner
        else:
            yield layer.name, layer


def _output_shape(layer: keras.layers.Layer) -> tuple | None:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return None
    if isinstance(output, (list, tuple)):
        return None
    return tuple(output.shape)


def _is_spatial(shape: tuple | None) -> bool:
    return (
        shape is not None
        and len(shape) == 4
        and all(dim is None or dim > 1 for dim in shape[1:3])
    )


def _has_conv_kernel(layer: keras.layers.Layer) -> bool:
    return any(len(weight.shape) == 4 for weight in layer.weights)


def spatial_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """Lists the layers that can be explained: 4-D outputs with height and width > 1.

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
    for path, layer in _iter_layers(model):
        seen_conv = seen_conv or _has_conv_kernel(layer)
        if seen_conv and _is_spatial(_output_shape(layer)):
            candidates.append((path, layer))
    return candidates


def find_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """Finds the layer to explain automatically: the last spatial layer before the head.

    Picks the last layer with a 4-D output whose height and width are > 1 (a 1x1 map carries
    no spatial information), stepping back over a trailing pooling layer, and searching inside
    nested models (a `keras.applications` base inside a Sequential, for example).

    Args:
        model: a Functional or Sequential Keras model.

    Returns:
        The chosen layer object (`layer.name` gives its name).

    Raises:
        ValueError: the model has no convolutional layer with a spatial output.

    Example:
    ```python
    model = keras.applications.VGG16(weights=None)
    kc.find_conv_layer(model).name  # "block5_conv3"
    ```
    """
    check_model(model)
    candidates = spatial_layers(model)
    if not candidates:
        raise ValueError(
            f"`model` ({model.name}) has no convolutional layer with a spatial output (4-D, "
            "height and width > 1), so there is no feature map to explain. Class activation maps "
            "need a convolutional network; for a larger map use a bigger input size."
        )
    index = len(candidates) - 1
    while index > 0 and isinstance(candidates[index][1], _POOLING):
        index -= 1
    path, layer = candidates[index]
    logger.info("keras_cam: explaining layer %r with output shape %s", path, _output_shape(layer))
    return layer


def resolve_layer(model: keras.Model, layer: str | keras.layers.Layer | None) -> keras.layers.Layer:
    """Turns the user's `layer` argument into a layer object of `model`.

    Args:
        model: the model to explain.
        layer: a layer name (nested models are searched too; `"outer/inner"` paths also work),
            a layer object, or `None` for the automatic choice of `find_conv_layer`.

    Returns:
        The layer object.

    Raises:
        ValueError: no such layer, a name matching several nested layers, or a layer whose
            output is not a 4-D feature map.
        TypeError: `layer` is neither a string, a layer nor None.
    """
    if layer is None:
        return find_conv_layer(model)
    check_model(model)
    everything = list(_iter_layers(model))
    everything += [(path, nested) for path, nested in _iter_nested_models(model)]
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
    shape = _output_shape(chosen)
    if shape is None or len(shape) != 4:
        names = [path for path, _ in spatial_layers(model)]
        raise ValueError(
            f"`layer`={chosen.name!r} outputs shape {shape}, not a 4-D feature map "
            f"(batch, height, width, channels). Choose one of: {names}."
        )
    if not _is_spatial(shape):
        logger.warning(
            "keras_cam: layer %r has a %sx%s map: it carries little spatial information.",
            chosen.name,
            shape[1],
            shape[2],
        )
    return chosen


def _iter_nested_models(model: keras.Model) -> Iterator[tuple[str, keras.Model]]:
    for layer in model.layers:
        if _is_graph_model(layer):
            yield layer.name, layer
            for path, inner in _iter_nested_models(layer):
                yield f"{layer.name}/{path}", inner


def _final_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer that produces the model's output, looking inside a nested final model."""
    if isinstance(model, keras.Sequential):
        last = model.layers[-1]
    else:
        last = model.outputs[0]._keras_history.operation
    return _final_layer(last) if _is_graph_model(last) else last


def _activation_name(layer: keras.layers.Layer) -> str | None:
    if isinstance(layer, klayers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", None)


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


class _Recorder:
    """Re-traces a model on new inputs, calling the same layers and recording what we need."""

    def __init__(self, target: keras.layers.Layer, final: keras.layers.Layer) -> None:
        self.target = target
        self.final = final
        self.features: Any = None
        self.head_input: Any = None
        self.head_output: Any = None

    def call(self, layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        if _is_graph_model(layer) and layer is not self.target:
            return self.trace(layer, *args)
        output = layer(*args, **kwargs)
        if layer is self.target:
            self.features = output
        if layer is self.final:
            self.head_input, self.head_output = args[0], output
        return output

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


def _head_tensors(recorder: _Recorder, output: Any) -> tuple[Any, Any, str]:
    """Splits the model's output into float32 (logits, probabilities) and names the head."""
    final = recorder.final
    activation = _activation_name(final)
    if activation in ("softmax", "sigmoid"):
        if isinstance(final, (klayers.Softmax, klayers.Activation)):
            logits = recorder.head_input
        elif isinstance(final, klayers.Dense):
            logits = _DenseLogits(final, name="keras_cam_logits")(recorder.head_input)
        else:
            logger.warning(
                "keras_cam: the final layer %r applies %s inside a %s layer; logits are "
                "recovered from its probabilities (log-probabilities for softmax).",
                final.name,
                activation,
                type(final).__name__,
            )
            clipped = ops.clip(ops.cast(output, "float32"), 1e-7, 1.0 - 1e-7)
            logits = ops.log(clipped) - (ops.log1p(-clipped) if activation == "sigmoid" else 0.0)
        probabilities = output
        head = activation
    else:
        logits = output
        probabilities = None
        head = "linear"
    logits = ops.cast(logits, "float32")
    num_units = logits.shape[-1]
    if num_units == 1:
        probability = (
            ops.sigmoid(logits) if probabilities is None else ops.cast(probabilities, "float32")
        )
        return (
            ops.concatenate([-logits, logits], axis=-1),
            ops.concatenate([1.0 - probability, probability], axis=-1),
            head,
        )
    if probabilities is None:
        probabilities = ops.softmax(logits, axis=-1)
    return logits, ops.cast(probabilities, "float32"), head


def build_cam_model(
    model: keras.Model, layer: str | keras.layers.Layer | None = None
) -> CamModel:
    """Builds the Functional sub-model `inputs -> (features, logits, probabilities)`.

    The user's model is not modified: its layers are called again on a new input, so the
    sub-model shares their weights (a model that keeps training is explained as it is now).
    That input is float32 when the model's is integer or bool (see `explained_input_dtype`).

    Args:
        model: a single-input, single-output Functional or Sequential classifier; nested
            models are supported.
        layer: the layer to explain: a name, a layer object, or `None` for the automatic
            choice (see `find_conv_layer`). Defaults to `None`.

    Returns:
        A `CamModel` holding the sub-model, the layer, the head type and the class count.

    Raises:
        TypeError: `model` is not a traceable Keras model.
        ValueError: unusable `layer`, or a model with no spatial layer.

    Example:
    ```python
    cam_model = build_cam_model(keras.applications.ResNet50(weights=None))
    features, logits, probabilities = cam_model.model(images)
    ```
    """
    target = resolve_layer(model, layer)
    recorder = _Recorder(target, _final_layer(model))
    source = model.inputs[0]
    inputs = keras.Input(
        batch_shape=source.shape, dtype=explained_input_dtype(source.dtype), name="keras_cam_images"
    )
    output = recorder.trace(model, inputs)
    if recorder.features is None:
        raise ValueError(
            f"`layer`={target.name!r} is not on the path from the input to the output of model "
            f"{model.name!r}, so it does not influence the prediction. Choose another layer."
        )
    logits, probabilities, head = _head_tensors(recorder, output)
    sub_model = keras.Model(
        inputs, [recorder.features, logits, probabilities], name=f"keras_cam_{model.name}"
    )
    return CamModel(
        model=sub_model,
        layer=target,
        head=head,
        num_classes=int(logits.shape[-1]),
        input_shape=tuple(source.shape[1:]),
    )


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
