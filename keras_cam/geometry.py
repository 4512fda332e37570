"""Where a feature map sits on the input grid: receptive-field arithmetic along the traced path.

Each spatial axis of a traced tensor carries an `AxisGeometry`: an affine map in pixel-EDGE
coordinates of the model's input (feature cell `j` covers input `[offset + scale * j,
offset + scale * (j + 1))`; a negative `scale` means the axis is mirrored) and the interval
`[lo, hi)` of the input its features come from (the map is zero outside it). The input is the
identity; each layer that moves the grid (cropping, padding, resizing, strided or 'valid'
windows, flips) transforms it in a known way. `surgery` propagates it while re-tracing a model;
`placement` turns it into the parameters that `methods.base.place_maps` samples maps with.

Only public Keras layer attributes are read here; Keras operations that are not layers
(`keras.ops.flip`) are recognised by `surgery`, which calls `Grid.flip`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from keras import layers as klayers

WINDOW_LAYERS = (
    klayers.Conv2D,
    klayers.DepthwiseConv2D,
    klayers.SeparableConv2D,
    klayers.MaxPooling2D,
    klayers.AveragePooling2D,
)
"""Layers that slide a window over the grid: kernel, stride, dilation and padding move it."""

_TOLERANCE_CELLS = 1.0
"""Branches of a merge whose grids differ by more than this many cells are reported.

Strided shortcuts of residual networks (a 1x1 convolution with stride 2 beside a 3x3 pooling)
sit half a cell apart by construction; such branches are averaged, not reported."""


@dataclasses.dataclass(frozen=True)
class AxisGeometry:
    """One spatial axis of a traced tensor, in pixels of the model's input.

    Attributes:
        size: cells along the axis.
        offset: input coordinate of the leading edge of cell 0.
        scale: input pixels per cell; negative when the axis is mirrored.
        lo: start of the input interval the features come from.
        hi: end (exclusive) of that interval.
        extent: the model input's size along the axis.
    """

    size: int
    offset: float
    scale: float
    lo: float
    hi: float
    extent: int

    @classmethod
    def identity(cls, size: int) -> AxisGeometry:
        """The input's own axis: cell `j` is pixel `j`."""
        return cls(size, 0.0, 1.0, 0.0, float(size), size)

    def edge(self, cell: float) -> float:
        """Input coordinate of the leading edge of (fractional) cell `cell`."""
        return self.offset + self.scale * cell

    def crop(self, start: int, size: int) -> AxisGeometry:
        """Keeps cells `[start, start + size)`; features outside them are gone."""
        low, high = sorted((self.edge(start), self.edge(start + size)))
        return dataclasses.replace(
            self,
            size=size,
            offset=self.edge(start),
            lo=max(self.lo, low),
            hi=min(self.hi, high),
        )

    def pad(self, before: int, size: int) -> AxisGeometry:
        """Adds `before` cells in front (and some behind): the input interval is unchanged."""
        return dataclasses.replace(self, size=size, offset=self.edge(-before))

    def window(self, kernel: int, stride: int, pad_before: int, size: int) -> AxisGeometry:
        """A sliding window: output cell `j` is centred on input cells `j*stride - pad_before +
        (kernel - 1) / 2`; `kernel` is the effective (dilated) size."""
        return dataclasses.replace(
            self,
            size=size,
            offset=self.edge(-pad_before + (kernel - stride) / 2),
            scale=self.scale * stride,
        )

    def resample(self, size: int) -> AxisGeometry:
        """The whole axis resampled to `size` cells with half-pixel centres (tf.image.resize)."""
        return dataclasses.replace(self, size=size, scale=self.scale * self.size / size)

    def flip(self) -> AxisGeometry:
        """The axis reversed: cell `j` becomes cell `size - 1 - j`."""
        return dataclasses.replace(self, offset=self.edge(self.size), scale=-self.scale)

    def stretch(self, size: int) -> AxisGeometry:
        """Unknown geometry: `size` cells stretched over the whole input axis."""
        return AxisGeometry(size, 0.0, self.extent / size, 0.0, float(self.extent), self.extent)

    def differs(self, other: AxisGeometry) -> bool:
        """Whether two grids of the same size disagree by more than a cell at either end."""
        tolerance = _TOLERANCE_CELLS * min(abs(self.scale), abs(other.scale))
        return (
            abs(self.edge(0) - other.edge(0)) > tolerance
            or abs(self.edge(self.size) - other.edge(other.size)) > tolerance
        )

    def average(self, others: list[AxisGeometry]) -> AxisGeometry:
        """The mean placement of merged branches; features come from all their regions."""
        axes = [self, *others]
        return dataclasses.replace(
            self,
            offset=float(np.mean([axis.offset for axis in axes])),
            scale=float(np.mean([axis.scale for axis in axes])),
            lo=min(axis.lo for axis in axes),
            hi=max(axis.hi for axis in axes),
        )


