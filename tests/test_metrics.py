"""Metrics on analytic models: every value is checked against one computed by hand.

The model of most tests is `region_model`: on a 16x16 image its class-1 logit is
`GAIN * mean(pixels in REGION) + BIAS` and its class-0 logit is 0, followed by a softmax, so
the class-1 probability is `sigmoid(GAIN * m + BIAS)` with `m` the mean inside REGION.
"""

from __future__ import annotations

import math

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cam import metrics

SIZE = 16
PIXELS = SIZE * SIZE
REGION = (0, 0, 4, 4)  # (x0, y0, x1, y1), x1/y1 exclusive: the top-left 4x4 corner
GAIN, BIAS = 10.0, -5.0
P_FULL = 1.0 / (1.0 + math.exp(-(GAIN + BIAS)))  # class-1 probability when the region is 1
P_EMPTY = 1.0 / (1.0 + math.exp(-BIAS))  # class-1 probability when the region is 0


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def box_mask(box: tuple[int, int, int, int], size: int = SIZE) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros((size, size), np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


GOOD = box_mask(REGION)  # the map equal to the region the model reads
REVERSE = 1.0 - GOOD  # ranks the region last


def region_model(channels: int = 1, softmax: bool = True, bias: float = BIAS) -> keras.Model:
    """Flatten -> Dense(2) with fixed weights: logit_1 = GAIN * mean(REGION) + bias, logit_0 = 0."""
    inputs = keras.Input((SIZE, SIZE, channels))
    dense = keras.layers.Dense(2)
    outputs = dense(keras.layers.Flatten()(inputs))
    if softmax:
        outputs = keras.layers.Softmax()(outputs)
    kernel = np.zeros((SIZE, SIZE, channels, 2), np.float32)
    kernel[..., 1] = GAIN * GOOD[..., np.newaxis] / (GOOD.sum() * channels)
    dense.set_weights([kernel.reshape(-1, 2), np.array([0.0, bias], np.float32)])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return region_model()


def ones(batch: int, channels: int = 1) -> np.ndarray:
    return np.ones((batch, SIZE, SIZE, channels), np.float32)


def random_batch(batch: int = 5, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.uniform(0.0, 1.0, (batch, SIZE, SIZE, channels)).astype(np.float32)
    maps = rng.uniform(0.0, 1.0, (batch, SIZE, SIZE)).astype(np.float32)
    return images, maps


# ------------------------------------------------------------------ map as a soft mask
def test_average_drop_matches_hand_values(model):
    maps = np.stack([GOOD, REVERSE, 0.5 * GOOD])
    result = metrics.average_drop(model, ones(3), maps)
    half = sigmoid(GAIN * 0.5 + BIAS)
    expected = 100.0 * np.array([0.0, (P_FULL - P_EMPTY) / P_FULL, (P_FULL - half) / P_FULL])
    np.testing.assert_allclose(result.per_image, expected, atol=1e-4)
    assert result.per_image[0] == 0.0  # the map keeps exactly what the model reads
    assert result.mean == pytest.approx(expected.mean(), abs=1e-4)
    assert (result.name, result.unit, result.higher_is_better) == ("average_drop", "percent", False)
    assert result.curve is None and result.curve_x is None


def test_increase_in_confidence_counts_images_whose_confidence_rises(model):
    # Class 0 masked by REVERSE: the region goes dark, so P(class 0) rises from 1 - P_FULL.
    # Class 1 masked by GOOD: the input is unchanged, so O == Y and that is no increase.
    # Class 0 masked by GOOD: unchanged as well.
    maps = np.stack([REVERSE, GOOD, GOOD])
    result = metrics.increase_in_confidence(model, ones(3), maps, targets=[0, 1, 0])
    np.testing.assert_array_equal(result.per_image, [100.0, 0.0, 0.0])
    assert result.mean == pytest.approx(100.0 / 3)
    assert (result.unit, result.higher_is_better) == ("percent", True)


def test_default_target_is_top1_class_of_unmasked_image(model):
    images = ones(2)
    images[1] = 0.0  # P(class 1) = P_EMPTY < 0.5: top-1 is class 0
    maps = np.stack([REVERSE, GOOD])
    default = metrics.average_drop(model, images, maps)
    explicit = metrics.average_drop(model, images, maps, targets=[1, 0])
    np.testing.assert_array_equal(default.per_image, explicit.per_image)
    np.testing.assert_allclose(default.per_image[0], 100.0 * (P_FULL - P_EMPTY) / P_FULL, atol=1e-4)


# --------------------------------------------------------- remove / keep the top pixels
TOP = GOOD.sum() / PIXELS  # fraction that selects exactly the 16 region pixels


def test_remove_and_keep_top_fraction_match_hand_values(model):
    maps = np.stack([GOOD, REVERSE])
    removed = metrics.remove_top_fraction(model, ones(2), maps, targets=1, fraction=TOP)
    kept = metrics.keep_top_fraction(model, ones(2), maps, targets=1, fraction=TOP)
    drop = (P_EMPTY - P_FULL) / P_FULL
    # Removing the region kills the evidence; removing 16 pixels elsewhere changes nothing.
    np.testing.assert_allclose(removed.per_image, [drop, 0.0], atol=1e-5)
    # Keeping only the region keeps everything; keeping 16 pixels elsewhere loses it.
    np.testing.assert_allclose(kept.per_image, [0.0, drop], atol=1e-5)
    assert (removed.name, removed.unit, removed.higher_is_better) == (
        "remove_top_fraction", "ratio", False,
    )
    assert (kept.name, kept.higher_is_better) == ("keep_top_fraction", True)


def test_remove_top_fraction_mean_baseline_uses_per_channel_image_mean(model):
    images = GOOD[np.newaxis, ..., np.newaxis].copy()  # 1 in the region, 0 elsewhere
    result = metrics.remove_top_fraction(model, images, GOOD[np.newaxis], fraction=TOP,
                                         baseline="mean")
    # The image mean is 16/256; replacing the region by it leaves m = 1/16.
    expected = (sigmoid(GAIN / 16 + BIAS) - P_FULL) / P_FULL
    np.testing.assert_allclose(result.per_image, [expected], atol=1e-5)


def test_blur_baseline_is_opencv_gaussian_blur(model):
    images, _ = random_batch(batch=2, channels=1)
    result = metrics.remove_top_fraction(model, images, np.stack([GOOD, GOOD]), targets=1,
                                         fraction=TOP, baseline="blur")
    blurred = np.stack([cv2.GaussianBlur(image, (11, 11), 5.0) for image in images])[..., None]
    composite = np.where(GOOD[None, ..., None] > 0, blurred, images)
    y = model(images, training=False).numpy()[:, 1]
    o = model(composite, training=False).numpy()[:, 1]
    np.testing.assert_allclose(result.per_image, (o - y) / y, atol=1e-5)


def test_top_fraction_selects_exact_count_with_raster_tie_break(model):
    # A constant map ties everywhere: the first round(0.0625 * 256) = 16 pixels in raster
    # order (the top row) are removed, which holds a quarter of the region.
    flat = np.full((1, SIZE, SIZE), 0.3, np.float32)
    result = metrics.remove_top_fraction(model, ones(1), flat, targets=1, fraction=TOP)
    expected = (sigmoid(GAIN * 0.75 + BIAS) - P_FULL) / P_FULL
    np.testing.assert_allclose(result.per_image, [expected], atol=1e-5)


# ----------------------------------------------------------------- deletion / insertion
def test_deletion_and_insertion_curves_match_hand_values(model):
    maps = np.stack([GOOD, REVERSE])
    steps = PIXELS // 16  # each step changes 16 pixels: the region is one step
    deleted = metrics.deletion(model, ones(2), maps, targets=1, steps=steps)
    inserted = metrics.insertion(model, ones(2), maps, targets=1, steps=steps, baseline="zero")
    np.testing.assert_allclose(deleted.curve_x, np.linspace(0.0, 1.0, steps + 1))
    first = [P_FULL] + [P_EMPTY] * steps  # region removed in step 1
    last = [P_FULL] * steps + [P_EMPTY]  # region removed in the last step
    np.testing.assert_allclose(deleted.curve, [first, last], atol=1e-5)
    revealed_first = [P_EMPTY] + [P_FULL] * steps  # region revealed in step 1
    revealed_last = [P_EMPTY] * steps + [P_FULL]
    np.testing.assert_allclose(inserted.curve, [revealed_first, revealed_last], atol=1e-5)
    low = (P_FULL + P_EMPTY) / 2 / steps + P_EMPTY * (steps - 1) / steps
    high = P_FULL * (steps - 1) / steps + (P_FULL + P_EMPTY) / 2 / steps
    np.testing.assert_allclose(deleted.per_image, [low, high], atol=1e-5)
    np.testing.assert_allclose(inserted.per_image, [high, low], atol=1e-5)
    assert (deleted.unit, deleted.higher_is_better) == ("fraction", False)
    assert (inserted.unit, inserted.higher_is_better) == ("fraction", True)


def test_region_map_is_the_best_deletion_and_insertion_ordering(model):
    rng = np.random.default_rng(2)
    others = rng.uniform(0.0, 1.0, (6, SIZE, SIZE)).astype(np.float32)
    maps = np.concatenate([GOOD[None], REVERSE[None], others])
    images = ones(len(maps))
    deleted = metrics.deletion(model, images, maps, targets=1, steps=16).per_image
    inserted = metrics.insertion(model, images, maps, targets=1, steps=16,
                                 baseline="zero").per_image
    assert deleted[0] == pytest.approx(deleted.min()) and deleted[1] == pytest.approx(deleted.max())
    assert inserted[0] == pytest.approx(inserted.max())
    assert inserted[1] == pytest.approx(inserted.min())
    assert np.all(deleted[2:] > deleted[0]) and np.all(inserted[2:] < inserted[0])


def test_curve_steps_round_pixel_counts(model):
    result = metrics.deletion(model, ones(1), GOOD[None], steps=3)
    np.testing.assert_allclose(result.curve_x, np.array([0, 85, 171, 256]) / PIXELS)
    assert result.curve.shape == (1, 4)
    assert result.curve[0, 0] == pytest.approx(P_FULL, abs=1e-6)
    assert result.curve[0, -1] == pytest.approx(P_EMPTY, abs=1e-6)


# -------------------------------------------------------------------------- localization
def test_box_iou_of_a_box_map_is_the_box_iou_by_hand():
    predicted, truth = (2, 3, 8, 9), (5, 5, 12, 10)  # areas 36 and 35, overlap 3x4 = 12
    maps = np.stack([box_mask(predicted), box_mask(truth)])
    boxes = np.array([truth, truth])
    result = metrics.box_iou(maps, boxes)
    np.testing.assert_allclose(result.per_image, [12 / 59, 1.0])
    np.testing.assert_array_equal(metrics.boxes_from_maps(maps), [predicted, truth])
    assert (result.name, result.unit, result.higher_is_better) == ("box_iou", "fraction", True)


def test_box_comes_from_the_largest_connected_region():
    mask = box_mask((1, 1, 4, 4)) + box_mask((8, 6, 14, 12))  # 9 and 36 pixels, apart
    np.testing.assert_array_equal(metrics.boxes_from_maps(mask[None]), [(8, 6, 14, 12)])


def test_box_top_fraction_ties_break_in_raster_order():
    # round(12/256 * 256) = 12 of the 36 equal pixels of a 6-wide box: its first two rows.
    maps = box_mask((2, 3, 8, 9))[None]
    np.testing.assert_array_equal(metrics.boxes_from_maps(maps, fraction=12 / PIXELS),
                                  [(2, 3, 8, 5)])


@settings(max_examples=30, deadline=None)
@given(st.tuples(st.integers(0, SIZE - 1), st.integers(0, SIZE - 1),
                 st.integers(1, SIZE), st.integers(1, SIZE)))
def test_box_map_recovers_its_own_box(coords):
    x0, y0, w, h = coords
    box = (x0, y0, min(SIZE, x0 + w), min(SIZE, y0 + h))
    maps = box_mask(box)[None]
    result = metrics.box_iou(maps, np.array([box]), fraction=1.0)
    assert result.per_image[0] == 1.0
    assert metrics.pointing_game(maps, np.array([box])).per_image[0] == 1.0


def test_pointing_game_hits_and_misses():
    truth = (4, 4, 8, 8)
    inside, outside, edge = (np.zeros((SIZE, SIZE), np.float32) for _ in range(3))
    inside[5, 6] = 1.0
    outside[8, 6] = 1.0  # row 8 is just past the exclusive y1
    edge[7, 7] = 1.0  # last pixel of the box
    plateau = box_mask((0, 0, 16, 16)) * 0.5
    plateau[6, 6] = plateau[0, 0] = 1.0  # equal maxima: the first in raster order, (0, 0)
    maps = np.stack([inside, outside, edge, plateau])
    result = metrics.pointing_game(maps, np.array([truth] * 4))
    np.testing.assert_array_equal(result.per_image, [1.0, 0.0, 1.0, 0.0])
    assert result.mean == 0.5
    assert (result.unit, result.higher_is_better) == ("fraction", True)


# ------------------------------------------------------------------- all-zero / constant maps
def test_zero_maps_give_documented_values(model):
    zero = np.zeros((2, SIZE, SIZE), np.float32)
    boxes = np.array([REGION, REGION])
    # No positive pixel: empty box, IoU 0; a constant map points nowhere: a miss, even when
    # its raster-order argmax (0, 0) lies inside the box.
    np.testing.assert_array_equal(metrics.boxes_from_maps(zero), np.zeros((2, 4)))
    np.testing.assert_array_equal(metrics.box_iou(zero, boxes).per_image, [0.0, 0.0])
    constant = np.ones((2, SIZE, SIZE), np.float32)
    for maps in (zero, constant):
        np.testing.assert_array_equal(metrics.pointing_game(maps, boxes).per_image, [0.0, 0.0])
    # image * 0 is black: the drop of an all-black image.
    drop = metrics.average_drop(model, ones(2), zero).per_image
    np.testing.assert_allclose(drop, 100.0 * (P_FULL - P_EMPTY) / P_FULL, atol=1e-4)
    # A constant map ranks pixels in raster order, the same as a map decreasing in raster order.
    raster = np.linspace(1.0, 0.0, PIXELS, dtype=np.float32).reshape(1, SIZE, SIZE)
    for curve in (metrics.deletion, metrics.insertion):
        np.testing.assert_array_equal(curve(model, ones(1), zero[:1], steps=8).curve,
                                      curve(model, ones(1), raster, steps=8).curve)


def test_zero_target_probability_gives_zero_not_nan():
    dead = region_model(bias=-1000.0)  # softmax underflows: P(class 1) is exactly 0
    images, maps = ones(2), np.stack([GOOD, REVERSE])
    assert np.all(dead(images).numpy()[:, 1] == 0.0)
    for metric in (metrics.average_drop, metrics.remove_top_fraction, metrics.keep_top_fraction):
        np.testing.assert_array_equal(metric(dead, images, maps, targets=1).per_image, [0.0, 0.0])


# -------------------------------------------------------------------- invariances
def model_metric_calls():
    return [
        (name, fn, {"steps": 5} if name in ("deletion", "insertion") else {})
        for name, fn in metrics.METRICS.items()
        if name not in metrics.BOX_METRICS | metrics.MAP_METRICS
    ]


@pytest.mark.parametrize("name, metric, options", model_metric_calls())
def test_chunk_size_does_not_change_results(name, metric, options):
    model = region_model(channels=3)
    images, maps = random_batch()
    results = [metric(model, images, maps, batch_size=size, **options) for size in (1, 3, 64)]
    for result in results[1:]:
        np.testing.assert_allclose(result.per_image, results[0].per_image, atol=1e-6)
        if result.curve is not None:
            np.testing.assert_allclose(result.curve, results[0].curve, atol=1e-6)
    assert results[0].name == name
    assert results[0].per_image.shape == (len(images),)
    assert np.isfinite(results[0].per_image).all()


def test_inputs_are_not_mutated_and_tensors_are_accepted():
    model = region_model(channels=3)
    images, maps = random_batch()
    boxes = np.array([REGION] * len(images))
    originals = (images.copy(), maps.copy(), boxes.copy())
    results = {}
    for name, metric, options in model_metric_calls():
        results[name] = metric(model, images, maps, **options).per_image
        tensor_result = metric(model, tf.constant(images), tf.constant(maps), **options)
        np.testing.assert_array_equal(tensor_result.per_image, results[name])
    for name in metrics.BOX_METRICS:
        metrics.METRICS[name](maps, boxes)
    for array, original in zip((images, maps, boxes), originals):
        np.testing.assert_array_equal(array, original)


def test_model_call_is_traced_once_for_all_chunks_and_metric_calls():
    traces = []

    class CountTraces(keras.layers.Layer):
        def call(self, x):
            traces.append(1)  # Python side effect: runs once per trace, not per call
            return x

    base = region_model(channels=3)
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, base(CountTraces()(inputs)))
    images, maps = random_batch()
    traces.clear()
    metrics.deletion(model, images, maps, steps=4, batch_size=4)  # 25 copies: chunks 4,...,4,1
    metrics.average_drop(model, images, maps, batch_size=2)
    assert len(traces) == 1


# ---------------------------------------------------------------------- activations
def test_logit_model_is_read_as_logits(model):
    logits = region_model(softmax=False)
    images, maps = ones(2), np.stack([GOOD, REVERSE])
    expected = metrics.deletion(model, images, maps, steps=4)
    for kwargs in ({}, {"activation": "softmax"}, {"head": "logits"}):
        result = metrics.deletion(logits, images, maps, steps=4, **kwargs)
        np.testing.assert_allclose(result.curve, expected.curve, atol=1e-6)
    with pytest.raises(ValueError, match=r"not probabilities: pass `head='logits'`"):
        metrics.deletion(logits, images, maps, steps=4, head="softmax")
    with pytest.raises(ValueError, match=r"either `head` or its older spelling `activation`"):
        metrics.deletion(logits, images, maps, steps=4, head="logits", activation="softmax")


def single_unit_model(activation: str | None) -> keras.Model:
    """One unit: GAIN * mean(REGION) + BIAS, optionally through a sigmoid."""
    inputs = keras.Input((SIZE, SIZE, 1))
    dense = keras.layers.Dense(1, activation=activation)
    outputs = dense(keras.layers.Flatten()(inputs))
    dense.set_weights([(GAIN * GOOD / GOOD.sum()).reshape(-1, 1), np.array([BIAS], np.float32)])
    return keras.Model(inputs, outputs)


def test_single_unit_output_is_probability_of_class_one(model):
    images, maps = ones(2), np.stack([GOOD, REVERSE])
    expected = metrics.deletion(model, images, maps, steps=4, targets=[1, 0])
    for unit_model, kwargs in ((single_unit_model("sigmoid"), {}),
                               (single_unit_model(None), {"activation": "sigmoid"}),
                               (single_unit_model(None), {"activation": "softmax"}),
                               (single_unit_model(None), {"head": "logits"})):
        result = metrics.deletion(unit_model, images, maps, steps=4, targets=[1, 0], **kwargs)
        np.testing.assert_allclose(result.curve, expected.curve, atol=1e-6)
    with pytest.raises(ValueError, match="A softmax over a single output unit is always 1"):
        metrics.deletion(single_unit_model(None), images, maps, head="softmax")


def test_model_must_output_one_batch_of_class_scores():
    inputs = keras.Input((SIZE, SIZE, 1))
    flat = keras.layers.Flatten()(inputs)
    two_outputs = keras.Model(inputs, [flat, flat])
    spatial = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    maps = GOOD[None]
    # Several outputs: the metric names them and `output=` (issue 12); a per-pixel output
    # needs a target that reads one score per image.
    with pytest.raises(ValueError, match=r"has 2 outputs \(0: .*choose the output.*`output=`"):
        metrics.average_drop(two_outputs, ones(1), maps)
    with pytest.raises(ValueError, match=r"one score per position.*SegmentationTarget"):
        metrics.average_drop(spatial, ones(1), maps)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"maps": np.zeros((2, SIZE, SIZE))}, ValueError,
         r"`maps` must have shape \(B, H, W\) = \(3, 16, 16\) to match `images`; received "
         r"shape \(2, 16, 16\)"),
        ({"maps": np.zeros((3, 8, 8))}, ValueError, r"= \(3, 16, 16\).*received shape \(3, 8, 8\)"),
        ({"maps": np.zeros((3, SIZE, SIZE, 1))}, ValueError, r"`maps` must be a batch of shape"),
        ({"maps": np.full((3, SIZE, SIZE), np.nan)}, ValueError, "`maps` contain NaN"),
        ({"images": np.ones((SIZE, SIZE, 1))}, ValueError, r"Add a batch axis"),
        ({"images": np.array([["a"]])}, TypeError, "`images` must be numeric"),
        ({"targets": [1, 1]}, ValueError, r"3 images were passed.*shape \(2,\)"),
        ({"targets": 2}, ValueError, "class index 2, out of range for a model with 2 classes"),
        ({"targets": [0.5, 1.0, 1.0]}, TypeError, "integer class indices"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be at least 1; received 0"),
        ({"batch_size": 2.5}, TypeError, "`batch_size` must be an int; received 2.5"),
        ({"activation": "relu"}, ValueError, r"`activation` must be one of .*received 'relu'"),
        ({"steps": 0}, ValueError, "`steps` must be at least 1; received 0"),
        ({"baseline": "noise"}, ValueError, r"`baseline` must be one of .*received 'noise'"),
    ],
)
def test_model_metric_rejects_bad_input(model, kwargs, error, match):
    arguments = {"images": ones(3), "maps": np.zeros((3, SIZE, SIZE), np.float32)} | kwargs
    images, maps = arguments.pop("images"), arguments.pop("maps")
    with pytest.raises(error, match=match):
        metrics.deletion(model, images, maps, **arguments)


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_fraction_outside_unit_interval_is_rejected(model, fraction):
    maps = np.zeros((1, SIZE, SIZE), np.float32)
    message = rf"`fraction` must be in \(0, 1\]; received {fraction}"
    for call in (
        lambda: metrics.remove_top_fraction(model, ones(1), maps, fraction=fraction),
        lambda: metrics.keep_top_fraction(model, ones(1), maps, fraction=fraction),
        lambda: metrics.box_iou(maps, np.array([REGION]), fraction=fraction),
        lambda: metrics.boxes_from_maps(maps, fraction=fraction),
    ):
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize(
    "boxes, error, match",
    [
        (np.array([[0, 0, 4]]), ValueError, r"`boxes` must have shape \(B, 4\) = \(1, 4\)"),
        (np.array([REGION, REGION]), ValueError, r"received shape \(2, 4\)"),
        (np.array([[0, 0, 17, 4]]), ValueError, r"`boxes\[0\]` = \(0, 0, 17, 4\) is not a"),
        (np.array([[-1, 0, 4, 4]]), ValueError, r"0 <= x0 < x1 <= 16"),
        (np.array([[4, 0, 4, 4]]), ValueError, r"not a non-empty box"),
        (np.array([[0.0, 0.0, 4.0, 4.0]]), TypeError, "integer pixel coordinates"),
    ],
)
def test_localization_metrics_reject_bad_boxes(boxes, error, match):
    maps = GOOD[None]
    for metric in (metrics.box_iou, metrics.pointing_game):
        with pytest.raises(error, match=match):
            metric(maps, boxes)


