"""Built-in synthetic localization data: coloured shapes on cluttered backgrounds.

Nothing is downloaded. `shapes()` draws one object per image whose class is defined by
its shape alone (its colour, size and position are random), together with the object's
ground-truth box, so CAM methods and localization metrics can be checked against a known
answer.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""Class names of `shapes()`, indexed by label: label `k` is `SHAPE_NAMES[k]`."""

MIN_IMAGE_SIZE = 32
MAX_DISTRACTORS = 4

# Object sizes as fractions of the image side: (low, high), both inclusive.
_MAIN_SIZE = (0.25, 0.4)
_DISTRACTOR_SIZE = (0.12, 0.18)
_MIN_OBJECT_PIXELS = 5
# Free pixels kept between any two objects, so their masks never touch.
_GAP = 2
_PLACEMENT_TRIES = 100


def shapes(
    n: int,
    image_size: int = 64,
    *,
    seed: int = 0,
    num_classes: int = len(SHAPE_NAMES),
    distractors: int = 0,
    multi_instance: bool = False,
    return_all_boxes: bool = False,
    return_masks: bool = False,
) -> tuple[np.ndarray, ...]:
    """Generates coloured shapes on cluttered backgrounds, with ground-truth boxes.

    Each image holds one object of its class (`SHAPE_NAMES[label]`: circle, square,
    triangle or cross) with a random size (25-40% of the image side), position and
    saturated colour, on a dim, low-saturation background of smooth noise and faint
    stripes. The class is defined by the shape only, so a classifier has to find and
    recognise the object. Labels are balanced: the classes are dealt round-robin, then
    shuffled. The same arguments always give the same arrays.

    Args:
        n: Number of images, at least 1.
        image_size: Side length `S` of the square images in pixels, at least 32.
            Defaults to `64`.
        seed: Non-negative seed of the NumPy random generator. Defaults to `0`.
        num_classes: Number of classes, from 2 to `len(SHAPE_NAMES)`; the classes are
            `SHAPE_NAMES[:num_classes]`. Defaults to `4`.
        distractors: Number of small objects (12-18% of the image side) of other
            classes added to each image, from 0 to 4. They never overlap or touch the
            labelled objects and are not part of `boxes` or `masks`. Defaults to `0`.
        multi_instance: Whether to draw a second instance of the labelled class,
            disjoint from the first. `boxes` keeps the first instance's box; pass
            `return_all_boxes=True` for both. Defaults to `False`.
        return_all_boxes: Whether to also return the boxes of every labelled instance.
            Defaults to `False`.
        return_masks: Whether to also return the pixel masks of the labelled instances.
            Defaults to `False`.

    Returns:
        A tuple `(images, labels, boxes)`, followed by `all_boxes` when
        `return_all_boxes` and then `masks` when `return_masks`:
        - `images`: float32 `(n, S, S, 3)` RGB in [0, 1].
        - `labels`: int32 `(n,)` class indices into `SHAPE_NAMES`.
        - `boxes`: int32 `(n, 4)` tight boxes `(x0, y0, x1, y1)` of the (first) labelled
          object, `x1`/`y1` exclusive, so `image[y0:y1, x0:x1]` is its content.
        - `all_boxes`: int32 `(n, k, 4)` boxes of the labelled instances, `k` = 2 with
          `multi_instance` and 1 otherwise; `all_boxes[:, 0]` equals `boxes`.
        - `masks`: bool `(n, S, S)`, True on the pixels of the labelled instances.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range.

    Example:
    ```python
    images, labels, boxes = shapes(512, image_size=64, seed=0)
    images.shape, labels.shape, boxes.shape  # (512, 64, 64, 3), (512,), (512, 4)
    x0, y0, x1, y1 = boxes[0]
    images[0, y0:y1, x0:x1]  # the object of class SHAPE_NAMES[labels[0]]
    ```
    """
    _check_int("n", n, minimum=1)
    _check_int("image_size", image_size, minimum=MIN_IMAGE_SIZE)
    _check_int("seed", seed, minimum=0)
    _check_int("num_classes", num_classes, minimum=2, maximum=len(SHAPE_NAMES))
    _check_int("distractors", distractors, minimum=0, maximum=MAX_DISTRACTORS)
    for name, flag in (
        ("multi_instance", multi_instance),
        ("return_all_boxes", return_all_boxes),
        ("return_masks", return_masks),
    ):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"`{name}` must be a bool, got {flag!r} of type {type(flag).__name__}.")

    rng = np.random.default_rng(seed)
    size = int(image_size)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
    images = _backgrounds(rng, n, size)

    instances = 2 if multi_instance else 1
    main_sizes = _size_range(size, _MAIN_SIZE)
    distractor_sizes = _size_range(size, _DISTRACTOR_SIZE)
    all_boxes = np.zeros((n, instances, 4), dtype=np.int32)
    masks = np.zeros((n, size, size), dtype=bool) if return_masks else None
    objects = instances + distractors
    colours = _random_colours(rng, n * objects).reshape(n, objects, 3)

    for i in range(n):
        label = int(labels[i])
        others = [c for c in range(num_classes) if c != label]
        picks = rng.integers(len(others), size=distractors)
        kinds = [label] * instances + [others[k] for k in picks]
        sizes = [int(v) for v in rng.integers(*main_sizes, size=instances, endpoint=True)]
        sizes += [int(v) for v in rng.integers(*distractor_sizes, size=distractors, endpoint=True)]
        for j, (kind, (x, y, side)) in enumerate(zip(kinds, _place(rng, size, sizes))):
            patch = _shape_mask(kind, side)
            images[i, y : y + side, x : x + side][patch] = colours[i, j]
            if j < instances:
                all_boxes[i, j] = _tight_box(patch, x, y)
                if masks is not None:
                    masks[i, y : y + side, x : x + side] |= patch

    outputs: tuple[np.ndarray, ...] = (images, labels, all_boxes[:, 0].copy())
    if return_all_boxes:
        outputs += (all_boxes,)
    if masks is not None:
        outputs += (masks,)
    return outputs


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Raises unless `value` is an integer (not a bool) in `[minimum, maximum]`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer, got {value!r} of type {type(value).__name__}."
        )
    if value < minimum or (maximum is not None and value > maximum):
        expected = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"`{name}` must be an integer {expected}, got {value}.")


