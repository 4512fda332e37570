"""Model surgery: the model's graph, and only here (the one package that touches Keras-private
APIs). One module per job:

- `graph`: walking a Functional or Sequential model's graph (nested models too): layers,
  output shapes, the input's rank, dtype and data format.
- `checks`: which models can be traced, and the choice of the explained input and output.
- `search`: the layers that can be explained and the automatic choice among them.
- `head`: how the model's output is read (`read_head`, `Head`, `HEADS`).
- `gap_head`: the conv -> GlobalAveragePooling -> Dense head that CAM needs.
- `tokens`: vision-transformer tokens (extra tokens, `token_grid=`).
- `placement`: where the feature map sits on the input.
- `tracing`: re-tracing a model on new inputs, calling the same layer objects.
- `cam_model`: the sub-model `inputs -> (features, logits, scores)` (`build_cam_model`).
- `input_values`: the explained input's dtype and the check of the images' values.
- `hooks`: re-running a Functional model with a hook on each operation's output.

This package re-exports the public names of those modules, so `from keras_cam.surgery import
build_cam_model` and `keras_cam.surgery.HEADS` work as they always have.
"""

from keras_cam.surgery.cam_model import CamModel, build_cam_model, build_head_model, layer_calls
from keras_cam.surgery.checks import (
    check_graph_model,
    check_model,
    is_readable,
    output_index,
    output_names,
    select_input,
    select_output,
)
from keras_cam.surgery.gap_head import GapHead, find_gap_head
from keras_cam.surgery.graph import (
    INPUT_KINDS,
    channels_last_shape,
    data_format,
    final_layer,
    input_dtype,
    input_rank,
    is_graph_model,
    iter_layers,
    iter_nested_models,
    output_call,
    output_shape,
)
from keras_cam.surgery.head import (
    HEADS,
    Head,
    activation_name,
    check_head,
    is_relu_operation,
    passes_values,
    read_head,
)
from keras_cam.surgery.hooks import call_with_hook
from keras_cam.surgery.input_values import check_input_values, explained_input_dtype
from keras_cam.surgery.search import (
    find_conv_layer,
    is_spatial,
    resolve_layer,
    spatial_layers,
    token_layers,
)
from keras_cam.surgery.tokens import token_order
from keras_cam.surgery.tracing import reached_layers

__all__ = [
    "HEADS",
    "INPUT_KINDS",
    "CamModel",
    "GapHead",
    "Head",
    "activation_name",
    "build_cam_model",
    "build_head_model",
    "call_with_hook",
    "channels_last_shape",
    "check_graph_model",
    "check_head",
    "check_input_values",
    "check_model",
    "data_format",
    "explained_input_dtype",
    "final_layer",
    "find_conv_layer",
    "find_gap_head",
    "input_dtype",
    "input_rank",
    "is_graph_model",
    "is_readable",
    "is_relu_operation",
    "is_spatial",
    "iter_layers",
    "iter_nested_models",
    "layer_calls",
    "output_call",
    "output_index",
    "output_names",
    "output_shape",
    "passes_values",
    "read_head",
    "reached_layers",
    "resolve_layer",
    "select_input",
    "select_output",
    "spatial_layers",
    "token_layers",
    "token_order",
]
