"""Heatmap colouring, overlays and CAM grids.

The drawing functions are pure functions of NumPy arrays that return RGB (never BGR)
`uint8` images or a matplotlib `Figure`; the `save_*` functions write files atomically.
OpenCV and matplotlib are imported inside the functions that need them, so importing this
module costs nothing.
"""

from __future__ import annotations

import math
import numbers
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from keras_cam._files import atomic_writer, write_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PathLike = str | os.PathLike[str]

_COLORMAP_PREFIX = "COLORMAP_"

# Grid layout (`display_images`, `grid_column`, `join_columns`): small images are enlarged
# (nearest neighbour, by an integer factor) to at least this many pixels, so captions fit and
# maps stay visible in TensorBoard, which shows images 1:1.
_MIN_CELL_SIZE = 128
_BAND_HEIGHT = 18
_GAP = 2
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX, without importing OpenCV at module import
_FONT_SCALE = 0.4

HEATMAP_TOLERANCE = 1e-3
"""How far a float heatmap may stray outside [0, 1] (rounding, resampling) before it is refused.

`to_unit_heatmap()` clips values in [-1e-3, 0) and (1, 1 + 1e-3] to [0, 1]; values further out
mean the map is on another scale (raw CAM values, percentages, 0..255 as floats).
"""


def colormap_names() -> tuple[str, ...]:
    """Returns the names `colorize()` accepts: OpenCV's `COLORMAP_*`, lower-cased.

    Returns:
        Sorted tuple of names such as `"jet"`, `"turbo"`, `"viridis"`.

    Example:
    ```python
    "jet" in colormap_names()  # True
    ```
    """
    import cv2

    names = (name for name in dir(cv2) if name.startswith(_COLORMAP_PREFIX))
    return tuple(sorted(name[len(_COLORMAP_PREFIX) :].lower() for name in names))


