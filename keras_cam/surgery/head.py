"""How a model's output is read: its final activation recognised in any spelling, the `Head`
reading (`read_head`) every method, metric and tool uses, and the pre-activation logits."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import warnings
from typing import Any

import keras
import tensorflow as tf
from keras import layers as klayers
from keras import ops
from keras.src.ops import nn as keras_nn_ops

from keras_cam.surgery.checks import check_graph_model
from keras_cam.surgery.graph import is_graph_model

logger = logging.getLogger("keras_cam")

# Layers that are activations of their own; one keras_cam does not recognise gets a warning.
_ACTIVATION_LAYERS = (klayers.ReLU, klayers.LeakyReLU, klayers.ELU, klayers.PReLU)


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


def head_layer(model: keras.Model) -> Any:
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
    final = head_layer(model)
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


class DenseLogits(keras.layers.Layer):
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
