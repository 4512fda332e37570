"""Which models keras_cam can trace, and which of their inputs and outputs is explained:
clear refusals of the others, and the choice of one input and one output by name or index."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_cam.surgery.graph import INPUT_KINDS, is_graph_model


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
