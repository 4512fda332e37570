"""The CAM sub-model: pick the explained layer and expose it next to the logits and scores.

`build_cam_model` re-traces the user's model on a fresh `keras.Input`, calling the *same* layer
objects (so weights are shared, never copied, and the user's model is not modified), and records
three tensors on the way: the chosen layer's feature maps, the pre-softmax logits and the
probabilities. Nested models (a `keras.applications` base inside a Sequential or Functional
model) are re-traced layer by layer, so a layer deep inside them can be exposed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_cam.geometry import spatial_axes, spatial_sizes
from keras_cam.surgery.checks import check_model, select_output
from keras_cam.surgery.graph import channels_last_shape, data_format
from keras_cam.surgery.head import DenseLogits, Head, read_head
from keras_cam.surgery.placement import feature_placement
from keras_cam.surgery.search import resolve_layer
from keras_cam.surgery.tokens import check_token_grid
from keras_cam.surgery.tracing import Recorder, trace_model


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


def _head_tensors(head: Head, recorder: Recorder, output: Any) -> tuple[Any, Any]:
    """The float32 `(logits, scores)` of the re-traced output, as `head` reads them."""
    pre_activation = None
    if head.pre_activation == "input":
        pre_activation = recorder.head_input
    elif head.pre_activation == "dense":
        dense_logits = DenseLogits(head.final, name="keras_cam_logits")
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
    token_grid = check_token_grid(token_grid)
    layout = data_format(model)
    source = model.inputs[explained]
    axes = spatial_axes(layout, len(source.shape))
    inputs, recorder, traced = trace_model(
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
            grid = trace_model(model, target, layout, tuple(shape), explained, token_grid)[1]
            grid = grid.calls[index].grid
        return feature_placement(grid, target, sizes)

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
