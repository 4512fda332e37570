"""Energy-based pointing game, CAM-protocol box IoU and sparseness on hand-built maps."""

import numpy as np
import pytest

from keras_cam import metrics

HEIGHT, WIDTH = 24, 40
BOX = (6, 4, 22, 16)  # (x0, y0, x1, y1): 16 x 12 pixels


def inside_box(box=BOX) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def test_energy_pointing_of_the_box_is_one_and_of_a_uniform_map_the_area_share():
    maps = np.stack([inside_box(), np.full((HEIGHT, WIDTH), 0.3, np.float32)])
    boxes = np.array([BOX, BOX])
    result = metrics.energy_pointing_game(maps, boxes)
    np.testing.assert_allclose(result.per_image, [1.0, 16 * 12 / (HEIGHT * WIDTH)])
    assert result.higher_is_better and result.unit == "fraction"


def test_energy_pointing_counts_every_pixel_and_zero_energy_scores_zero():
    spread = inside_box() * 3.0
    spread[0, 0] = 1.0  # one unit of energy outside, 3 * 192 inside
    maps = np.stack([spread, np.zeros((HEIGHT, WIDTH), np.float32)])
    result = metrics.energy_pointing_game(maps, np.array([BOX, BOX]))
    np.testing.assert_allclose(result.per_image, [576 / 577, 0.0])
    with pytest.raises(ValueError, match=r"`energy_pointing_game` .* cannot be negative"):
        metrics.energy_pointing_game(maps - 0.5, np.array([BOX, BOX]))


def test_cam_protocol_box_is_the_largest_region_above_a_fifth_of_the_maximum():
    cam_map = np.zeros((HEIGHT, WIDTH), np.float32)
    cam_map[4:16, 6:22] = 0.25  # above 0.2 of the maximum: part of the region
    cam_map[8:10, 10:12] = 1.0  # the peak
    cam_map[20:23, 30:39] = 0.9  # a smaller, separate region
    faint = cam_map.copy()
    faint[4:16, 6:22] = np.where(faint[4:16, 6:22] == 0.25, 0.15, faint[4:16, 6:22])
    boxes = metrics.boxes_above_threshold(np.stack([cam_map, faint]))
    np.testing.assert_array_equal(boxes, [BOX, (30, 20, 39, 23)])  # faint: 27 > 4 pixels
    iou = metrics.box_iou_cam(np.stack([cam_map, faint]), np.array([BOX, BOX]))
    np.testing.assert_allclose(iou.per_image, [1.0, 0.0])
    # The top-fraction rule sees the order only; the protocol sees the values.
    assert metrics.box_iou(cam_map[np.newaxis], np.array([BOX]), fraction=0.01).mean < 1.0


def test_cam_protocol_threshold_and_empty_maps():
    ramp = np.tile(np.linspace(0.0, 1.0, WIDTH, dtype=np.float32), (HEIGHT, 1))
    box = metrics.boxes_above_threshold(ramp[np.newaxis], threshold=0.5)[0]
    first = int(np.argmax(ramp[0] > 0.5))
    np.testing.assert_array_equal(box, (first, 0, WIDTH, HEIGHT))
    zeros = np.zeros((1, HEIGHT, WIDTH), np.float32)
    np.testing.assert_array_equal(metrics.boxes_above_threshold(zeros), [(0, 0, 0, 0)])
    assert metrics.box_iou_cam(zeros, np.array([BOX])).mean == 0.0
    with pytest.raises(ValueError, match=r"`threshold` must be in \(0, 1\]"):
        metrics.box_iou_cam(zeros, np.array([BOX]), threshold=0.0)


def reference_gini(values: np.ndarray) -> float:
    """Gini from its mean-absolute-difference definition: sum |a_i - a_j| / (2 n^2 mean)."""
    a = np.abs(values.ravel()).astype(np.float64)
    return float(np.abs(a[:, None] - a[None, :]).sum() / (2 * len(a) ** 2 * a.mean()))


def test_sparseness_of_one_hot_is_near_one_and_of_constant_maps_zero():
    one_hot = np.zeros((HEIGHT, WIDTH), np.float32)
    one_hot[5, 7] = 1.0
    maps = np.stack([one_hot, np.full((HEIGHT, WIDTH), 0.4, np.float32), 0 * one_hot])
    result = metrics.sparseness(maps)
    np.testing.assert_allclose(result.per_image, [1 - 1 / (HEIGHT * WIDTH), 0.0, 0.0])
    assert result.higher_is_better


def test_sparseness_matches_the_mean_difference_definition():
    rng = np.random.default_rng(2)
    maps = rng.random((3, HEIGHT, WIDTH)) ** 4 - 0.2  # signs: absolute values are used
    expected = [reference_gini(single) for single in maps]
    np.testing.assert_allclose(metrics.sparseness(maps).per_image, expected, rtol=1e-9)
    blurred = np.stack([inside_box(), inside_box((0, 0, WIDTH, 20))])
    sharp, blurry = metrics.sparseness(blurred).per_image
    assert sharp > blurry  # the bigger blob is the less sparse map
