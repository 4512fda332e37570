"""Every method on a non-square input (24x40): maps equal slow references, and peak where the
bright blob is, so a swapped height/width anywhere (upsampling, masks, boxes) fails a test."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from references import (
    BLOB_BOX,
    HEIGHT,
    WIDTH,
    blob_mask,
    corner_images,
    corner_model,
    reference_cam_maps,
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
    grid = (HEIGHT, WIDTH) if name == "fullgrad" else (HEIGHT // 2, WIDTH // 2)  # input-level
    assert low.shape == (2, *grid)


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_the_contract_holds_on_a_non_square_input(name, random_model):
    images = corner_images(4, seed=3)
    cam = kc.get_method(name)(random_model)
    maps = cam(images)
    assert maps.shape == (4, HEIGHT, WIDTH) and maps.dtype == np.float32
    np.testing.assert_allclose(cam(images[1]), maps[1], atol=1e-5)  # one image: (H, W)
    order = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(cam(images[order]), maps[order], atol=1e-5)


def test_retrofitted_model_on_a_non_square_input():
    model = kc.retrofit_gap("vgg16", 3, input_shape=(32, 64, 3), weights=None)
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 64, 3)).astype("float32")
    classes = np.array([2, 1])
    cam = kc.CAM(model)
    [base] = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert cam.layer is base.layers[-1]  # the base's last conv, nested one level down
    features = keras.Model(base.inputs[0], base.outputs[0])(images)
    kernel = model.get_layer("predictions").get_weights()[0]
    expected = reference_cam_maps(np.asarray(features), kernel, classes, (32, 64))
    np.testing.assert_allclose(cam(images, targets=classes), expected, atol=2e-4)
    np.testing.assert_allclose(kc.GradCAM(model)(images, targets=classes), expected, atol=2e-4)


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


# ------------------------------------------------------- model-based metrics, by hand
def _ramp_maps(n: int) -> np.ndarray:
    """Distinct values that rise to the right more than downwards: a transposed or swapped
    reading ranks different pixels first."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    ramp = (cols * HEIGHT + rows) / (HEIGHT * WIDTH)
    maps = np.stack([ramp if i % 2 == 0 else ramp[::-1, ::-1] for i in range(n)])
    return maps.astype(np.float32)


def _probability(model, images, classes) -> np.ndarray:
    return np.asarray(model(images), np.float64)[np.arange(len(images)), classes]


def _reference_curve(model, images, maps, classes, steps: int, insert: bool) -> np.ndarray:
    """Deletion (insertion) AUC: remove (insert) pixels in decreasing map order, zero baseline."""
    pixels = HEIGHT * WIDTH
    aucs = []
    for image, heatmap, cls in zip(images, maps, classes):
        order = np.argsort(-heatmap.ravel(), kind="stable")
        counts = [int(np.floor(k * pixels / steps + 0.5)) for k in range(steps + 1)]
        scores = []
        for count in counts:
            changed = np.zeros(pixels, bool)
            changed[order[:count]] = True
            keep = changed if insert else ~changed
            masked = image * keep.reshape(HEIGHT, WIDTH, 1)
            scores.append(_probability(model, masked[None], [cls])[0])
        x = np.array(counts) / pixels
        aucs.append(np.trapezoid(scores, x))
    return np.array(aucs)


def test_deletion_and_insertion_on_a_non_square_input(positive_model):
    images = corner_images(2)
    maps = _ramp_maps(2)
    classes = np.array([0, 0])
    for metric, insert in ((kc.metrics.deletion, False), (kc.metrics.insertion, True)):
        result = metric(positive_model, images, maps, classes, steps=4, baseline="zero")
        expected = _reference_curve(positive_model, images, maps, classes, 4, insert)
        np.testing.assert_allclose(result.per_image, expected, rtol=1e-5)


def test_average_drop_and_increase_in_confidence_on_a_non_square_input(positive_model):
    images = corner_images(2)
    maps = _ramp_maps(2)
    classes = np.array([0, 0])
    full = _probability(positive_model, images, classes)
    masked = _probability(positive_model, images * maps[..., None], classes)
    drop = 100.0 * np.maximum(0.0, full - masked) / full
    result = kc.metrics.average_drop(positive_model, images, maps, classes)
    np.testing.assert_allclose(result.per_image, drop, rtol=1e-5)
    increase = kc.metrics.increase_in_confidence(positive_model, images, maps, classes)
    np.testing.assert_array_equal(increase.per_image, 100.0 * (masked > full))
