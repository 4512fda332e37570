"""Where a feature map sits on the input grid: receptive-field arithmetic along the traced path.

Each spatial axis of a traced tensor (one for signals, two for images, three for volumes)
carries an `AxisGeometry`: an affine map in pixel-EDGE
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
    klayers.Conv1D,
    klayers.Conv2D,
    klayers.Conv3D,
    klayers.DepthwiseConv1D,
    klayers.DepthwiseConv2D,
    klayers.SeparableConv1D,
    klayers.SeparableConv2D,
    klayers.MaxPooling1D,
    klayers.MaxPooling2D,
    klayers.MaxPooling3D,
    klayers.AveragePooling1D,
    klayers.AveragePooling2D,
    klayers.AveragePooling3D,
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
    """The spatial geometry of a traced tensor with one to three spatial axes.

    Attributes:
        axes: tensor axes of the spatial dimensions, in order: `(1, 2)` for a channels-last
            image, `(2, 3)` channels-first, `(1,)` for a signal `(B, T, C)`, `(1, 2, 3)` for
            a volume `(B, D, H, W, C)`.
        dims: the geometry of each spatial axis, in the order of `axes`.
        unknown: names of the layers upstream that changed the grid in an unknown way (the
            grid was stretched over the whole input there).
    """

    axes: tuple[int, ...]
    dims: tuple[AxisGeometry, ...]
    unknown: tuple[str, ...] = ()

    @classmethod
    def identity(cls, shape: tuple, data_format: str) -> Grid:
        """The model input's grid, for an input of `shape` (batch axis included)."""
        axes = spatial_axes(data_format, len(shape))
        return cls(axes, tuple(AxisGeometry.identity(shape[axis]) for axis in axes))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(axis.size for axis in self.dims)

    def map(self, function: Any, *per_axis: tuple) -> Grid:
        """Applies `function(axis_geometry, *args)` with one argument tuple per axis."""
        per_axis = per_axis if per_axis else tuple(() for _ in self.dims)
        return dataclasses.replace(
            self, dims=tuple(function(axis, *args) for axis, args in zip(self.dims, per_axis))
        )

    def flip(self, tensor_axes: tuple[int, ...]) -> Grid:
        """The grid after reversing the given tensor axes (non-spatial ones leave it alone)."""
        return dataclasses.replace(
            self,
            dims=tuple(
                dim.flip() if axis in tensor_axes else dim for axis, dim in zip(self.axes, self.dims)
            ),
        )

    def stretch(
        self, sizes: tuple[int, ...], axes: tuple[int, ...], unknown: str | None = None
    ) -> Grid:
        """`sizes` cells stretched over the whole input; `unknown` names the layer whose
        change of the grid could not be derived (none for a global pooling)."""
        return Grid(
            axes,
            tuple(dim.stretch(size) for dim, size in zip(self.dims, sizes)),
            self.unknown + ((unknown,) if unknown else ()),
        )

    def differs(self, other: Grid) -> bool:
        return any(mine.differs(theirs) for mine, theirs in zip(self.dims, other.dims))

    def average(self, others: list[Grid]) -> Grid:
        """The grid of a merge (Add, Concatenate...) of this grid's tensor with `others`."""
        return dataclasses.replace(
            self,
            dims=tuple(
                dim.average([other.dims[i] for other in others]) for i, dim in enumerate(self.dims)
            ),
            unknown=tuple(dict.fromkeys(sum((g.unknown for g in [self, *others]), ()))),
        )

    def placement(self) -> np.ndarray:
        """float32 `(n, 4)`: `(offset, scale, lo, hi)` of each spatial axis, for `place_maps`."""
        return np.array(
            [[axis.offset, axis.scale, axis.lo, axis.hi] for axis in self.dims], np.float32
        )


def spatial_axes(data_format: str, rank: int = 4) -> tuple[int, ...]:
    """Tensor axes of the spatial dimensions of a rank-`rank` tensor in `data_format`.

    Args:
        data_format: `"channels_last"` or `"channels_first"`.
        rank: the tensor's rank, batch axis included: 3 for signals `(B, T, C)`, 4 for images,
            5 for volumes. Defaults to `4`.

    Returns:
        e.g. `(1, 2)` for channels-last images, `(2, 3)` channels-first, `(1,)` for signals.
    """
    first = 2 if data_format == "channels_first" else 1
    return tuple(range(first, first + rank - 2))


def spatial_sizes(shape: tuple, axes: tuple[int, ...]) -> tuple[Any, ...]:
    return tuple(shape[axis] for axis in axes)


_CROPPING = (klayers.Cropping1D, klayers.Cropping2D, klayers.Cropping3D)
_PADDING = (klayers.ZeroPadding1D, klayers.ZeroPadding2D, klayers.ZeroPadding3D)
_UPSAMPLING = (klayers.UpSampling1D, klayers.UpSampling2D, klayers.UpSampling3D)


def _pairs(value: Any, rank: int) -> tuple[tuple[int, int], ...]:
    """Keras' `((before, after), ...)` per spatial axis, from an int, a pair (one per axis,
    or the `(before, after)` of a 1-D layer) or a tuple of pairs."""
    if isinstance(value, int):
        return ((value, value),) * rank
    if rank == 1:
        return ((int(value[0]), int(value[1])),)
    return tuple(
        (int(part), int(part)) if isinstance(part, int) else (int(part[0]), int(part[1]))
        for part in value
    )


def _window(layer: Any, grid: Grid, out_sizes: tuple[int, ...]) -> Grid:
    kernel = getattr(layer, "kernel_size", None) or layer.pool_size
    dilation = getattr(layer, "dilation_rate", (1,) * len(grid.dims))
    per_axis = []
    for geometry, k, s, d, out in zip(grid.dims, kernel, layer.strides, dilation, out_sizes):
        effective = (int(k) - 1) * int(d) + 1
        pad_total = max((out - 1) * int(s) + effective - geometry.size, 0)
        # 'same' pads half before; 'causal' (Conv1D) pads everything before.
        pad_before = {"same": pad_total // 2, "causal": pad_total}.get(layer.padding, 0)
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


def layer_grid(layer: Any, grid: Grid, out_sizes: tuple[int, ...]) -> Grid | None:
    """The grid of `layer`'s output from its input's, or `None` when the change is unknown.

    Args:
        layer: the layer called on the tensor whose grid is `grid`.
        grid: the input's grid, sizes known.
        out_sizes: the output's spatial sizes, known (one per axis of `grid`).

    Returns:
        The output's grid; `None` when the layer changes the spatial size in a way this
        module does not know (the caller warns and stretches).
    """
    if isinstance(layer, WINDOW_LAYERS):
        return _window(layer, grid, out_sizes)
    if isinstance(layer, _CROPPING):
        pairs = _pairs(layer.cropping, len(grid.dims))
        return grid.map(AxisGeometry.crop, *((b, out) for (b, _), out in zip(pairs, out_sizes)))
    if isinstance(layer, _PADDING):
        pairs = _pairs(layer.padding, len(grid.dims))
        return grid.map(AxisGeometry.pad, *((b, out) for (b, _), out in zip(pairs, out_sizes)))
    if isinstance(layer, klayers.CenterCrop):
        return _center_crop(layer, grid, out_sizes)
    if isinstance(layer, klayers.Resizing):
        return _resizing(layer, grid, out_sizes)
    if isinstance(layer, _UPSAMPLING):
        return grid.map(AxisGeometry.resample, *((out,) for out in out_sizes))
    if tuple(out_sizes) == tuple(grid.sizes):
        return grid  # pointwise and merge layers, and anything that keeps the grid
    return None