@dataclasses.dataclass(frozen=True)
class Grid:
    """The spatial geometry of a rank-4 traced tensor.

    Attributes:
        axes: tensor axes of (height, width): `(1, 2)` channels-last, `(2, 3)` channels-first.
        height: geometry of the height axis.
        width: geometry of the width axis.
        unknown: names of the layers upstream that changed the grid in an unknown way (the
            grid was stretched over the whole input there).
    """

    axes: tuple[int, int]
    height: AxisGeometry
    width: AxisGeometry
    unknown: tuple[str, ...] = ()

    @classmethod
    def identity(cls, shape: tuple, data_format: str) -> Grid:
        """The model input's grid, for an input of `shape` (batch axis included)."""
        axes = spatial_axes(data_format)
        return cls(axes, *(AxisGeometry.identity(shape[axis]) for axis in axes))

    @property
    def sizes(self) -> tuple[int, int]:
        return self.height.size, self.width.size

    def map(self, function: Any, *per_axis: tuple) -> Grid:
        """Applies `function(axis_geometry, *args)` with one argument tuple per axis."""
        height_args, width_args = per_axis if per_axis else ((), ())
        return dataclasses.replace(
            self,
            height=function(self.height, *height_args),
            width=function(self.width, *width_args),
        )

    def flip(self, tensor_axes: tuple[int, ...]) -> Grid:
        """The grid after reversing the given tensor axes (non-spatial ones leave it alone)."""
        height = self.height.flip() if self.axes[0] in tensor_axes else self.height
        width = self.width.flip() if self.axes[1] in tensor_axes else self.width
        return dataclasses.replace(self, height=height, width=width)

    def stretch(
        self, sizes: tuple[int, int], axes: tuple[int, int], unknown: str | None = None
    ) -> Grid:
        """`sizes` cells stretched over the whole input; `unknown` names the layer whose
        change of the grid could not be derived (none for a global pooling)."""
        return Grid(
            axes,
            self.height.stretch(sizes[0]),
            self.width.stretch(sizes[1]),
            self.unknown + ((unknown,) if unknown else ()),
        )

    def differs(self, other: Grid) -> bool:
        return self.height.differs(other.height) or self.width.differs(other.width)

    def average(self, others: list[Grid]) -> Grid:
        """The grid of a merge (Add, Concatenate...) of this grid's tensor with `others`."""
        return dataclasses.replace(
            self,
            height=self.height.average([other.height for other in others]),
            width=self.width.average([other.width for other in others]),
            unknown=tuple(dict.fromkeys(sum((g.unknown for g in [self, *others]), ()))),
        )

    def placement(self) -> np.ndarray:
        """float32 `(2, 4)`: `(offset, scale, lo, hi)` of height and width, for `place_maps`."""
        return np.array(
            [[axis.offset, axis.scale, axis.lo, axis.hi] for axis in (self.height, self.width)],
            np.float32,
        )


def spatial_axes(data_format: str) -> tuple[int, int]:
    """Tensor axes of (height, width) of a rank-4 tensor in `data_format`."""
    return (2, 3) if data_format == "channels_first" else (1, 2)


def spatial_sizes(shape: tuple, axes: tuple[int, int]) -> tuple[Any, Any]:
    return shape[axes[0]], shape[axes[1]]