def test_registry_names_every_metric():
    assert set(metrics.METRICS) == {
        "average_drop", "increase_in_confidence", "remove_top_fraction", "keep_top_fraction",
        "deletion", "insertion", "road", "box_iou", "box_iou_cam", "pointing_game",
        "energy_pointing_game", "sparseness",
    }
    assert metrics.BOX_METRICS <= set(metrics.METRICS)
    assert metrics.get_metric("insertion") is metrics.insertion
    with pytest.raises(ValueError, match="Unknown metric 'auc'; known metrics: average_drop"):
        metrics.get_metric("auc")


# ------------------------------------------------------------------------- raw-score head
RAW_HEIGHT, RAW_WIDTH = 24, 40
RAW_BIAS = -50.0


def raw_score_model(activation: str | None = None) -> keras.Model:
    """GAP -> Dense(1) with a ones kernel: output = RAW_BIAS + the sum of the channel means."""
    inputs = keras.Input((RAW_HEIGHT, RAW_WIDTH, 3))
    dense = keras.layers.Dense(1, activation=activation)
    outputs = dense(keras.layers.GlobalAveragePooling2D()(inputs))
    dense.set_weights([np.ones((3, 1), np.float32), np.array([RAW_BIAS], np.float32)])
    return keras.Model(inputs, outputs)


