"""Heatmaps of another scale: one rule for every function that takes a map (issue 10, kind 9).

- Drawing (`colorize`, `overlay`, `save_overlay`, `plot_cams`) and the soft-mask metrics
  (`average_drop`, `increase_in_confidence`) read a map on the [0, 1] scale: `uint8` as
  0..255, bool as 0/1, floats within 1e-3 of [0, 1] clipped, anything else refused.
- The metrics that only rank pixels (`remove_top_fraction`, `keep_top_fraction`,
  `deletion`, `insertion`) and the localization ones (`boxes_from_maps`, `box_iou`,
  `pointing_game`) accept any finite map: a peak of 1.009, raw scores, negative values.

Every expected value is computed here by hand (or with plain OpenCV), on 24x40 images so that a
swapped height and width cannot pass.
"""

from __future__ import annotations

import math

import cv2
import keras
import numpy as np
import pytest
from drawing_reference import reference_overlay

from keras_cam import metrics
from keras_cam.visualize import (
    HEATMAP_TOLERANCE,
    colorize,
    overlay,
    plot_cams,
    save_overlay,
    to_unit_heatmap,
)

HEIGHT, WIDTH = 24, 40
PIXELS = HEIGHT * WIDTH
BOX = (28, 3, 36, 9)  # (x0, y0, x1, y1): 8 wide, 6 high, in the top-right part of the image
BOX_PIXELS = 48
GAIN, BIAS = 10.0, -5.0
P_FULL = 1.0 / (1.0 + math.exp(-(GAIN + BIAS)))  # class-1 probability, box all ones
P_EMPTY = 1.0 / (1.0 + math.exp(-BIAS))  # class-1 probability, box all zeros
JET_HOT = (128, 0, 0)  # OpenCV's jet at level 255, in RGB


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def box_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


IN_BOX = box_mask(BOX)


