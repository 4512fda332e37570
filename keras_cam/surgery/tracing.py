"""Re-tracing a model on new inputs, calling the same layer objects: the calls of the explained
layer with their grids on the input, the head's tensors, and the layers an input reaches."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_cam.geometry import Grid, layer_grid, spatial_axes, spatial_sizes
from keras_cam.surgery.graph import data_format, is_graph_model, layer_format
from keras_cam.surgery.head import head_layer
from keras_cam.surgery.input_values import explained_input_dtype
from keras_cam.surgery.placement import flipped_axes, moves_pixels
from keras_cam.surgery.tokens import token_order


@dataclasses.dataclass(frozen=True, eq=False)
class _Call:
    """One call of the explained layer while tracing: its output (channels-last), grid and a
    description."""

    output: Any
    grid: Grid | None
    description: str


class Recorder:
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
                if layer_format(layer, self.layout) == "channels_first":
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

        `arguments` are the call's `(args, kwargs)`, for `moves_pixels`. Spatial maps
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
            axes = spatial_axes(layer_format(layer, self.layout), self.rank)
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
        flipped = flipped_axes(layer, self.rank)
        if flipped is not None:
            grid = grids[0].flip(flipped)
        elif matching and len(tensors) == 1 and moves_pixels(layer, arguments, tensors[0], axes):
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


def reached_layers(model: keras.Model, input: int = 0) -> set[int]:
    """The ids of the layers (nested ones included) that the values of one input reach.

    Args:
        model: a Functional or Sequential model.
        input: the index of the input in `model.inputs`. Defaults to `0`.

    Returns:
        `{id(layer), ...}` of every layer called on a tensor computed from that input.
    """
    source = model.inputs[input]
    return trace_model(model, None, data_format(model), tuple(source.shape), input)[1].reached


def trace_model(
    model: keras.Model,
    target: keras.layers.Layer | None,
    layout: str,
    batch_shape: tuple,
    explained: int = 0,
    token_grid: tuple[int, int] | None = None,
) -> tuple[list[Any], Recorder, Any]:
    """Re-traces `model` on new inputs, input `explained` of `batch_shape`: `(inputs, recorder,
    output)`, `inputs` in the model's order."""
    recorder = Recorder(target, head_layer(model), layout, len(batch_shape), token_grid)
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