def raw_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (3, RAW_HEIGHT, RAW_WIDTH, 3)).astype("float32")
    maps = rng.uniform(0, 1, (3, RAW_HEIGHT, RAW_WIDTH)).astype("float32")
    return images, maps


class RawScores:
    """A callable that is not a Functional model, whose two outputs are raw scores."""

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        means = tf.reduce_mean(images, axis=(1, 2, 3))
        return tf.stack([means + RAW_BIAS, -means], axis=-1)


RAW_HEADS = {
    # Dense(1) without activation: read as a raw score automatically.
    "one_linear_unit": lambda: (raw_score_model(), {}),
    # An activation keras_cam does not know on one unit: read as a raw score, with a warning.
    "one_relu_unit": lambda: (raw_score_model("relu"), {}),
    # Raw scores stated by the user, on two units of a Functional model and of a callable.
    "stated_on_two_units": lambda: (region_model(3, softmax=False), {"head": "linear"}),
    "stated_on_a_callable": lambda: (RawScores(), {"head": "linear"}),
}


@pytest.mark.filterwarnings("ignore:keras_cam. the model's final layer")
@pytest.mark.parametrize("reading", sorted(RAW_HEADS))
@pytest.mark.parametrize("name", sorted(metrics.PROBABILITY_METRICS))
def test_probability_metrics_refuse_a_raw_score_head(name, reading):
    model, kwargs = RAW_HEADS[reading]()
    size = (RAW_HEIGHT, RAW_WIDTH) if reading in ("one_linear_unit", "one_relu_unit") else (
        SIZE, SIZE
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (2, *size, 3)).astype("float32")
    maps = rng.uniform(0, 1, (2, *size)).astype("float32")
    message = (
        rf"`{name}` is defined for class probabilities.*read as raw scores \(head='linear': "
        r".*state it: `head='logits'`.*use `deletion` or `insertion`"
    )
    with pytest.raises(ValueError, match=message):
        getattr(metrics, name)(model, images, maps, None, **kwargs)


