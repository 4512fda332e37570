"""Re-running a Functional model operation by operation with a hook on each output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras.src.models.functional import operation_fn as functional_operation_fn


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