def to_unit_heatmap(heatmap: ArrayLike, name: str = "heatmap") -> np.ndarray:
    """Reads heatmap values of any dtype as float32 in [0, 1], or refuses them.

    The one rule every function that draws a heatmap or uses it as a soft mask applies:

    - `uint8`: levels 0..255, divided by 255 (as `uint8` images are read). A `uint8` map
      whose largest value is 1 is refused: it is a 0/1 mask (`(m > t).astype(np.uint8)`),
      which read as levels would be drawn almost entirely in the colormap's bottom colour.
    - `bool`: `False` is 0, `True` is 1.
    - other integers (`int64`, `uint16`, ...): their values, which must be 0 or 1; any other
      value is refused, since 0..255 and 0..65535 scales cannot be told apart safely.
    - floats: must lie in [0, 1] up to `HEATMAP_TOLERANCE` (1e-3), then are clipped to
      [0, 1]; values further out are refused rather than clipped, since clipping would draw
      every pixel above 1 in the colormap's top colour.
    - NaN or infinity is refused.

    The shape is not checked: callers check the dimensions they need.

    Args:
        heatmap: Array-like of any shape (NumPy array, tensor or nested lists), numeric or
            bool.
        name: Argument name used in error messages. Defaults to `"heatmap"`.

    Returns:
        `float32` array of the same shape, in [0, 1].

    Raises:
        TypeError: The dtype is neither numeric nor bool (or is complex).
        ValueError: Values are NaN or infinite, or outside the range their dtype allows.

    Example:
    ```python
    to_unit_heatmap(np.array([[0, 51, 255]], np.uint8))  # [[0.0, 0.2, 1.0]]
    to_unit_heatmap(np.array([[0.0, 1.0004]]))          # [[0.0, 1.0]]
    to_unit_heatmap(np.array([[0.0, 1.5]]))             # ValueError: ... [0, 1.5] ...
    ```
    """
    array = np.asarray(heatmap)
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(
            f"`{name}` must be a numeric array, got dtype {array.dtype}; pass floats in "
            "[0, 1], uint8 levels 0..255 or bool."
        )
    if array.dtype == np.uint8:
        if array.size and array.max() == 1:
            raise ValueError(
                f"`{name}` is a uint8 map whose values are all 0 or 1: a 0/1 mask, but uint8 "
                "heatmaps are read as levels 0..255, which would make it almost all 0. Pass "
                f"the mask as bool (`{name}.astype(bool)`) or float, or levels 0..255."
            )
        return array.astype(np.float32) / np.float32(255.0)
    if array.size == 0:
        return array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(
            f"`{name}` contains NaN or infinite values; expected finite values in [0, 1]."
        )
    low, high = array.min(), array.max()
    if np.issubdtype(array.dtype, np.integer):
        if low < 0 or high > 1:
            raise ValueError(
                f"`{name}` has integer dtype {array.dtype} with values in [{low}, {high}]; "
                "integer heatmaps other than uint8 must be 0/1 masks. Pass levels 0..255 as "
                f"uint8 (`{name}.astype(np.uint8)`) or a float map in [0, 1] "
                f"(`{name} / {name}.max()`)."
            )
        return array.astype(np.float32)
    if low < -HEATMAP_TOLERANCE or high > 1.0 + HEATMAP_TOLERANCE:
        raise ValueError(
            f"`{name}` must lie in [0, 1] (up to {HEATMAP_TOLERANCE:g} for rounding), as CAM "
            f"methods return maps; got values in [{low:.6g}, {high:.6g}]. Min-max normalize it "
            "(`(m - m.min()) / (m.max() - m.min())`), or pass levels 0..255 as uint8."
        )
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def colorize(heatmap: ArrayLike, colormap: str = "jet") -> np.ndarray:
    """Maps a 2-D heatmap in [0, 1] to an RGB image with an OpenCV colormap.

    The heatmap is read by `to_unit_heatmap()` (float in [0, 1] up to 1e-3, `uint8` as
    0..255, bool as 0/1), then quantized to 256 levels before the colormap is applied.
    OpenCV produces BGR; the result is converted to RGB.

    Args:
        heatmap: 2-D array `(H, W)`: floats in [0, 1], `uint8` levels 0..255, or bool.
        colormap: Case-insensitive name of an OpenCV colormap (`cv2.COLORMAP_<NAME>`),
            e.g. `"jet"`, `"turbo"`, `"viridis"`, `"inferno"`; see `colormap_names()`.
            Defaults to `"jet"`.

    Returns:
        `uint8` RGB array of shape `(H, W, 3)`.

    Raises:
        TypeError: `heatmap` is not numeric or `colormap` is not a string.
        ValueError: `heatmap` is not 2-D, contains NaN or infinity, lies outside [0, 1]
            (floats) or is an integer map other than `uint8` 0..255 or 0/1, or `colormap` is
            unknown.

    Example:
    ```python
    colorize(np.array([[0.0, 1.0]]))[0, 1]  # [128, 0, 0]: jet's hot end is red
    ```
    """
    import cv2

    code = _colormap_code(colormap)
    levels = np.rint(_check_heatmap(heatmap) * 255.0).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, code), cv2.COLOR_BGR2RGB)


def overlay(
    image: ArrayLike, heatmap: ArrayLike, alpha: float = 0.4, colormap: str = "jet"
) -> np.ndarray:
    """Blends a colorized heatmap over an image.

    The heatmap is resized (bilinearly) to the image's height and width, colorized, and
    blended: `round((1 - alpha) * image + alpha * colorize(heatmap))`. A heatmap smaller
    than the image (e.g. at the conv layer's resolution) must have the image's orientation:
    a map taller than wide on an image wider than tall (or the reverse) has its axes swapped
    and is refused.

    A volume's map `(D, H, W)` is overlaid slice by slice on the volume `(D, H, W)`,
    `(D, H, W, 1)` or `(D, H, W, 3)`, giving `(D, H, W, 3)`; `slice_grid` tiles the slices.

    Args:
        image: RGB `(H, W, 3)` or grayscale `(H, W)` / `(H, W, 1)` image, either `uint8`
            or float. Floats whose maximum is at most 1.0 are read as [0, 1], otherwise
            as [0, 255]. For a 3-D `heatmap`, a volume whose slices are such images.
        heatmap: 2-D array `(h, w)` of any size with the image's orientation: floats in
            [0, 1] (up to a rounding tolerance of 1e-3, see `to_unit_heatmap()`), `uint8`
            levels 0..255, or bool. A 3-D array `(D, h, w)` is a volume's map, one 2-D
            heatmap per slice.
        alpha: Weight of the heatmap, in [0, 1]: `0` returns the image, `1` the
            colorized heatmap. Defaults to `0.4`.
        colormap: OpenCV colormap name, see `colorize()`. Defaults to `"jet"`.

    Returns:
        `uint8` RGB array of shape `(H, W, 3)` (`(D, H, W, 3)` for a volume).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: `alpha` is outside [0, 1], the image or heatmap has the wrong shape
            (or orientation) or values out of range, a volume's map whose depth is not the
            volume's, or `colormap` is unknown.

    Example:
    ```python
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    overlay(image, np.random.rand(6, 8), alpha=0.5).shape  # (48, 64, 3)
    ```
    """
    if np.ndim(heatmap) == 3:
        return _overlay_slices(image, heatmap, alpha, colormap)
    _check_alpha(alpha)
    rgb = to_uint8_rgb(image)
    heat = _check_heatmap(heatmap)
    height, width = rgb.shape[:2]
    _check_orientation(heat.shape, (height, width), "heatmap")
    colour = colorize(resize_heatmap(heat, (height, width)), colormap)
    blended = (1.0 - alpha) * rgb.astype(np.float64) + alpha * colour.astype(np.float64)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _overlay_slices(
    volume: ArrayLike, heatmap: ArrayLike, alpha: float, colormap: str
) -> np.ndarray:
    """`overlay` of each slice of a volume's map `(D, h, w)` on the volume's slice."""
    volume, heatmap = np.asarray(volume), np.asarray(heatmap)
    if volume.ndim not in (3, 4) or len(volume) != len(heatmap):
        raise ValueError(
            f"A volume's map {heatmap.shape} (D, h, w) is overlaid slice by slice on a volume "
            f"(D, H, W), (D, H, W, 1) or (D, H, W, 3) of the same depth D = {len(heatmap)}; "
            f"got a volume of shape {volume.shape}."
        )
    return np.stack(
        [overlay(image, heat, alpha, colormap) for image, heat in zip(volume, heatmap)]
    )