def _pairs(value: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras' `((top, bottom), (left, right))`, from an int, a pair or a pair of pairs."""
    if isinstance(value, int):
        return (value, value), (value, value)
    return tuple(
        (int(part), int(part)) if isinstance(part, int) else (int(part[0]), int(part[1]))
        for part in value
    )


def _window(layer: Any, grid: Grid, out_sizes: tuple[int, int]) -> Grid:
    kernel = getattr(layer, "kernel_size", None) or layer.pool_size
    dilation = getattr(layer, "dilation_rate", (1, 1))
    per_axis = []
    for geometry, k, s, d, out in zip(
        (grid.height, grid.width), kernel, layer.strides, dilation, out_sizes
    ):
        effective = (int(k) - 1) * int(d) + 1
        pad_total = max((out - 1) * int(s) + effective - geometry.size, 0)
        pad_before = pad_total // 2 if layer.padding == "same" else 0
        per_axis.append((effective, int(s), pad_before, out))
    return grid.map(AxisGeometry.window, *per_axis)


def _aspect_box(other: int, target: int, target_other: int) -> int:
    """Keras' crop/pad size along an axis to reach the target aspect ratio (before clamping)."""
    return int(float(other * target) / target_other)


def _center_crop(layer: Any, grid: Grid, out_sizes: tuple[int, int]) -> Grid:
    (height, width), targets = grid.sizes, (layer.height, layer.width)
    if height >= targets[0] and width >= targets[1]:
        starts = ((height - targets[0]) // 2, (width - targets[1]) // 2)
        return grid.map(AxisGeometry.crop, (starts[0], targets[0]), (starts[1], targets[1]))
    return _crop_then_resize(grid, targets, out_sizes)  # smaller input: Keras' smart_resize


def _crop_then_resize(grid: Grid, targets: tuple[int, int], out_sizes: tuple[int, int]) -> Grid:
    height, width = grid.sizes
    crop_height = max(min(height, _aspect_box(width, targets[0], targets[1])), 1)
    crop_width = max(min(width, _aspect_box(height, targets[1], targets[0])), 1)
    cropped = grid.map(
        AxisGeometry.crop,
        (int((height - crop_height) / 2), crop_height),
        (int((width - crop_width) / 2), crop_width),
    )
    return cropped.map(AxisGeometry.resample, (out_sizes[0],), (out_sizes[1],))


def _resizing(layer: Any, grid: Grid, out_sizes: tuple[int, int]) -> Grid:
    if layer.crop_to_aspect_ratio:
        return _crop_then_resize(grid, (layer.height, layer.width), out_sizes)
    if layer.pad_to_aspect_ratio:
        height, width = grid.sizes
        pad_height = max(height, _aspect_box(width, layer.height, layer.width))
        pad_width = max(width, _aspect_box(height, layer.width, layer.height))
        starts = (int((pad_height - height) / 2), int((pad_width - width) / 2))
        grid = grid.map(
            AxisGeometry.pad,
            (starts[0], height + 2 * starts[0]),
            (starts[1], width + 2 * starts[1]),
        )
    return grid.map(AxisGeometry.resample, (out_sizes[0],), (out_sizes[1],))


def layer_grid(layer: Any, grid: Grid, out_sizes: tuple[int, int]) -> Grid | None:
    """The grid of `layer`'s output from its input's, or `None` when the change is unknown.

    Args:
        layer: the layer called on the tensor whose grid is `grid`.
        grid: the input's grid, sizes known.
        out_sizes: the output's (height, width), known.

    Returns:
        The output's grid; `None` when the layer changes the spatial size in a way this
        module does not know (the caller warns and stretches).
    """
    if isinstance(layer, WINDOW_LAYERS):
        return _window(layer, grid, out_sizes)
    if isinstance(layer, klayers.Cropping2D):
        (top, _), (left, _) = _pairs(layer.cropping)
        return grid.map(AxisGeometry.crop, (top, out_sizes[0]), (left, out_sizes[1]))
    if isinstance(layer, klayers.ZeroPadding2D):
        (top, _), (left, _) = _pairs(layer.padding)
        return grid.map(AxisGeometry.pad, (top, out_sizes[0]), (left, out_sizes[1]))
    if isinstance(layer, klayers.CenterCrop):
        return _center_crop(layer, grid, out_sizes)
    if isinstance(layer, klayers.Resizing):
        return _resizing(layer, grid, out_sizes)
    if isinstance(layer, klayers.UpSampling2D):
        return grid.map(AxisGeometry.resample, (out_sizes[0],), (out_sizes[1],))
    if tuple(out_sizes) == tuple(grid.sizes):
        return grid  # pointwise and merge layers, and anything that keeps the grid
    return None
