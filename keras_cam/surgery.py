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
from collections.abc import Iterator
from typing import Any

import keras
from keras import layers as klayers
import tensorflow as tf
from keras import ops
from keras.src.models.functional import Functional
from keras.src.ops import nn as keras_nn_ops

logger = logging.getLogger("keras_cam")

_POOLING = (
    klayers.MaxPooling2D,
    klayers.AveragePooling2D,
)
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
        input_shape: the model's input shape without the batch axis, e.g. `(224, 224, 3)`;
            spatial dimensions may be `None`.
    """

    model: keras.Model
    layer: keras.layers.Layer
    head: Head
    num_classes: int
    input_shape: tuple[int | None, ...]


def _is_graph_model(obj: Any) -> bool:
    return isinstance(obj, (Functional, keras.Sequential))


def is_readable(model: Any) -> bool:
    """Whether `read_head` can read `model`: a Functional or Sequential model with one input
    and one `(batch, units)` output.

    Args:
        model: any object, e.g. the callable a metric is given.

    Returns:
        `True` when the model's graph, and so its head, can be read.
    """
    if not _is_graph_model(model):
        return False
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return False
    return len(inputs) == 1 and len(outputs) == 1 and len(outputs[0].shape) == 2


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
    """

    kind: str
    units: int
    description: str
    pre_activation: str | None = None
    final: Any = dataclasses.field(default=None, compare=False, repr=False)

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
    graph. A softmax over another axis than the last is not a classifier head. The rule:

    - a softmax / sigmoid output is read as probabilities; logits are read before it;
    - a log_softmax output is read as logits (those before it), and so is a linear output
      with several units;
    - a linear output with **one** unit is a raw score (e.g. a regression), explained as it
      is; `head="logits"` says it is a binary logit instead;
    - an activation keras_cam does not know (`"tanh"`, `"relu"`, a custom function) is read
      like a linear output, with a warning that names `head=`.

    Args:
        model: a single-input, single-output Functional or Sequential Keras model whose output
            is `(batch, units)`.
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
    check_model(model)
    check_head(head)
    if isinstance(head, Head):
        return head
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"`model` must output class scores of shape (batch, units); model {model.name!r} "
            f"outputs shape {shape}. Build a Functional model that returns the scores to explain."
        )
    units = int(shape[-1])
    final = _final_layer(model)
    activation = _final_activation(final, len(shape))
    if head is not None:
        matches = _SPLIT_KINDS.get(activation.name) == head
        return Head(
            head,
            units,
            f"stated by head={head!r} ({activation.description})",
            activation.pre_activation if matches else None,
            final,
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
    return Head(kind, units, activation.description, pre_activation, final)


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
    head: str | Head | None = None,
) -> CamModel:
    """Builds the Functional sub-model `inputs -> (features, logits, probabilities)`.

    The user's model is not modified: its layers are called again on a new input, so the
    sub-model shares their weights (a model that keeps training is explained as it is now).

    Args:
        model: a single-input, single-output Functional or Sequential classifier; nested
            models are supported.
        layer: the layer to explain: a name, a layer object, or `None` for the automatic
            choice (see `find_conv_layer`). Defaults to `None`.
        head: how to read the model's output: `None` for the automatic reading of
            `read_head` (which warns when it cannot recognise the final activation), or one
            of `HEADS`, or a `Head` already read. Defaults to `None`.

    Returns:
        A `CamModel` holding the sub-model, the layer, the head reading and the class count.

    Raises:
        TypeError: `model` is not a traceable Keras model.
        ValueError: unusable `layer` or `head`, or a model with no spatial layer.

    Example:
    ```python
    cam_model = build_cam_model(keras.applications.ResNet50(weights=None))
    features, logits, probabilities = cam_model.model(images)
    ```
    """
    reading = read_head(model, head)
    target = resolve_layer(model, layer)
    recorder = _Recorder(target, reading.final)
    source = model.inputs[0]
    inputs = keras.Input(batch_shape=source.shape, dtype=source.dtype, name="keras_cam_images")
    output = recorder.trace(model, inputs)
    if recorder.features is None:
        raise ValueError(
            f"`layer`={target.name!r} is not on the path from the input to the output of model "
            f"{model.name!r}, so it does not influence the prediction. Choose another layer."
        )
    logits, scores = _head_tensors(reading, recorder, output)
    sub_model = keras.Model(
        inputs, [recorder.features, logits, scores], name=f"keras_cam_{model.name}"
    )
    return CamModel(
        model=sub_model,
        layer=target,
        head=reading,
        num_classes=reading.num_classes,
        input_shape=tuple(source.shape[1:]),
    )