def slice_grid(slices: ArrayLike, columns: int | None = None, colormap: str = "jet") -> np.ndarray:
    """Tiles the slices of a volume into one RGB image, row by row.

    Args:
        slices: `(D, H, W, 3)` `uint8` RGB slices (e.g. `overlay(volume, volume_map)`), or a
            volume's map `(D, H, W)` in [0, 1], colorized slice by slice.
        columns: slices per row, at least 1; `None` for `ceil(sqrt(D))`. Defaults to `None`.
        colormap: OpenCV colormap name for a map, see `colorize()`. Defaults to `"jet"`.

    Returns:
        `uint8` RGB array `(rows * H + (rows - 1) * 2, columns * W + (columns - 1) * 2, 3)`,
        slice `d` in row `d // columns`, column `d % columns`, on a white background.

    Raises:
        ValueError: `slices` of another shape, or `columns` < 1.

    Example:
    ```python
    maps = kc.GradCAM(volume_model)(volumes)            # (B, D, H, W)
    grid = slice_grid(overlay(volumes[0, ..., 0], maps[0]), columns=4)
    ```
    """
    array = np.asarray(slices)
    if array.ndim == 3:
        array = np.stack([colorize(heat, colormap) for heat in array])
    if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
        raise ValueError(
            "`slices` must be RGB slices (D, H, W, 3) or a volume's map (D, H, W); got shape "
            f"{np.shape(slices)}."
        )
    depth, height, width = array.shape[:3]
    columns = math.ceil(math.sqrt(depth)) if columns is None else columns
    if isinstance(columns, bool) or not isinstance(columns, numbers.Integral) or columns < 1:
        raise ValueError(f"`columns` must be an int >= 1 or None; got {columns!r}.")
    rows = math.ceil(depth / columns)
    grid = np.full(
        (rows * (height + _GAP) - _GAP, columns * (width + _GAP) - _GAP, 3), 255, np.uint8
    )
    for index, image in enumerate(array.astype(np.uint8)):
        top, left = (index // columns) * (height + _GAP), (index % columns) * (width + _GAP)
        grid[top : top + height, left : left + width] = image
    return grid


def plot_signal_cam(
    signal: ArrayLike,
    heatmap: ArrayLike,
    *,
    colormap: str = "jet",
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Draws a signal over its 1-D map: the map as a coloured band behind the signal's lines.

    Args:
        signal: `(T,)` or `(T, C)` samples (one line per channel).
        heatmap: `(T,)` map in [0, 1] (as a signal model's explainer returns it), colorized
            like `colorize()`.
        colormap: OpenCV colormap name, see `colorize()`. Defaults to `"jet"`.
        ax: matplotlib axes to draw on (the figure is then theirs), or `None` for a new
            figure. Defaults to `None`.
        title: axes title, or `None`. Defaults to `None`.

    Returns:
        The matplotlib `Figure`.

    Raises:
        ValueError: a signal that is not `(T,)` / `(T, C)`, or a map of another length.

    Example:
    ```python
    maps = kc.GradCAM(ecg_model)(signals)     # (B, T)
    fig = plot_signal_cam(signals[0], maps[0], title="Grad-CAM")
    ```
    """
    import matplotlib.pyplot as plt

    values = np.asarray(signal, dtype=np.float64)
    values = values[:, np.newaxis] if values.ndim == 1 else values
    heat = np.asarray(heatmap)
    if values.ndim != 2 or heat.shape != (len(values),) or not len(values):
        raise ValueError(
            f"`signal` must be (T,) or (T, C) and `heatmap` (T,) of the same length; got "
            f"shapes {np.shape(signal)} and {heat.shape}."
        )
    band = colorize(heat[np.newaxis], colormap)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 2.5))
    else:
        fig = ax.figure
    low, high = float(values.min()), float(values.max())
    margin = 0.05 * (high - low) or 0.5
    ax.imshow(
        band, aspect="auto", extent=(-0.5, len(values) - 0.5, low - margin, high + margin),
        alpha=0.6, interpolation="nearest",
    )
    ax.plot(np.arange(len(values)), values, color="black", linewidth=1.0)
    if title is not None:
        ax.set_title(title)
    return fig


def plot_cams(
    images: ArrayLike,
    maps_by_method: Mapping[str, ArrayLike],
    titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    labels: ArrayLike | None = None,
    predictions: ArrayLike | None = None,
    alpha: float = 0.4,
    colormap: str = "jet",
    axes: np.ndarray | Sequence[Axes] | Sequence[Sequence[Axes]] | None = None,
    figsize: tuple[float, float] | None = None,
    probabilities: ArrayLike | None = None,
    explained: ArrayLike | None = None,
) -> Figure:
    """Draws a grid of images and their CAM overlays, one row per image.

    The first column shows the image, then one column per method with its overlay.
    Column titles (top row) are `"Image"` and the method names; each row is labelled on
    the left with its title, true label and prediction when given. The figure is built
    with `matplotlib.figure.Figure`, leaving pyplot's global state alone.

    Args:
        images: A batch `(B, H, W, C)` or one image `(H, W, C)` / `(H, W)`, in the
            formats `overlay()` accepts (`C` is 1 or 3).
        maps_by_method: Non-empty mapping from method name to maps `(B, h, w)`, or to
            one map `(h, w)` when there is a single image, with values as `overlay()`
            takes them (floats in [0, 1], `uint8` 0..255 or bool). Maps of any size with
            the images' orientation are resized to the images.
        titles: One string per image, shown left of its row. Defaults to `None`.
        class_names: Names indexed by class, used to print `labels` and `predictions`.
            Defaults to `None` (class indices are printed).
        labels: One true class index per image. Defaults to `None`.
        predictions: One predicted class index per image. Defaults to `None`.
        alpha: Heatmap weight of the overlays, in [0, 1]. Defaults to `0.4`.
        colormap: OpenCV colormap name, see `colorize()`. Defaults to `"jet"`.
        axes: Existing axes to draw on, `B * (1 + len(maps_by_method))` of them in row
            order (any array shape); the figure is then theirs. Defaults to `None`
            (a new figure).
        figsize: Size `(width, height)` of a new figure in inches. Defaults to `None`
            (cells 2 inches wide).
        probabilities: The model's class probabilities `(B, num_classes)` (e.g.
            `cam.predict(images)`); each named class (`predictions`, `explained`) is then
            followed by its probability, e.g. `pred: circle (0.97)`. Defaults to `None`.
        explained: The class each image's maps explain, one index per image, shown as
            `cam: <class> (<probability>)`: a map of a class of probability 0.00 is then
            labelled as such. Defaults to `None` (not shown).

    Returns:
        The matplotlib `Figure` holding the grid; save it with `save_figure()` or
        `fig.savefig(path)`.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: Shapes or lengths disagree, `maps_by_method` is empty or holds values
            outside [0, 1] (see `to_unit_heatmap()`), a class index has no name, or
            `alpha`/`colormap` are invalid.

    Example:
    ```python
    images, labels, boxes = kc.datasets.shapes(4)
    maps = kc.GradCAM(model)(images)
    fig = plot_cams(images, {"Grad-CAM": maps}, class_names=kc.datasets.SHAPE_NAMES,
                    labels=labels)
    save_figure(fig, "gradcam.png")
    ```
    """
    _check_alpha(alpha)
    _colormap_code(colormap)
    batch = np.asarray(images)
    if batch.ndim == 2:  # one grayscale image
        batch = batch[..., None]
    if batch.ndim == 3:  # one image
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[0] == 0:
        raise ValueError(
            "`images` must be a batch (B, H, W, C) with B >= 1 or one image (H, W, C) / (H, W), "
            f"got shape {np.shape(images)}."
        )
    rows = batch.shape[0]
    maps = _check_maps_by_method(maps_by_method, rows, batch.shape[1:3])
    row_texts = _row_texts(
        rows, titles, class_names, labels, predictions, explained, probabilities
    )
    cols = 1 + len(maps)

    if axes is None:
        from matplotlib.figure import Figure

        height, width = batch.shape[1:3]
        figsize = figsize or (2.0 * cols, 2.0 * rows * height / width + 0.4)
        fig = Figure(figsize=figsize, layout="constrained")
        grid = fig.subplots(rows, cols, squeeze=False)
    else:
        grid = np.asarray(axes, dtype=object)
        if grid.size != rows * cols:
            raise ValueError(
                f"`axes` must hold rows * columns = {rows} * {cols} = {rows * cols} axes "
                f"({rows} images, the image column and {len(maps)} methods), got {grid.size}."
            )
        grid = grid.reshape(rows, cols)
        fig = grid[0, 0].figure

    for i in range(rows):
        rgb = to_uint8_rgb(batch[i])
        cells = [rgb] + [overlay(rgb, m[i], alpha, colormap) for m in maps.values()]
        for ax, cell, column_title in zip(grid[i], cells, ["Image", *maps]):
            ax.imshow(cell)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if i == 0:
                ax.set_title(column_title)
        if row_texts[i]:
            grid[i, 0].set_ylabel(row_texts[i])
    return fig


def save_figure(fig: Figure, path: PathLike, dpi: float = 100) -> pathlib.Path:
    """Saves a matplotlib figure atomically, creating parent directories.

    The figure is written to a temporary file in the target directory, then renamed over
    `path`, so readers never see a partial file. The format follows the extension.

    Args:
        fig: The figure to save, e.g. from `plot_cams()`.
        path: Destination file; its extension (`.png`, `.pdf`, `.svg`, ...) picks the format.
        dpi: Resolution in dots per inch, > 0. Defaults to `100`.

    Returns:
        The destination as a `pathlib.Path`.

    Raises:
        ValueError: `path` has no extension or one matplotlib cannot write, or `dpi` is not
            positive.

    Example:
    ```python
    save_figure(kc.plot_cams(images, {"Grad-CAM": maps}), "out/grid.png")
    ```
    """
    path = pathlib.Path(path)
    file_format = path.suffix[1:].lower()
    supported = fig.canvas.get_supported_filetypes()
    if file_format not in supported:
        raise ValueError(
            "`path` must end in a file extension matplotlib can write "
            f"({', '.join(sorted(supported))}), got {str(path)!r}."
        )
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not dpi > 0:
        raise ValueError(f"`dpi` must be a positive number, got {dpi!r}.")
    with atomic_writer(path) as file:
        fig.savefig(file, format=file_format, dpi=dpi)
    return path


def resize_heatmap(heatmap: ArrayLike, size: tuple[int, int]) -> np.ndarray:
    """Maps a heatmap made at a model's input size back onto an image of another size.

    The inverse of the stretch with which the command line (and `io.read_image`) fits an image
    to the model: the map is resized, bilinearly and independently along each axis, to
    `size`, so the map pixel over a model-input pixel lands on the image pixels that pixel was
    made of, whatever the aspect ratios. (A centre crop would need the crop offset; keras_cam
    does not crop.)

    Args:
        heatmap: 2-D float32 `(h, w)` map, e.g. a row of an explainer's output.
        size: the image's `(height, width)`.

    Returns:
        float32 `(height, width)`; `heatmap` itself (as float32) when it has that size.

    Raises:
        ValueError: `heatmap` is not 2-D or `size` is not two positive ints.

    Example:
    ```python
    full = resize_heatmap(maps[0], original_size)   # (300, 400) from a (224, 224) map
    ```
    """
    import cv2

    heat = np.asarray(heatmap, np.float32)
    if heat.ndim != 2:
        raise ValueError(f"`heatmap` must be 2-D (H, W); received shape {heat.shape}.")
    if len(size) != 2 or not all(isinstance(n, numbers.Integral) and n > 0 for n in size):
        raise ValueError(f"`size` must be (height, width), two positive ints; received {size!r}.")
    height, width = int(size[0]), int(size[1])
    if heat.shape == (height, width):
        return heat
    return cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)  # dsize is (W, H)


def draw_caption(image: ArrayLike, text: str) -> np.ndarray:
    """Writes a caption in white on a darkened band along the top of an image (same size).

    The font grows with the image width (OpenCV's Hershey simplex, scale `width / 800`, at
    least 0.4); text too long for the width is cut and ends in `..`.

    Args:
        image: RGB or grayscale image as accepted by `to_uint8_rgb()`.
        text: the caption, e.g. `"tabby 0.91 - Grad-CAM++"` (ASCII; OpenCV's fonts have no
            other characters).

    Returns:
        A new `uint8` RGB `(H, W, 3)` image; `image` is not modified.

    Example:
    ```python
    captioned = draw_caption(overlay(image, heatmap), "tabby 0.912 - Grad-CAM")
    ```
    """
    import cv2

    rgb = to_uint8_rgb(image).copy()
    height, width = rgb.shape[:2]
    scale = max(_FONT_SCALE, width / 800)
    thickness = max(1, round(scale * 1.5))
    text = _fit_text(text, width - 8, scale, thickness)
    if text:
        (_, text_height), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
        band = min(height, text_height + baseline + 8)
        rgb[:band] = rgb[:band] // 3
        cv2.putText(rgb, text, (4, 4 + text_height), _FONT, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    return rgb


def save_overlay(
    path: PathLike,
    image: ArrayLike,
    heatmap: ArrayLike,
    alpha: float = 0.4,
    colormap: str = "jet",
    caption: str | None = None,
) -> pathlib.Path:
    """Writes `overlay(image, heatmap, alpha, colormap)` to a PNG file atomically.

    The PNG is written to a temporary file in the target directory, then renamed over
    `path`; parent directories are created. With a `caption`, it is drawn on the overlay
    (`draw_caption()`).

    Args:
        path: Destination file; must end in `.png`.
        image: Image as accepted by `overlay()`.
        heatmap: 2-D heatmap of any size, as `overlay()` takes it: floats in [0, 1],
            `uint8` levels 0..255, or bool.
        alpha: Heatmap weight in [0, 1]. Defaults to `0.4`.
        colormap: OpenCV colormap name, see `colorize()`. Defaults to `"jet"`.
        caption: text drawn along the top of the overlay, or `None` for none. Defaults to
            `None`.

    Returns:
        The destination as a `pathlib.Path`.

    Raises:
        ValueError: `path` does not end in `.png`, or `overlay()` rejects its arguments.

    Example:
    ```python
    maps = kc.GradCAM(model)(images)
    save_overlay("out/cam.png", images[0], maps[0])
    ```
    """
    path = pathlib.Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"`path` must end in '.png', got {str(path)!r}.")
    picture = overlay(image, heatmap, alpha=alpha, colormap=colormap)
    return write_png(path, picture if caption is None else draw_caption(picture, caption))


def display_images(images: np.ndarray) -> np.ndarray:
    """uint8 RGB copies of channels-last images as shown, enlarged to be readable in a grid.

    Images in [0, 1] or [0, 255] are shown as they are; others (e.g. mean-subtracted) are
    min-max rescaled per image. Images smaller than 128 pixels are enlarged by an integer
    factor (nearest neighbour).

    Args:
        images: float `(B, H, W, C)` with 1 or 3 channels.

    Returns:
        uint8 `(B, s * H, s * W, 3)`, `s` the enlargement factor (1 for large images).

    Example:
    ```python
    cells = display_images(images)        # then grid_column("Epoch 1", list(cells), captions)
    ```
    """
    if images.min() < 0.0 or images.max() > 255.0:
        low = images.min(axis=(1, 2, 3), keepdims=True)
        high = images.max(axis=(1, 2, 3), keepdims=True)
        images = (images - low) / np.maximum(high - low, np.finfo(np.float32).eps)
    rgb = np.stack([to_uint8_rgb(image) for image in images])
    scale = max(1, math.ceil(_MIN_CELL_SIZE / max(rgb.shape[1:3])))
    return np.repeat(np.repeat(rgb, scale, axis=1), scale, axis=2)


def grid_column(title: str, cells: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
    """One column of a grid: a title band, then each cell above its caption band.

    Args:
        title: the text of the top band.
        cells: uint8 RGB images `(h, w, 3)` of one width.
        captions: one text per cell (empty for a blank band); text that does not fit is cut.

    Returns:
        uint8 RGB `(18 * (1 + len(cells)) + sum of cell heights, w, 3)`.

    Example:
    ```python
    column = grid_column("Grad-CAM", [overlay(i, m) for i, m in zip(shown, maps)], captions)
    ```
    """
    width = cells[0].shape[1]
    parts = [_text_band(title, width)]
    for cell, caption in zip(cells, captions):
        parts += [cell, _text_band(caption, width)]
    return np.concatenate(parts, axis=0)


def join_columns(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Grid columns side by side, separated by white 2-pixel gaps: uint8 RGB `(H, W, 3)`."""
    gap = np.full((columns[0].shape[0], _GAP, 3), 255, np.uint8)
    parts = [part for column in columns for part in (gap, column)][1:]
    return np.concatenate(parts, axis=1)


def _text_band(text: str, width: int) -> np.ndarray:
    """A white `(_BAND_HEIGHT, width, 3)` strip with `text` centred in black (cut to fit)."""
    import cv2

    band = np.full((_BAND_HEIGHT, width, 3), 255, np.uint8)
    text = _fit_text(text, width - 4, _FONT_SCALE, 1)
    if text:
        (text_width, text_height), _ = cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)
        origin = ((width - text_width) // 2, (_BAND_HEIGHT + text_height) // 2)
        cv2.putText(band, text, origin, _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return band


def _fit_text(text: str, width: int, scale: float, thickness: int) -> str:
    """`text`, cut and ending in `..` until OpenCV draws it at most `width` pixels wide."""
    import cv2

    while text and cv2.getTextSize(text, _FONT, scale, thickness)[0][0] > width:
        text = text[:-3] + ".." if len(text) > 3 else ""  # Drop one character per step.
    return text


def to_uint8_rgb(image: ArrayLike, name: str = "image") -> np.ndarray:
    """Converts one image to contiguous `uint8` RGB `(H, W, 3)`.

    Accepts `(H, W)`, `(H, W, 1)` or `(H, W, 3)`; `uint8`, other integers in [0, 255],
    or floats read as [0, 1] when their maximum is at most 1.0 and as [0, 255] otherwise.
    Values beyond the range by more than half a level raise rather than being clipped
    (a preprocessed image, e.g. mean-subtracted, is not displayable as is).

    Args:
        image: The image.
        name: Argument name used in error messages. Defaults to `"image"`.

    Returns:
        `uint8` array `(H, W, 3)`.

    Raises:
        TypeError: The dtype is not numeric.
        ValueError: Wrong shape, NaN/infinity, or values out of range.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3) or 0 in array.shape:
        raise ValueError(
            f"`{name}` must have shape (H, W), (H, W, 1) or (H, W, 3), got shape {np.shape(image)}."
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"`{name}` must be a uint8 or float array, got dtype {array.dtype}.")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        if np.issubdtype(array.dtype, np.floating) and values.max() <= 1.0:
            values *= 255.0
        if values.min() < -0.5 or values.max() > 255.5:
            raise ValueError(
                f"`{name}` values must lie in [0, 1] or [0, 255], got the range "
                f"[{array.min()}, {array.max()}]. Pass the image before model preprocessing."
            )
        array = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def _check_heatmap(heatmap: ArrayLike, name: str = "heatmap") -> np.ndarray:
    """Validates a non-empty 2-D heatmap and reads it with `to_unit_heatmap()`."""
    values = to_unit_heatmap(heatmap, name)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(
            f"`{name}` must be a non-empty 2-D array (H, W), got shape {values.shape}."
        )
    return values


def _check_alpha(alpha: float) -> None:
    """Raises unless `alpha` is a real number in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(
            f"`alpha` must be a number in [0, 1], got {alpha!r} of type {type(alpha).__name__}."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha}.")


def _colormap_code(colormap: str) -> int:
    """The `cv2.COLORMAP_*` constant for a case-insensitive colormap name."""
    import cv2

    if not isinstance(colormap, str):
        raise TypeError(
            f"`colormap` must be a colormap name (str), got {colormap!r} "
            f"of type {type(colormap).__name__}."
        )
    code = getattr(cv2, _COLORMAP_PREFIX + colormap.upper(), None)
    if code is None:
        raise ValueError(
            f"Unknown `colormap` {colormap!r}. Expected one of: {', '.join(colormap_names())}."
        )
    return int(code)


def _check_maps_by_method(
    maps_by_method: Mapping[str, ArrayLike], batch_size: int, image_size: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Validates `plot_cams` maps: a non-empty mapping name -> `(B, h, w)` (`(h, w)` if B = 1).

    The maps are read by `to_unit_heatmap()` and must have the images' orientation.
    """
    if not isinstance(maps_by_method, Mapping):
        raise TypeError(
            "`maps_by_method` must be a mapping such as {'Grad-CAM': maps}, "
            f"got {type(maps_by_method).__name__}."
        )
    if not maps_by_method:
        raise ValueError(
            "`maps_by_method` is empty; expected at least one method name -> maps entry."
        )
    checked = {}
    for method, maps in maps_by_method.items():
        array = to_unit_heatmap(maps, f"maps_by_method[{method!r}]")
        if array.ndim == 2 and batch_size == 1:
            array = array[None]
        if array.ndim != 3 or array.shape[0] != batch_size:
            raise ValueError(
                f"`maps_by_method[{method!r}]` must have shape ({batch_size}, h, w) to match the "
                f"{batch_size} image(s), got shape {array.shape}."
            )
        _check_orientation(array.shape[1:], image_size, f"maps_by_method[{method!r}]")
        checked[str(method)] = array
    return checked


def _check_orientation(
    map_size: tuple[int, ...], image_size: tuple[int, ...], name: str
) -> None:
    """Raises if a map is taller than wide on an image wider than tall, or the reverse.

    A CNN's feature grid keeps its input's orientation (the same stride along both axes), so
    a map of the other orientation has its axes swapped, and resizing it to the image would
    draw a plausible but wrong overlay. Square maps or images fit either way.
    """
    (map_height, map_width), (height, width) = map_size, image_size
    if (map_height - map_width) * (height - width) < 0:
        raise ValueError(
            f"`{name}` has shape (h, w) = {(map_height, map_width)}, but the image is "
            f"(H, W) = {(height, width)}: one is taller than wide, the other wider than tall, "
            "so the map's axes look swapped. Pass maps as (H, W), as the CAM methods return "
            "them (transpose a (W, H) map); a map whose grid really has the other orientation "
            f"must be resized to {(height, width)} first."
        )


def _row_texts(
    rows: int,
    titles: Sequence[str] | None,
    class_names: Sequence[str] | None,
    labels: ArrayLike | None,
    predictions: ArrayLike | None,
    explained: ArrayLike | None = None,
    probabilities: ArrayLike | None = None,
) -> list[str]:
    """The text left of each `plot_cams` row: title, true label, prediction and explained
    class (with their probabilities when given), one per line."""
    texts: list[list[str]] = [[] for _ in range(rows)]
    if titles is not None:
        if isinstance(titles, str) or len(titles) != rows:
            raise ValueError(
                f"`titles` must be a sequence of {rows} strings (one per image), got {titles!r}."
            )
        for text, title in zip(texts, titles):
            text.append(str(title))
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[0] != rows:
            raise ValueError(
                f"`probabilities` must be ({rows}, num_classes): one row of class "
                f"probabilities per image, got shape {probabilities.shape}."
            )
    for argument, prefix, values in (
        ("labels", "true", labels),
        ("predictions", "pred", predictions),
        ("explained", "cam", explained),
    ):
        if values is None:
            continue
        indices = np.asarray(values)
        if indices.shape != (rows,) or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(
                f"`{argument}` must be {rows} integer class indices (one per image), "
                f"got {indices.dtype} array of shape {indices.shape}."
            )
        for row, (text, index) in enumerate(zip(texts, indices.tolist())):
            if class_names is None:
                line = f"{prefix}: {index}"
            elif 0 <= index < len(class_names):
                line = f"{prefix}: {class_names[index]}"
            else:
                raise ValueError(
                    f"`{argument}` holds class {index}, which has no entry in `class_names` "
                    f"({len(class_names)} names)."
                )
            if probabilities is not None and argument != "labels":
                if not 0 <= index < probabilities.shape[1]:
                    raise ValueError(
                        f"`{argument}` holds class {index}, but `probabilities` has "
                        f"{probabilities.shape[1]} classes."
                    )
                line += f" ({probabilities[row, index]:.2f})"
            text.append(line)
    return ["\n".join(text) for text in texts]
