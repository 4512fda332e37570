"""Tests for keras_cam.datasets: synthetic shapes with ground-truth boxes.

The object pixels are recovered from the images alone (objects are saturated colours, the
background is near-grey) and their shape is recognised by a small rule-based classifier,
so boxes, masks, labels and distractors are checked against what was actually drawn.
"""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from source_checks import top_level_imports

from keras_cam import datasets
from keras_cam.datasets import SHAPE_NAMES, shapes

# Objects have saturation (max - min channel) >= 0.85 * 0.7; the background at most 0.08.
SATURATION_THRESHOLD = 0.3


def saturated(images):
    """Pixels that belong to some drawn object, found from the images alone."""
    return (images.max(axis=-1) - images.min(axis=-1)) > SATURATION_THRESHOLD


def bounding_box(mask):
    """Tight (x0, y0, x1, y1) box of a non-empty 2-D mask, ends exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)


def classify(patch):
    """Names the shape in a tight boolean crop, independently of how it was drawn."""
    corners = [patch[0, 0], patch[0, -1], patch[-1, 0], patch[-1, -1]]
    if patch.all():
        return "square"
    if patch[-1, 0] and patch[-1, -1] and not patch[0, 0] and not patch[0, -1]:
        return "triangle"
    if not any(corners):
        return "circle" if patch.mean() > 0.7 else "cross"
    return "unknown"


def test_classifier_recognises_every_drawn_shape_at_every_size():
    # The classes differ in shape alone, at every size shapes() can draw (64 px images
    # and larger), which is also what the other tests rely on.
    for kind, name in enumerate(SHAPE_NAMES):
        for side in range(5, 120):
            patch = datasets._shape_mask(kind, side)
            x0, y0, x1, y1 = bounding_box(patch)
            assert classify(patch[y0:y1, x0:x1]) == name, (name, side)


def test_default_call_shapes_dtypes_and_ranges():
    images, labels, boxes = shapes(40)
    assert images.shape == (40, 64, 64, 3) and images.dtype == np.float32
    assert labels.shape == (40,) and labels.dtype == np.int32
    assert boxes.shape == (40, 4) and boxes.dtype == np.int32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(labels.tolist()) == set(range(len(SHAPE_NAMES)))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32),
    image_size=st.integers(32, 96),
    num_classes=st.integers(2, len(SHAPE_NAMES)),
    distractors=st.integers(0, datasets.MAX_DISTRACTORS),
    multi_instance=st.booleans(),
)
def test_boxes_masks_and_labels_match_the_drawn_pixels(
    seed, image_size, num_classes, distractors, multi_instance
):
    n = 6
    images, labels, boxes, all_boxes, masks = shapes(
        n,
        image_size,
        seed=seed,
        num_classes=num_classes,
        distractors=distractors,
        multi_instance=multi_instance,
        return_all_boxes=True,
        return_masks=True,
    )
    instances = 2 if multi_instance else 1
    assert all_boxes.shape == (n, instances, 4) and masks.shape == (n, image_size, image_size)
    np.testing.assert_array_equal(boxes, all_boxes[:, 0])
    objects = saturated(images)
    for i in range(n):
        label = SHAPE_NAMES[labels[i]]
        union = np.zeros((image_size, image_size), dtype=bool)
        for x0, y0, x1, y1 in all_boxes[i]:
            assert 0 <= x0 < x1 <= image_size and 0 <= y0 < y1 <= image_size
            crop = objects[i, y0:y1, x0:x1]
            # The box is tight around the object drawn there, and that object is the label's shape.
            assert bounding_box(crop) == (0, 0, x1 - x0, y1 - y0)
            assert classify(crop) == label
            np.testing.assert_array_equal(crop, masks[i, y0:y1, x0:x1])
            assert not union[y0:y1, x0:x1].any(), "labelled instances overlap"
            union[y0:y1, x0:x1] = True
        # The mask holds the labelled instances and nothing outside their boxes.
        assert not (masks[i] & ~union).any()
        # Everything else that is coloured is a distractor of another class, not touching them.
        others = objects[i] & ~masks[i]
        grown = cv2.dilate(masks[i].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert not (others & grown).any(), "a distractor touches a labelled object"
        count, components = cv2.connectedComponents(others.astype(np.uint8), connectivity=8)
        assert count - 1 == distractors
        for component in range(1, count):
            part = components == component
            x0, y0, x1, y1 = bounding_box(part)
            assert classify(part[y0:y1, x0:x1]) in SHAPE_NAMES[:num_classes]
            assert classify(part[y0:y1, x0:x1]) != label
            main_width, main_height = boxes[i, 2:] - boxes[i, :2]
            assert (x1 - x0) < main_width or (y1 - y0) < main_height


def test_object_has_one_bright_colour_that_stands_out_from_the_background():
    images, _, _, masks = shapes(32, seed=3, return_masks=True)
    for image, mask in zip(images, masks):
        colours = np.unique(image[mask], axis=0)
        assert len(colours) == 1
        background = image[~mask]
        # Flat, saturated object colour against a dim, near-grey background.
        assert colours[0].max() >= 0.85
        assert np.abs(colours[0] - background.mean(axis=0)).max() > 0.3
        assert (background.max(axis=-1) - background.min(axis=-1)).max() < 0.1
        assert background.std() > 0.01  # textured, not flat


@pytest.mark.parametrize(("n", "num_classes"), [(1, 4), (7, 4), (103, 4), (50, 3), (11, 2)])
def test_labels_are_balanced(n, num_classes):
    _, labels, _ = shapes(n, 32, num_classes=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    assert counts.sum() == n and len(counts) == num_classes
    assert counts.max() - counts.min() <= 1


def test_labels_are_shuffled():
    _, labels, _ = shapes(64, 32)
    assert not np.array_equal(labels, np.arange(64) % len(SHAPE_NAMES))


def test_same_seed_gives_identical_arrays_and_different_seeds_differ():
    kwargs = {
        "distractors": 2,
        "multi_instance": True,
        "return_all_boxes": True,
        "return_masks": True,
    }
    first = shapes(12, 48, seed=5, **kwargs)
    again = shapes(12, 48, seed=5, **kwargs)
    other = shapes(12, 48, seed=6, **kwargs)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_smallest_image_fits_the_most_objects():
    images, _, _, all_boxes = shapes(
        300,
        datasets.MIN_IMAGE_SIZE,
        distractors=datasets.MAX_DISTRACTORS,
        multi_instance=True,
        return_all_boxes=True,
    )
    assert images.shape == (300, 32, 32, 3)
    (first, second) = all_boxes[:, 0], all_boxes[:, 1]
    apart = (
        (first[:, 2] <= second[:, 0])
        | (second[:, 2] <= first[:, 0])
        | (first[:, 3] <= second[:, 1])
        | (second[:, 3] <= first[:, 1])
    )
    assert apart.all()


def test_optional_outputs_come_in_documented_order():
    plain = shapes(3, 32)
    with_boxes = shapes(3, 32, return_all_boxes=True)
    with_masks = shapes(3, 32, return_masks=True)
    assert len(plain) == 3
    assert with_boxes[3].shape == (3, 1, 4)
    assert with_masks[3].shape == (3, 32, 32) and with_masks[3].dtype == bool
    for a, b, c in zip(plain, with_boxes, with_masks):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, r"`n` must be an integer >= 1, got 0"),
        ({"n": 2.5}, TypeError, r"`n` must be an integer, got 2.5 of type float"),
        ({"n": True}, TypeError, r"`n` must be an integer"),
        ({"n": 4, "image_size": 16}, ValueError, r"`image_size` must be an integer >= 32, got 16"),
        ({"n": 4, "seed": -1}, ValueError, r"`seed` must be an integer >= 0, got -1"),
        ({"n": 4, "num_classes": 1}, ValueError, r"`num_classes` must be an integer in \[2, 4\]"),
        ({"n": 4, "num_classes": 5}, ValueError, r"`num_classes` .* in \[2, 4\], got 5"),
        ({"n": 4, "distractors": 5}, ValueError, r"`distractors` .* in \[0, 4\], got 5"),
        ({"n": 4, "multi_instance": 1}, TypeError, r"`multi_instance` must be a bool, got 1"),
        ({"n": 4, "return_masks": "yes"}, TypeError, r"`return_masks` must be a bool"),
        ({"n": 4, "noise": 0.1}, TypeError, r"unexpected keyword argument 'noise'"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        shapes(**kwargs)


def test_numpy_integers_are_accepted():
    images, _, _ = shapes(np.int64(2), np.int32(40), seed=np.uint8(1))
    assert images.shape == (2, 40, 40, 3)


def test_module_does_not_import_heavy_libraries_at_import_time():
    top_level = top_level_imports(datasets)
    assert top_level <= {"__future__", "functools", "numbers", "numpy"}