def _size_range(image_size: int, fractions: tuple[float, float]) -> tuple[int, int]:
    """Object side lengths in pixels (inclusive range) for the given fractions of the image."""
    low, high = (max(_MIN_OBJECT_PIXELS, round(f * image_size)) for f in fractions)
    return low, max(low, high)


def _backgrounds(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Dim, low-saturation backgrounds: tinted grey + smooth noise + faint stripes."""
    # Smooth noise: a coarse random grid, bilinearly upsampled for the whole batch with
    # one matrix product (the outer product of the 1-D interpolation matrices).
    cells = 6
    upsample = _linear_interpolation_matrix(cells, size)
    upsample_2d = np.einsum("ij,kl->ikjl", upsample, upsample).reshape(size * size, cells * cells)
    grid = rng.uniform(-1.0, 1.0, size=(n, cells * cells)) * rng.uniform(0.04, 0.1, size=(n, 1))
    field = (grid.astype(np.float32) @ upsample_2d.T.astype(np.float32)).reshape(n, size, size)

    # Faint stripes with a random orientation, frequency and phase.
    angle, cycles, phase, amplitude = (
        rng.uniform(low, high, size=(n, 1, 1)).astype(np.float32)
        for low, high in ((0.0, np.pi), (2.0, 6.0), (0.0, 2.0 * np.pi), (0.0, 0.05))
    )
    coords = np.arange(size, dtype=np.float32) / size
    stripes = np.cos(angle) * coords[None, None, :] + np.sin(angle) * coords[None, :, None]
    stripes *= 2.0 * np.pi * cycles
    stripes += phase
    np.sin(stripes, out=stripes)
    stripes *= amplitude
    field += stripes

    grey = rng.uniform(0.25, 0.45, size=(n, 1))
    tint = rng.uniform(-0.04, 0.04, size=(n, 3))
    images = field[..., None] + (grey + tint).astype(np.float32)[:, None, None, :]
    return np.clip(images, 0.0, 1.0, out=images)


def _linear_interpolation_matrix(cells: int, size: int) -> np.ndarray:
    """`(size, cells)` weights that linearly interpolate `cells` samples onto `size` pixels."""
    positions = np.linspace(0.0, cells - 1, size)
    left = np.minimum(np.floor(positions).astype(int), cells - 2)
    frac = positions - left
    weights = np.zeros((size, cells))
    weights[np.arange(size), left] = 1.0 - frac
    weights[np.arange(size), left + 1] = frac
    return weights


def _random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """Bright, saturated RGB colours with a uniformly random hue, float32 `(count, 3)`."""
    hue = rng.uniform(0.0, 1.0, size=(count, 1))
    saturation = rng.uniform(0.7, 1.0, size=(count, 1))
    value = rng.uniform(0.85, 1.0, size=(count, 1))
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * hue) % 6.0
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (value - value * saturation * ramp).astype(np.float32)


def _place(rng: np.random.Generator, size: int, sides: list[int]) -> list[tuple[int, int, int]]:
    """Random `(x, y, side)` squares inside the image, at least `_GAP` pixels apart.

    Each square's top-left corner is drawn uniformly among the corners still free given
    the squares before it; when earlier squares leave no room, the layout starts over.
    """
    for _ in range(_PLACEMENT_TRIES):
        placed: list[tuple[int, int, int]] = []
        for side in sides:
            free = np.ones((size - side + 1, size - side + 1), dtype=bool)  # [y, x] corners
            for px, py, pside in placed:
                rows = slice(max(0, py - side - _GAP + 1), py + pside + _GAP)
                cols = slice(max(0, px - side - _GAP + 1), px + pside + _GAP)
                free[rows, cols] = False
            corners = np.flatnonzero(free)
            if corners.size == 0:
                break
            y, x = divmod(int(corners[rng.integers(corners.size)]), size - side + 1)
            placed.append((x, y, side))
        else:
            return placed
    raise ValueError(
        f"Could not place {len(sides)} non-overlapping objects in a {size}x{size} image. "
        "Use a larger `image_size`, fewer `distractors` or `multi_instance=False`."
    )


@functools.lru_cache(maxsize=None)
def _shape_mask(kind: int, side: int) -> np.ndarray:
    """Read-only bool `(side, side)` mask of shape `SHAPE_NAMES[kind]` filling its square."""
    v, u = np.mgrid[0:side, 0:side] + 0.5  # pixel centres: row, column
    half = side / 2.0
    name = SHAPE_NAMES[kind]
    if name == "circle":
        mask = (u - half) ** 2 + (v - half) ** 2 <= half**2
    elif name == "square":
        mask = np.ones((side, side), dtype=bool)
    elif name == "triangle":  # apex up, base on the bottom row
        mask = np.abs(u - half) <= v / 2.0
    else:  # cross: two bars a third of the side thick
        thickness = max(2, round(side / 3))
        start = (side - thickness) // 2
        bar = (np.arange(side) >= start) & (np.arange(side) < start + thickness)
        mask = bar[:, None] | bar[None, :]
    mask.setflags(write=False)
    return mask


def _tight_box(patch: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    """Tight `(x0, y0, x1, y1)` box (exclusive ends) of `patch` placed at `(x, y)`."""
    rows = np.flatnonzero(patch.any(axis=1))
    cols = np.flatnonzero(patch.any(axis=0))
    return x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1