def blob(centre_y: float = 10.0, centre_x: float = 25.0, sigma: float = 6.0) -> np.ndarray:
    """A Gaussian blob on the 24x40 grid, min-max normalized: exactly one pixel is 1.0."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    values = np.exp(-((rows - centre_y) ** 2 + (cols - centre_x) ** 2) / (2 * sigma**2))
    return (values - values.min()) / (values.max() - values.min())


def region_model() -> keras.Model:
    """On 24x40x1 images: logit_1 = GAIN * mean(pixels in BOX) + BIAS, logit_0 = 0, softmax."""
    inputs = keras.Input((HEIGHT, WIDTH, 1))
    dense = keras.layers.Dense(2)
    outputs = keras.layers.Softmax()(dense(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((PIXELS, 2), np.float32)
    kernel[:, 1] = GAIN * IN_BOX.reshape(-1) / BOX_PIXELS
    dense.set_weights([kernel, np.array([0.0, BIAS], np.float32)])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return region_model()


def ones(batch: int = 1) -> np.ndarray:
    return np.ones((batch, HEIGHT, WIDTH, 1), np.float32)


IMAGE = np.random.default_rng(7).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


# --- every function that takes a map, by the rule it applies ----------------------------
def _plot_cams_cell(heatmap: np.ndarray) -> np.ndarray:
    fig = plot_cams(IMAGE, {"Grad-CAM": heatmap})
    return fig.axes[1].images[0].get_array()


def _save_overlay_png(heatmap: np.ndarray, tmp_path) -> np.ndarray:
    path = save_overlay(tmp_path / "cam.png", IMAGE, heatmap)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# name -> (call on one (H, W) heatmap, argument named in errors)
DRAWING = {
    "colorize": (lambda heatmap, tmp_path: colorize(heatmap), "heatmap"),
    "overlay": (lambda heatmap, tmp_path: overlay(IMAGE, heatmap), "heatmap"),
    "save_overlay": (_save_overlay_png, "heatmap"),
    "plot_cams": (
        lambda heatmap, tmp_path: _plot_cams_cell(heatmap), r"maps_by_method\['Grad-CAM'\]"
    ),
}
SOFT_MASK_METRICS = ("average_drop", "increase_in_confidence")
RANKING_METRICS = ("remove_top_fraction", "keep_top_fraction", "deletion", "insertion", "road")
# Read the map's values as amounts of evidence: refuse negative values.
NONNEGATIVE_METRICS = ("box_iou_cam", "energy_pointing_game")


def test_every_metric_has_a_documented_rule():
    assert set(metrics.METRICS) == (
        set(SOFT_MASK_METRICS) | set(RANKING_METRICS) | set(metrics.BOX_METRICS)
        | set(metrics.MAP_METRICS)
    )
    for name in SOFT_MASK_METRICS:
        assert "used as soft masks" in metrics.METRICS[name].__doc__
    for name in (*RANKING_METRICS, *metrics.BOX_METRICS, *metrics.MAP_METRICS):
        if name not in NONNEGATIVE_METRICS:
            assert "any finite values" in metrics.METRICS[name].__doc__
    for name in NONNEGATIVE_METRICS:
        assert "non-negative maps" in metrics.METRICS[name].__doc__


def call_drawing(name: str, heatmap: np.ndarray, tmp_path) -> np.ndarray:
    function, _ = DRAWING[name]
    return np.asarray(function(heatmap, tmp_path))


def drawing_reference(name: str, heatmap: np.ndarray) -> np.ndarray:
    """What `name` must draw for a float heatmap in [0, 1], by plain OpenCV."""
    if name == "colorize":
        return reference_overlay(IMAGE, heatmap, alpha=1.0)
    return reference_overlay(IMAGE, heatmap, alpha=0.4)


# --- the issue's example: a uint8 heatmap is read as 0..255 -----------------------------
@pytest.mark.parametrize("name", list(DRAWING))
def test_uint8_heatmap_draws_like_heatmap_over_255(name, tmp_path):
    levels = np.uint8(255 * blob())  # the issue's `np.uint8(255 * heatmap)`
    drawn = call_drawing(name, levels, tmp_path).astype(int)
    expected = drawing_reference(name, levels / 255.0)
    assert drawn.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(drawn - expected).max() <= 1


def test_uint8_heatmap_at_conv_resolution_is_resized_on_the_0_255_scale():
    levels = np.uint8(255 * blob()[::4, ::4])  # a 6x10 map, as at the conv layer
    drawn = overlay(IMAGE, levels).astype(int)
    assert np.abs(drawn - reference_overlay(IMAGE, levels / 255.0, alpha=0.4)).max() <= 1


def test_issue_example_draws_only_the_peak_in_the_top_colour():
    heatmap = blob()
    levels = np.uint8(255 * heatmap)
    # By hand: only the peak pixel reaches level 255 (its neighbours are at most
    # exp(-1 / 72) < 254 / 255); on main every non-zero level was clipped up to it.
    assert np.count_nonzero(levels == 255) == 1 and np.count_nonzero(levels) > 0.8 * PIXELS
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    hot_levels = np.flatnonzero(np.all(lut == JET_HOT, axis=-1))
    expected_share = np.isin(levels, hot_levels).mean()
    assert expected_share == 1 / PIXELS  # 0.1 % of the 24x40 picture
    colour = colorize(levels)
    np.testing.assert_array_equal(colour, lut[levels])
    assert np.all(colour == JET_HOT, axis=-1).mean() == expected_share


# --- floats: inside the tolerance clipped, outside refused -----------------------------
@pytest.mark.parametrize("name", list(DRAWING))
def test_float_heatmap_within_rounding_tolerance_is_clipped(name, tmp_path):
    heatmap = blob()
    stretched = heatmap * 1.0004 - 0.0002  # in [-0.0002, 1.0002]: resampling noise
    drawn = call_drawing(name, stretched, tmp_path).astype(int)
    assert np.abs(drawn - drawing_reference(name, np.clip(stretched, 0, 1))).max() <= 1


@pytest.mark.parametrize("name", list(DRAWING))
@pytest.mark.parametrize(
    ("scale", "shift", "observed"),
    [(1.5, 0.0, r"\[0, 1\.5\]"), (1.0, -0.2, r"\[-0\.2, 0\.8\]"), (255.0, 0.0, r"\[0, 255\]")],
)
def test_float_heatmap_outside_unit_range_is_refused(name, scale, shift, observed, tmp_path):
    _, argument = DRAWING[name]
    message = rf"`{argument}` must lie in \[0, 1\] \(up to 0\.001 for rounding\).*{observed}.*"
    message += r"Min-max normalize it.*or pass levels 0\.\.255 as uint8"
    with pytest.raises(ValueError, match=message):
        call_drawing(name, blob() * scale + shift, tmp_path)


@pytest.mark.parametrize("name", list(DRAWING))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_heatmap_is_refused(name, bad, tmp_path):
    _, argument = DRAWING[name]
    heatmap = blob()
    heatmap[3, 30] = bad
    with pytest.raises(ValueError, match=rf"`{argument}` contains NaN or infinite values"):
        call_drawing(name, heatmap, tmp_path)


# --- other dtypes of the same kind ------------------------------------------------------
@pytest.mark.parametrize("name", list(DRAWING))
@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.int32])
def test_integer_levels_other_than_uint8_are_refused(name, dtype, tmp_path):
    # `(255 * heatmap).astype(int)` was clipped on main exactly like the uint8 case.
    _, argument = DRAWING[name]
    levels = (255 * blob()).astype(dtype)
    message = (
        rf"`{argument}` has integer dtype {np.dtype(dtype)} with values in \[0, 255\]; integer "
        r"heatmaps other than uint8 must be 0/1 masks\. Pass levels 0\.\.255 as uint8"
    )
    with pytest.raises(ValueError, match=message):
        call_drawing(name, levels, tmp_path)


@pytest.mark.parametrize("name", list(DRAWING))
def test_uint8_0_1_mask_is_refused(name, tmp_path):
    # Read as levels it would be 1/255 at most: a blank map. bool and float spell a mask.
    _, argument = DRAWING[name]
    message = rf"`{argument}` is a uint8 map whose values are all 0 or 1: a 0/1 mask"
    with pytest.raises(ValueError, match=message + r".*Pass the mask as bool"):
        call_drawing(name, (blob() > 0.5).astype(np.uint8), tmp_path)


@pytest.mark.parametrize("name", list(DRAWING))
def test_bool_and_integer_masks_are_read_as_0_and_1(name, tmp_path):
    mask = IN_BOX > 0
    expected = drawing_reference(name, mask.astype(np.float64))
    for given in (mask, mask.astype(np.int64)):
        drawn = call_drawing(name, given, tmp_path).astype(int)
        assert np.abs(drawn - expected).max() <= 1


def test_to_unit_heatmap_by_hand():
    np.testing.assert_array_equal(
        to_unit_heatmap(np.array([[0, 51, 255]], np.uint8)), np.float32([[0.0, 0.2, 1.0]])
    )
    np.testing.assert_array_equal(
        to_unit_heatmap(np.array([[-0.001, 0.5, 1.001]])), np.float32([[0.0, 0.5, 1.0]])
    )
    for dtype in (np.float16, np.float32, np.float64):
        values = to_unit_heatmap(np.array([0.25, 1.0004], dtype))
        assert values.dtype == np.float32 and values.tolist() == [0.25, 1.0]
    assert HEATMAP_TOLERANCE == 1e-3
    with pytest.raises(ValueError, match=r"`m` must lie in \[0, 1\].*\[0, 1\.0011\]"):
        to_unit_heatmap(np.array([0.0, 1.0011]), "m")
    with pytest.raises(TypeError, match=r"`m` must be a numeric array, got dtype complex128"):
        to_unit_heatmap(np.array([0.5 + 1j]), "m")


# --- soft-mask metrics: the same rule ---------------------------------------------------
def test_soft_mask_metrics_read_uint8_maps_as_0_255(model):
    # Masking by a map of level L inside the box leaves mean(box) = L / 255.
    levels = np.stack([np.uint8(255) * IN_BOX.astype(np.uint8), np.uint8(51) * (IN_BOX > 0)])
    drop = metrics.average_drop(model, ones(2), levels)
    o = np.array([P_FULL, sigmoid(GAIN * 0.2 + BIAS)])
    np.testing.assert_allclose(drop.per_image, 100 * (P_FULL - o) / P_FULL, atol=1e-4)
    increase = metrics.increase_in_confidence(model, ones(2), levels)
    np.testing.assert_array_equal(increase.per_image, [0.0, 0.0])


def test_soft_mask_metrics_clip_rounding_and_read_bool(model):
    # The second map is 0.4996 in the box and -0.0004 (clipped to 0) outside it.
    maps = np.stack([IN_BOX * 1.0004, IN_BOX * 0.5 - 0.0004])
    drop = metrics.average_drop(model, ones(2), maps)
    o = np.array([P_FULL, sigmoid(GAIN * 0.4996 + BIAS)])
    np.testing.assert_allclose(drop.per_image, 100 * (P_FULL - o) / P_FULL, atol=1e-4)
    as_bool = metrics.average_drop(model, ones(1), (IN_BOX > 0)[None])
    np.testing.assert_allclose(as_bool.per_image, [0.0], atol=1e-4)


@pytest.mark.parametrize("name", SOFT_MASK_METRICS)
@pytest.mark.parametrize(
    ("maps", "message"),
    [
        (IN_BOX[None] * 1.5, r"`maps` must lie in \[0, 1\] \(up to 0\.001.*\[0, 1\.5\]"),
        (IN_BOX[None] - 0.5, r"`maps` must lie in \[0, 1\].*\[-0\.5, 0\.5\]"),
        ((255 * IN_BOX[None]).astype(np.int64), r"`maps` has integer dtype int64"),
        (IN_BOX[None].astype(np.uint8), r"`maps` is a uint8 map whose values are all 0 or 1"),
        (np.full((1, HEIGHT, WIDTH), np.nan), r"`maps` contains NaN or infinite values"),
    ],
)
def test_soft_mask_metrics_refuse_maps_of_another_scale(model, name, maps, message):
    with pytest.raises(ValueError, match=message):
        metrics.METRICS[name](model, ones(1), maps)


# --- ranking metrics: only the order of the pixels matters ------------------------------
def _any_scale(map_: np.ndarray) -> list[np.ndarray]:
    """The same pixel order on other scales: peak 1.009, raw scores, negative, uint8."""
    return [map_ * 1.009, 7.0 * map_ - 3.0, map_ - 2.0, np.uint8(255 * map_)]


@pytest.mark.parametrize("index", range(4))
def test_deletion_and_insertion_accept_any_scale_with_hand_curves(model, index):
    maps = _any_scale(IN_BOX)[index][None]
    # 4 steps remove 240, 480, 720, 960 pixels; the 48 box pixels rank first, so the box is
    # gone (deletion) or back (insertion, from the zero baseline) after the first step.
    deleted = metrics.deletion(model, ones(1), maps, steps=4)
    np.testing.assert_allclose(deleted.curve[0], [P_FULL] + [P_EMPTY] * 4, atol=1e-6)
    auc = 0.25 * ((P_FULL + P_EMPTY) / 2 + 3 * P_EMPTY)
    np.testing.assert_allclose(deleted.per_image, [auc], atol=1e-6)
    inserted = metrics.insertion(model, ones(1), maps, steps=4, baseline="zero")
    np.testing.assert_allclose(inserted.curve[0], [P_EMPTY] + [P_FULL] * 4, atol=1e-6)


@pytest.mark.parametrize("index", range(4))
def test_top_fraction_metrics_accept_any_scale(model, index):
    maps = _any_scale(IN_BOX)[index][None]
    fraction = BOX_PIXELS / PIXELS  # exactly the box
    removed = metrics.remove_top_fraction(model, ones(1), maps, fraction=fraction)
    np.testing.assert_allclose(removed.per_image, [(P_EMPTY - P_FULL) / P_FULL], atol=1e-6)
    kept = metrics.keep_top_fraction(model, ones(1), maps, fraction=fraction)
    np.testing.assert_allclose(kept.per_image, [0.0], atol=1e-6)


@pytest.mark.parametrize("name", RANKING_METRICS)
def test_ranking_metrics_refuse_nan(model, name):
    maps = IN_BOX[None].copy()
    maps[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"`maps` contain NaN or infinite values; the metric"):
        metrics.METRICS[name](model, ones(1), maps)


# --- localization metrics: only the order of the pixels matters -------------------------
def peak_map(y: int, x: int, peak: float = 1.009, background: float = 0.0) -> np.ndarray:
    map_ = np.full((HEIGHT, WIDTH), background)
    map_[y, x] = peak
    return map_


@pytest.mark.parametrize(
    ("peak", "background"), [(1.009, 0.0), (1.009, 0.5), (-0.5, -2.0), (300.0, -7.0)]
)
def test_pointing_game_accepts_any_scale_with_hand_hits(peak, background):
    # (y=5, x=30) lies in BOX = columns 28..35, rows 3..8; (y=20, x=5) is below-left of it and
    # (y=4, x=20) left of it. A swapped axis reads (y=30, x=5) for the first: a miss.
    maps = np.stack(
        [peak_map(5, 30, peak, background), peak_map(20, 5, peak, background),
         peak_map(4, 20, peak, background)]
    )
    result = metrics.pointing_game(maps, np.array([BOX] * 3))
    np.testing.assert_array_equal(result.per_image, [1.0, 0.0, 0.0])


def test_box_iou_accepts_any_scale_with_hand_iou():
    # The top 48 pixels form the block x 30..37, y 3..8: 8 x 6 like BOX, shifted right by 2.
    # Intersection 6 x 6 = 36, union 48 + 48 - 36 = 60: IoU 0.6.
    block = box_mask((30, 3, 38, 9))
    for map_ in (block * 1.009, block - 0.3, 1000.0 * block - 7.0, np.uint8(255 * block)):
        result = metrics.box_iou(map_[None], np.array([BOX]), fraction=BOX_PIXELS / PIXELS)
        np.testing.assert_allclose(result.per_image, [0.6])
        boxes = metrics.boxes_from_maps(map_[None], fraction=BOX_PIXELS / PIXELS)
        np.testing.assert_array_equal(boxes, [[30, 3, 38, 9]])


def test_constant_maps_of_any_level_point_nowhere():
    # On main, a constant 0.5 map selected its first 25 % of pixels in raster order: the box
    # (0, 0, 40, 6), IoU 1/3 with the top-left box below. A constant map has no evidence.
    truth = np.array([[0, 0, 20, 12]])
    for level in (0.0, 0.5, 1.009, -3.0):
        constant = np.full((1, HEIGHT, WIDTH), level)
        np.testing.assert_array_equal(metrics.boxes_from_maps(constant), [[0, 0, 0, 0]])
        np.testing.assert_array_equal(metrics.box_iou(constant, truth).per_image, [0.0])
        np.testing.assert_array_equal(metrics.pointing_game(constant, truth).per_image, [0.0])


@pytest.mark.parametrize("metric", [metrics.box_iou, metrics.pointing_game])
def test_localization_metrics_refuse_nan(metric):
    maps = peak_map(5, 30)[None]
    maps[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"`maps` contain NaN or infinite values"):
        metric(maps, np.array([BOX]))


def test_localization_metrics_refuse_complex_maps():
    # A cast to float would drop the imaginary part without a word.
    maps = (peak_map(5, 30) + 1j * peak_map(20, 5))[None]
    with pytest.raises(TypeError, match=r"`maps` must hold real values.*complex128"):
        metrics.pointing_game(maps, np.array([BOX]))