@pytest.mark.parametrize("name", ["average_drop", "increase_in_confidence"])
def test_confidence_metrics_refuse_a_raw_score_head(name):
    inputs = keras.Input((24, 40, 3))
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    bias = keras.initializers.Constant(-50.0)
    model = keras.Model(inputs, keras.layers.Dense(1, bias_initializer=bias, name="regress")(x))
    images = np.random.default_rng(0).uniform(0, 1, (3, 24, 40, 3)).astype("float32")
    maps = np.random.default_rng(1).uniform(0, 1, (3, 24, 40)).astype("float32")
    with pytest.raises(ValueError, match=r"raw scores \(head='linear': Dense 'regress'"):
        getattr(metrics, name)(model, images, maps, None)


def test_a_raw_score_unit_stated_as_a_binary_logit_gives_the_hand_computed_average_drop():
    model = raw_score_model()
    model.layers[-1].set_weights([np.full((3, 1), 4.0, np.float32), np.array([-5.0], np.float32)])
    images, maps = raw_batch()

    def target_probability(batch: np.ndarray, classes: np.ndarray | None = None):
        z = -5.0 + 4.0 * batch.astype(np.float64).mean(axis=(1, 2)).sum(axis=-1)
        p1 = 1.0 / (1.0 + np.exp(-z))
        classes = (p1 > 0.5).astype(int) if classes is None else classes
        return np.where(classes == 1, p1, 1.0 - p1), classes

    y, classes = target_probability(images)
    o, _ = target_probability(images * maps[..., np.newaxis], classes)
    expected = 100.0 * np.maximum(0.0, y - o) / y
    assert 0 < expected.max() < 100  # the masks change the probability: a real check
    result = metrics.average_drop(model, images, maps, head="logits")
    np.testing.assert_allclose(result.per_image, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("insert", [False, True])
def test_deletion_and_insertion_on_raw_scores_are_the_hand_computed_mean_score(insert):
    # The score is RAW_BIAS + (sum of the kept pixels' channel sums) / (H * W), so removing
    # (or inserting) the map's top pixels against a zero baseline gives it by hand.
    images, maps = raw_batch()
    steps, pixels = 4, RAW_HEIGHT * RAW_WIDTH
    pixel_sums = images.astype(np.float64).sum(axis=-1).reshape(3, -1)
    expected_curve = np.empty((3, steps + 1))
    for image in range(3):
        order = sorted(range(pixels), key=lambda i: (-maps[image].reshape(-1)[i], i))
        for step in range(steps + 1):
            changed = order[: step * pixels // steps]  # 960 / 4 pixels a step, exactly
            present = pixel_sums[image, changed].sum()
            if not insert:
                present = pixel_sums[image].sum() - present
            expected_curve[image, step] = RAW_BIAS + present / pixels
    expected_auc = expected_curve[:, 1:].mean(axis=1) / 2 + expected_curve[:, :-1].mean(axis=1) / 2

    metric = metrics.insertion if insert else metrics.deletion
    result = metric(raw_score_model(), images, maps, steps=steps, baseline="zero")
    assert (result.unit, result.higher_is_better) == ("score", insert)
    np.testing.assert_allclose(result.curve, expected_curve, rtol=1e-5)
    np.testing.assert_allclose(result.per_image, expected_auc, rtol=1e-5)
    assert np.all(result.per_image < -40)  # raw units, not a fraction in [0, 1]
