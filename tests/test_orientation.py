"""Every method on a non-square input (24x40): maps equal slow references, and peak where the
bright blob is, so a swapped height/width anywhere (upsampling, masks, boxes) fails a test."""

from __future__ import annotations

import numpy as np
import pytest
from references import (
    BLOB_BOX,
    HEIGHT,
    WIDTH,
    blob_mask,
    corner_images,
    corner_model,
    reference_maps,
)

import keras_cam as kc


@pytest.fixture(scope="module")
def random_model():
    return corner_model(positive=False, seed=1)


@pytest.fixture(scope="module")
def positive_model():
    return corner_model(positive=True)


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_every_method_matches_its_reference_on_a_non_square_input(name, random_model):
    images = corner_images(3, seed=2)
    classes = np.array([0, 2, 1])
    cam = kc.get_method(name)(random_model, **({"verbose": 0} if "score" in name else {}))
    maps = cam(images, targets=classes)
    assert maps.shape == (3, HEIGHT, WIDTH)
    expected = reference_maps(name, random_model, images, classes)
    np.testing.assert_allclose(maps, expected, atol=2e-4)


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_every_method_points_at_the_blob_in_the_top_right_corner(name, positive_model):
    images = corner_images(2)
    cam = kc.get_method(name)(positive_model)
    maps = cam(images, targets=0)
    assert maps.shape == (2, HEIGHT, WIDTH)
    mask = blob_mask()
    for heatmap in maps:
        row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
        assert mask[row, col], f"{name} peaks at {(row, col)}, not on the blob"
        # The far (bottom-left) corner is cold: a transposed or flipped map is not.
        assert heatmap[HEIGHT // 2 :, : WIDTH // 2].max() < 0.5
    low = cam(images, targets=0, upsample=False)
    assert low.shape == (2, HEIGHT // 2, WIDTH // 2)


def test_localization_metrics_read_boxes_as_x0_y0_x1_y1_on_a_non_square_map():
    maps = np.zeros((2, HEIGHT, WIDTH), np.float32)
    maps[0, 4:10, 14:20] = 1.0  # rows 4-9, columns 14-19
    maps[1, BLOB_BOX[1] : BLOB_BOX[3], BLOB_BOX[0] : BLOB_BOX[2]] = 1.0
    maps[1, 3, 33] = 0.5  # a lower pixel inside; the peak is still the first maximum
    boxes = np.array([(14, 4, 20, 10), BLOB_BOX])
    # Hand-computed: each map's positive region is exactly its box.
    np.testing.assert_array_equal(kc.metrics.boxes_from_maps(maps), boxes)
    np.testing.assert_allclose(kc.metrics.box_iou(maps, boxes).per_image, [1.0, 1.0])
    np.testing.assert_array_equal(kc.metrics.pointing_game(maps, boxes).per_image, [1.0, 1.0])
    # The same boxes read as (y0, x0, y1, x1) miss entirely: IoU 0 and no hit.
    swapped = np.array([(4, 14, 10, 20), (2, 22, 8, 24)])
    np.testing.assert_allclose(kc.metrics.box_iou(maps, swapped).per_image, [0.0, 0.0])
    np.testing.assert_array_equal(kc.metrics.pointing_game(maps, swapped).per_image, [0.0, 0.0])


def test_half_box_iou_on_a_non_square_map():
    maps = np.zeros((1, HEIGHT, WIDTH), np.float32)
    maps[0, 0:6, 20:40] = 1.0  # a 6x20 region in the top-right quarter
    # truth: the right half of that region, 6 rows x 10 columns -> IoU = 60 / 120.
    result = kc.metrics.box_iou(maps, np.array([(30, 0, 40, 6)]), fraction=0.5)
    np.testing.assert_allclose(result.per_image, [0.5])
