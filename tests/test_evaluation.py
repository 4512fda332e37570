"""`evaluate` and `EvaluationTable`: rows equal the metric functions, and hand-computed values.

Most tests use `region_model`: on a 12x12 RGB image its class-1 logit is
`GAIN * mean(pixels in REGION) + BIAS` and its class-0 logit is 0, followed by a softmax; and
fake methods (`fake_method`) that return a fixed map and record how they are called.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, ClassVar

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_models import (
    TTA_CALLS,
    gap_model,
    split_model,
    tta_gradcam_reference,
    tta_model,
)

from keras_cam import evaluation, metrics
from keras_cam.evaluation import EvaluationTable, evaluate
from keras_cam.methods import METHODS, BaseCAM, GradCAM, GradCAMPlusPlus

SIZE = 12
REGION = (2, 3, 6, 7)  # (x0, y0, x1, y1), x1/y1 exclusive
GAIN, BIAS = 8.0, -4.0
BRIGHTNESS = np.array([1.0, 0.8, 0.6, 0.9])  # image i is the constant BRIGHTNESS[i]
# Few steps; insertion starts from zeros (the default blur of a constant image is that image).
FAST = {"deletion": {"steps": 8}, "insertion": {"steps": 8, "baseline": "zero"}}


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def box_map(box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


REGION_MAP = box_map(REGION)  # exactly the pixels the model reads
ELSEWHERE_MAP = 1.0 - REGION_MAP  # every pixel but those


def region_model() -> keras.Model:
    """Flatten -> Dense(2) -> Softmax: logit_1 = GAIN * mean(REGION) + BIAS, logit_0 = 0."""
    inputs = keras.Input((SIZE, SIZE, 3))
    dense = keras.layers.Dense(2)
    outputs = keras.layers.Softmax()(dense(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((SIZE, SIZE, 3, 2), np.float32)
    kernel[..., 1] = GAIN * REGION_MAP[..., np.newaxis] / (3 * REGION_MAP.sum())
    dense.set_weights([kernel.reshape(-1, 2), np.array([0.0, BIAS], np.float32)])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return region_model()


def constant_images(brightness: np.ndarray = BRIGHTNESS) -> np.ndarray:
    return np.broadcast_to(
        brightness[:, None, None, None], (len(brightness), SIZE, SIZE, 3)
    ).astype(np.float32)


def fake_method(
    cam_map: np.ndarray,
    name: str = "Fake",
    *,
    fail: Exception | None = None,
    first_call_seconds: float = 0.0,
    call_seconds: float = 0.0,
) -> type[BaseCAM]:
    """A method class returning `cam_map` for every image, that records its instances' calls.

    Args:
        fail: raised by the constructor, if given.
        first_call_seconds: the first call of an instance sleeps this long (like tracing).
        call_seconds: every later call sleeps this long.
    """

    class Fake(BaseCAM):
        display_name = name
        instances: ClassVar[list[Any]] = []

        def __init__(
            self, model: keras.Model, layer: Any = None, *, verbose: int = 1, head: Any = None
        ) -> None:
            if fail is not None:
                raise fail
            self.model, self.layer, self.verbose = model, layer, verbose
            self.calls: list[tuple[int, list[int] | None]] = []
            type(self).instances.append(self)

        def __call__(self, images: Any, targets: Any = None) -> np.ndarray:
            time.sleep(call_seconds if self.calls else first_call_seconds)
            self.calls.append((len(images), None if targets is None else list(targets)))
            return np.repeat(cam_map[np.newaxis], len(images), axis=0)

    Fake.__name__ = Fake.__qualname__ = name
    return Fake


# ------------------------------------------------------------------------- known answers
def test_rows_equal_the_metric_functions_and_hand_values(model):
    images = constant_images()
    labels = np.ones(len(images), np.int32)
    boxes = np.tile(REGION, (len(images), 1)).astype(np.int32)
    region, elsewhere = fake_method(REGION_MAP, "Region"), fake_method(ELSEWHERE_MAP, "Elsewhere")

    table = evaluate(model, images, labels, boxes, methods=(region, elsewhere),
                     metric_options=FAST, batch_size=3)

    # Boxes given: every metric but ROAD (opt-in: a linear solve per removed pixel set), and
    # the sanity check.
    assert evaluation.OPT_IN_METRICS == ("road",)
    assert table.metrics == (*(n for n in metrics.METRICS if n != "road"), "randomisation")
    assert [row["method"] for row in table.rows] == ["Region", "Elsewhere"]
    for row, cam_map in zip(table.rows, (REGION_MAP, ELSEWHERE_MAP)):
        maps = np.repeat(cam_map[np.newaxis], len(images), axis=0)
        # A fixed map ignores the model: the randomised model's maps are the same ones.
        assert row["randomisation"] == 1.0
        for name in table.metrics[:-1]:
            if name in metrics.BOX_METRICS:
                expected = metrics.get_metric(name)(maps, boxes)
            elif name in metrics.MAP_METRICS:
                expected = metrics.get_metric(name)(maps)
            else:
                expected = metrics.get_metric(name)(
                    model, images, maps, labels, batch_size=3, **FAST.get(name, {})
                )
            assert row[name] == expected.mean, name
            np.testing.assert_array_equal(
                table.results[row["method"]][name].per_image, expected.per_image
            )
        assert row["error"] is None

    # By hand: the region map keeps exactly what the model reads, the other one removes it.
    scores = np.array([sigmoid(GAIN * b + BIAS) for b in BRIGHTNESS])
    region_row, elsewhere_row = table.rows
    assert region_row["average_drop"] == pytest.approx(0.0, abs=1e-4)
    assert region_row["box_iou"] == 1.0 and region_row["pointing_game"] == 1.0
    assert elsewhere_row["average_drop"] == pytest.approx(
        np.mean(100 * (scores - sigmoid(BIAS)) / scores), abs=1e-3
    )
    assert elsewhere_row["pointing_game"] == 0.0
    assert region_row["deletion"] < elsewhere_row["deletion"]
    assert region_row["insertion"] > elsewhere_row["insertion"]


def test_methods_get_the_labels_in_chunks_after_a_warm_up_call_per_chunk_size(model):
    region = fake_method(REGION_MAP)
    labels = np.array([1, 0, 1, 1], np.int32)

    evaluate(model, constant_images(), labels, methods=region, metrics="average_drop",
             batch_size=3)

    (cam,) = region.instances
    # Untimed: the two chunk sizes of the timed pass (1 and 3); timed: the chunks 3 + 1.
    assert cam.calls == [(1, [1]), (3, [1, 0, 1]), (3, [1, 0, 1]), (1, [1])]


def test_every_method_is_warmed_up_before_any_is_timed(model, monkeypatch):
    region = fake_method(REGION_MAP, "Region")
    elsewhere = fake_method(ELSEWHERE_MAP, "Elsewhere")
    timed_maps, calls_when_timed = evaluation._timed_maps, []

    def spy(cam, *args):
        calls_when_timed.append([len(c.calls) for c in (*region.instances, *elsewhere.instances)])
        return timed_maps(cam, *args)

    monkeypatch.setattr(evaluation, "_timed_maps", spy)
    table = evaluate(model, constant_images(), np.array([1, 0, 1, 1]),
                     methods=(region, elsewhere), metrics="average_drop")
    # When the first method is timed, both have had their warm-up call, neither a timed one.
    assert calls_when_timed == [[1, 1], [2, 1]]
    assert "timed after every method was warmed up" in table.to_report()


@pytest.mark.parametrize(
    "as_labels",
    [
        lambda labels: tf.constant(labels, tf.int64),
        lambda labels: tf.Variable(labels),
        lambda labels: tf.constant(labels, tf.uint8),
        lambda labels: labels.astype(np.uint16),
        lambda labels: labels[:, np.newaxis],  # a column, e.g. CIFAR-10 labels
        lambda labels: tuple(np.int8(label) for label in labels),
        lambda labels: pytest.importorskip("pandas").Series(labels),
    ],
    ids=["tensor-int64", "variable", "tensor-uint8", "uint16", "column", "numpy-scalars",
         "pandas"],
)
def test_labels_of_any_integer_array_type(model, as_labels):
    region = fake_method(REGION_MAP)
    labels = np.array([1, 0, 1, 1], np.int32)
    images = tf.constant(constant_images())  # a tf.data batch: tensor images and labels
    evaluate(model, images, as_labels(labels), methods=region, metrics="average_drop")
    assert region.instances[0].calls == [(4, [1, 0, 1, 1])] * 2  # warm-up, then timed


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (np.array([1.0, 0.0, 1.0, 1.0]), TypeError, r"`labels` must hold integer.*float64"),
        (tf.constant([True, False, True, True]), TypeError, r"`labels`.*booleans"),
        (tf.constant([1, 0]), ValueError, r"`labels`.*shape \(4,\); received shape \(2,\)"),
        (np.eye(2, dtype=int)[[1, 0, 1, 1]], ValueError, r"one-hot.*np.argmax"),
        ("1011", TypeError, r"`labels` must be one integer class index per image"),
    ],
)
def test_labels_that_are_not_class_indices_are_refused(model, labels, error, match):
    with pytest.raises(error, match=match):
        evaluate(model, constant_images(), labels, methods="gradcam", metrics="average_drop")


def test_without_labels_every_image_is_explained_for_its_top_1_class(model):
    images = constant_images(np.array([1.0, 0.2, 0.9, 0.1]))  # top-1 classes 1, 0, 1, 0
    region = fake_method(REGION_MAP)
    maps = np.repeat(REGION_MAP[np.newaxis], 4, axis=0)

    table = evaluate(model, images, methods=region, metrics=("remove_top_fraction",))

    assert {targets for _, targets in region.instances[0].calls} == {None}
    top_1 = metrics.remove_top_fraction(model, images, maps, targets=[1, 0, 1, 0])
    assert table.rows[0]["remove_top_fraction"] == top_1.mean
    assert top_1.mean != pytest.approx(
        metrics.remove_top_fraction(model, images, maps, targets=1).mean
    )


def test_real_methods_give_one_row_each_and_a_markdown_table():
    tiny = gap_model(size=16, classes=4)
    images = np.random.default_rng(0).uniform(0, 1, (5, 16, 16, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0], np.int32)
    boxes = np.tile([2, 2, 10, 12], (5, 1)).astype(np.int32)

    table = evaluate(tiny, images, labels, boxes, methods=("gradcam", "gradcam++"),
                     metrics=("average_drop", "deletion", "box_iou"),
                     metric_options={"deletion": {"steps": 4}})

    assert [row["method"] for row in table.rows] == ["gradcam", "gradcam++"]
    assert all(row["seconds_per_image"] > 0 for row in table.rows)
    for row, method in zip(table.rows, (GradCAM, GradCAMPlusPlus)):
        maps = method(tiny)(images, labels)
        assert row["average_drop"] == pytest.approx(
            metrics.average_drop(tiny, images, maps, labels).mean, abs=1e-6
        )
        assert row["box_iou"] == pytest.approx(metrics.box_iou(maps, boxes).mean, abs=1e-6)
    lines = table.to_markdown().splitlines()
    assert lines[0] == (
        "| method | average_drop (%) ↓ | deletion (0-1) ↓ | box_iou (0-1) ↑ | s/image |"
    )
    assert lines[1] == "| :--- | ---: | ---: | ---: | ---: |"
    assert len(lines) == 4
    assert lines[2].startswith("| Grad-CAM | ") and lines[3].startswith("| Grad-CAM++ | ")
    assert str(table) == table.to_markdown()
    assert json.loads(table.to_json()) == table.to_dict()
    assert table.to_dict()["metrics"]["deletion"] == {"unit": "fraction", "higher_is_better": False}


def test_metric_metadata_comes_from_the_metric_results(model):
    table = evaluate(model, constant_images(), methods=fake_method(REGION_MAP),
                     metrics=("increase_in_confidence", "remove_top_fraction"))
    results = table.results["Fake"]
    assert table.units == {name: result.unit for name, result in results.items()}
    assert table.higher_is_better == {
        name: result.higher_is_better for name, result in results.items()
    }
    assert table.to_markdown().splitlines()[0] == (
        "| method | increase_in_confidence (%) ↑ | remove_top_fraction (ratio) ↓ | s/image |"
    )


def test_registered_names_and_classes_name_the_rows(model, monkeypatch):
    region = fake_method(REGION_MAP, "RegionCAM")
    monkeypatch.setitem(METHODS, "region", region)
    table = evaluate(model, constant_images(), methods=("Region", fake_method(ELSEWHERE_MAP)),
                     metrics="average_drop")
    assert [row["method"] for row in table.rows] == ["region", "Fake"]
    assert [row["display_name"] for row in table.rows] == ["RegionCAM", "Fake"]


def test_box_metrics_are_included_only_with_boxes(model):
    images = constant_images()
    without = evaluate(model, images, methods=fake_method(REGION_MAP), metric_options=FAST)
    assert without.metrics == (
        *(n for n in metrics.METRICS if n not in (*metrics.BOX_METRICS, "road")),
        "randomisation",
    )
    with pytest.raises(ValueError, match=r"\['pointing_game'\].*no `boxes` were given"):
        evaluate(model, images, methods=fake_method(REGION_MAP),
                 metrics=("average_drop", "pointing_game"))


# ----------------------------------------------------------------------------- timing
def test_seconds_per_image_time_the_maps_but_not_the_warm_up(model):
    slow_start = fake_method(REGION_MAP, "SlowStart", first_call_seconds=1.0)
    steady = fake_method(REGION_MAP, "Steady", call_seconds=0.05)

    table = evaluate(model, constant_images(), methods=(slow_start, steady),
                     metrics="average_drop", batch_size=2)

    slow_start_row, steady_row = table.rows
    assert slow_start_row["seconds_per_image"] < 0.25  # the 1 s warm-up would make it >= 0.25
    assert steady_row["seconds_per_image"] >= 2 * 0.05 / 4  # two timed calls of 4 images


# ----------------------------------------------------------------------------- failures
def test_a_method_that_cannot_run_gets_an_error_row(model, capsys):
    failing = fake_method(REGION_MAP, "NeedsGap", fail=ValueError("needs a GAP -> Dense head"))
    wrong_size = fake_method(np.zeros((SIZE - 1, SIZE - 1), np.float32), "WrongSize")

    table = evaluate(model, constant_images(), methods=(failing, fake_method(REGION_MAP),
                                                        wrong_size), metrics="average_drop",
                     verbose=1)

    failed, fine, wrong = table.rows
    assert failed == {"method": "NeedsGap", "display_name": "NeedsGap", "average_drop": None,
                      "seconds_per_image": None, "error": "ValueError: needs a GAP -> Dense head"}
    assert fine["error"] is None and fine["average_drop"] == pytest.approx(0.0, abs=1e-4)
    assert wrong["error"].startswith("ValueError: `maps` must have shape (B, H, W) = (4, 12, 12)")
    assert set(table.results) == {"Fake"}
    lines = table.to_markdown().splitlines()
    assert lines[2] == "| NeedsGap | — | — |"
    assert "- NeedsGap (`NeedsGap`) could not run: ValueError: needs a GAP -> Dense head" in lines
    assert json.loads(table.to_json())["rows"][0]["average_drop"] is None
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "NeedsGap: could not run: ValueError: needs a GAP -> Dense head"
    assert printed[1].startswith("Fake: ") and printed[1].endswith(" s/image for the maps")


def test_cam_on_a_model_without_gap_head_is_an_error_row():
    if "cam" not in METHODS:
        pytest.skip("CAM is not registered")
    model, _, _ = split_model(size=16)
    images = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    table = evaluate(model, images, methods=("gradcam", "cam"), metrics="average_drop")
    assert table.rows[0]["error"] is None
    assert table.rows[1]["error"].startswith("ValueError: ")


def test_when_no_method_runs_the_error_is_raised(model):
    def failing(name: str) -> type[BaseCAM]:
        return fake_method(REGION_MAP, name, fail=ValueError(f"{name} cannot run"))

    with pytest.raises(ValueError, match=r"^A cannot run$"):
        evaluate(model, constant_images(), methods=failing("A"), metrics="average_drop")
    with pytest.raises(ValueError, match=r"None of the methods.*A: ValueError: A cannot run; "
                                         r"B: ValueError: B cannot run"):
        evaluate(model, constant_images(), methods=(failing("A"), failing("B")),
                 metrics="average_drop")


# ------------------------------------------------------------------------------ options
def test_layer_method_options_and_verbose_reach_the_constructors(model):
    first, second = fake_method(REGION_MAP, "First"), fake_method(REGION_MAP, "Second")
    evaluate(model, constant_images(), methods=(first, second), metrics="average_drop",
             layer="shared", method_options={second: {"layer": "own", "verbose": 1}})
    assert (first.instances[0].layer, first.instances[0].verbose) == ("shared", 0)
    assert (second.instances[0].layer, second.instances[0].verbose) == ("own", 1)


# ------------------------------------------------------------------------- raw-score head
RAW_HEIGHT, RAW_WIDTH, RAW_BIAS = 24, 40, -50.0
RAW_BRIGHTNESS = np.array([0.2, 0.7, 0.4])


def raw_score_model() -> keras.Model:
    """GAP -> Dense(1), no activation: score = RAW_BIAS + the sum of the channel means."""
    inputs = keras.Input((RAW_HEIGHT, RAW_WIDTH, 3))
    dense = keras.layers.Dense(1, name="regress")
    outputs = dense(keras.layers.GlobalAveragePooling2D()(inputs))
    dense.set_weights([np.ones((3, 1), np.float32), np.array([RAW_BIAS], np.float32)])
    return keras.Model(inputs, outputs)


def raw_images() -> np.ndarray:
    return np.broadcast_to(
        RAW_BRIGHTNESS[:, None, None, None], (len(RAW_BRIGHTNESS), RAW_HEIGHT, RAW_WIDTH, 3)
    ).astype(np.float32)


def test_on_a_raw_score_head_the_probability_metrics_are_left_out_with_a_warning():
    method = fake_method(np.zeros((RAW_HEIGHT, RAW_WIDTH), np.float32))
    left_out = r"\['average_drop', 'increase_in_confidence', 'remove_top_fraction', " \
        r"'keep_top_fraction'\]"
    with pytest.warns(UserWarning, match=rf"raw scores \(head='linear': Dense 'regress'.*"
                                         rf"{left_out}, are left out.*head='logits'"):
        table = evaluate(raw_score_model(), raw_images(), methods=method, metric_options=FAST)

    assert table.metrics == ("deletion", "insertion", "sparseness", "randomisation")
    assert table.units == {
        "deletion": "score", "insertion": "score", "sparseness": "fraction",
        "randomisation": "correlation",
    }
    # A constant image of brightness b scores RAW_BIAS + 3 b; removing (or inserting, from
    # zeros) a fraction x of its pixels scores RAW_BIAS + 3 b (1 - x) (or + 3 b x): both
    # curves are straight lines, whose area is RAW_BIAS + 3 b / 2.
    expected = RAW_BIAS + 3 * RAW_BRIGHTNESS / 2
    for name in ("deletion", "insertion"):
        np.testing.assert_allclose(table.results["Fake"][name].per_image, expected, rtol=1e-5)
    # ROAD imputes a constant image by the same constant (plus noise of std 0.01): the raw
    # score barely moves in either order, so the combined score is near 0.
    road = evaluate(raw_score_model(), raw_images(), methods=method, metrics="road")
    np.testing.assert_allclose(road.results["Fake"]["road"].per_image, 0.0, atol=0.01)
    assert road.units == {"road": "score"}
    assert table.to_markdown().splitlines()[0] == (
        "| method | deletion (score) ↓ | insertion (score) ↑ | "
        "sparseness (0-1) ↑ | randomisation (ρ) ↓ | s/image |"
    )


def test_a_probability_metric_named_for_a_raw_score_head_is_refused_before_any_method_runs():
    method = fake_method(np.zeros((RAW_HEIGHT, RAW_WIDTH), np.float32))
    message = (
        r"`keep_top_fraction` is defined for class probabilities.*head='linear': Dense "
        r"'regress'.*`head='logits'`.*use `deletion` or `insertion`"
    )
    with pytest.raises(ValueError, match=message):
        evaluate(raw_score_model(), raw_images(), methods=method,
                 metrics=("deletion", "keep_top_fraction"))
    assert method.instances == []


def test_a_raw_score_unit_stated_as_a_binary_logit_keeps_every_metric():
    method = fake_method(np.ones((RAW_HEIGHT, RAW_WIDTH), np.float32))
    table = evaluate(raw_score_model(), raw_images(), methods=method, metric_options=FAST,
                     head="logits")
    assert table.metrics == (
        *(n for n in metrics.METRICS if n not in (*metrics.BOX_METRICS, "road")),
        "randomisation",
    )
    # An all-ones mask leaves each image as it is: no drop.
    assert table.rows[0]["average_drop"] == 0.0


class _RecordedGradCAM(GradCAM):
    """Grad-CAM that keeps the maps of its latest call (evaluate's table holds no maps)."""

    maps: ClassVar[list[np.ndarray]] = []

    def __call__(self, images, targets=None, **kwargs):
        maps = super().__call__(images, targets, **kwargs)
        type(self).maps.append(maps)
        return maps


@pytest.mark.parametrize(("layer_call", "flipped"), [(0, True), (1, False)])
def test_layer_call_chooses_the_call_of_a_tta_model(layer_call, flipped):
    model = tta_model()
    images = np.random.default_rng(1).uniform(0, 1, (3, 24, 40, 3)).astype("float32")
    labels = np.array([0, 2, 1])
    with pytest.raises(ValueError, match=rf"called 2 times.*{TTA_CALLS}.*`layer_call=`"):
        evaluate(model, images, labels, methods=_RecordedGradCAM, metrics="average_drop")
    _RecordedGradCAM.maps.clear()
    table = evaluate(model, images, labels, methods=_RecordedGradCAM, metrics="average_drop",
                     layer_call=layer_call)
    # The map of the chosen branch, by hand (the flip's map flipped back onto the image).
    expected = tta_gradcam_reference(model, images, labels, flipped)
    np.testing.assert_allclose(_RecordedGradCAM.maps[-1], expected, atol=1e-4)
    assert np.abs(_RecordedGradCAM.maps[-1] - tta_gradcam_reference(
        model, images, labels, not flipped)).max() > 0.1
    # The metric scored those maps.
    drop = metrics.average_drop(model, images, _RecordedGradCAM.maps[-1], labels).mean
    assert table.rows[0]["average_drop"] == pytest.approx(drop)


# -------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"methods": "nope"}, ValueError, r"Unknown CAM method 'nope'.*'gradcam'"),
        ({"methods": ()}, ValueError, r"at least one method.*'gradcam\+\+'"),
        ({"methods": ("gradcam", "Grad-CAM")}, ValueError, r"'gradcam' more than once"),
        ({"metrics": "nope"}, ValueError, r"Unknown metric 'nope'.*average_drop"),
        ({"metrics": ("deletion", "deletion")}, ValueError, r"more than once"),
        ({"method_options": {"scorecam": {}}}, ValueError, r"'scorecam'.*not among"),
        ({"method_options": {"gradcam": 3}}, TypeError, r"method_options\['gradcam'\]"),
        ({"metric_options": {"insertion": {}}}, ValueError, r"'insertion'.*not among"),
        ({"labels": [1, 0]}, ValueError, r"`labels`.*shape \(4,\)"),
        ({"labels": [1, 0, 2, 1]}, ValueError, r"Invalid `labels`.*class index 2"),
        ({"boxes": np.zeros((4, 3), np.int32)}, ValueError, r"`boxes` must have shape"),
        ({"batch_size": 0}, ValueError, r"`batch_size` must be at least 1"),
        ({"verbose": 3}, ValueError, r"`verbose` must be 0 or 1"),
    ],
)
def test_bad_arguments_are_rejected_before_any_method_runs(model, kwargs, error, match):
    arguments = {"methods": "gradcam", "metrics": "deletion", **kwargs}
    with pytest.raises(error, match=match):
        evaluate(model, constant_images(), **arguments)


def test_a_table_without_results_for_a_metric_says_so():
    table = EvaluationTable(("deletion",), [], {}, 0)
    with pytest.raises(ValueError, match="No method .* has a result for the metric 'deletion'"):
        table.to_markdown()


def test_every_metric_the_report_can_show_says_what_it_measures():
    from keras_cam import sanity

    assert set(evaluation.METRIC_DESCRIPTIONS) == {*metrics.METRICS, *sanity.SANITY_METRICS}


# ------------------------------------------------------------------- streamed = in memory
TALL, WIDE = 24, 40


def wide_model() -> keras.Model:
    """A 24x40 conv -> conv -> GAP -> Dense(3, softmax) model (random weights, seeded)."""
    inputs = keras.Input((TALL, WIDE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="wide")


def wide_data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 1, (n, TALL, WIDE, 3)).astype(np.float32)
    corner = np.stack([rng.integers(0, WIDE - 12, n), rng.integers(0, TALL - 8, n)], axis=1)
    return images, rng.integers(0, 3, n), np.concatenate([corner, corner + [12, 8]], axis=1)


def _without_times(report: str) -> list[str]:
    """The report's lines without the timing note and the `s/image` cells (last column)."""
    return [
        line.rsplit("|", 2)[0] if line.startswith("|") else line
        for line in report.splitlines()
        if not line.startswith(("- time:", "- s/image:"))
    ]


def test_a_streamed_report_says_what_the_in_memory_one_says():
    """Same images in memory and as a dataset: every field of the table and every line of
    `to_report()` and `summary()` agree, but the timings; the accuracy is the share of
    top-1 predictions (computed here with `model.predict`) equal to the labels."""
    model = wide_model()
    images, labels, boxes = wide_data(10)
    options = dict(
        methods=("gradcam", "gradcam++"), batch_size=4,
        metrics=("average_drop", "deletion", "pointing_game", "sparseness", "randomisation"),
        metric_options={"deletion": {"steps": 5}},
    )
    held = evaluate(model, images, labels, boxes, **options)
    streamed = evaluate(
        model, tf.data.Dataset.from_tensor_slices((images, labels, boxes)).batch(3), **options
    )
    accuracy = np.mean(np.argmax(model.predict(images, verbose=0), axis=-1) == labels)
    assert 0 < accuracy < 1
    for table in (held, streamed):
        assert (table.model_name, table.num_images) == ("wide", 10)
        assert table.accuracy == pytest.approx(accuracy)
        assert table.explained == "each image's label (its true class)"
        assert [row["method"] for row in table.baseline_rows] == list(evaluation.BASELINES)
    assert (held.timing, streamed.timing) == (evaluation.TIMING_NOTE,
                                             evaluation.STREAM_TIMING_NOTE)
    for held_row, streamed_row in zip(
        held.rows + held.baseline_rows, streamed.rows + streamed.baseline_rows, strict=True
    ):
        assert held_row["method"] == streamed_row["method"]
        for metric in held.metrics:
            np.testing.assert_allclose(streamed_row[metric], held_row[metric], rtol=1e-5,
                                       atol=1e-6, err_msg=f"{held_row['method']} {metric}")
    assert _without_times(streamed.to_report("m.keras")) == _without_times(
        held.to_report("m.keras"))
    assert f"- time: {evaluation.STREAM_TIMING_NOTE}" in streamed.to_report()
    assert streamed.summary() == held.summary()
    streamed_dict, held_dict = streamed.to_dict(), held.to_dict()
    assert {k: v for k, v in streamed_dict.items() if k != "rows"} == {
        k: v for k, v in held_dict.items() if k != "rows"}


def test_a_streamed_dataset_without_labels_explains_the_top_1_class_and_measures_no_accuracy():
    model = wide_model()
    images, _, _ = wide_data(5)
    table = evaluate(model, tf.data.Dataset.from_tensor_slices(images).batch(2),
                     methods="gradcam", metrics="sparseness", baselines=False)
    assert (table.accuracy, table.explained) == (None, "each image's top-1 predicted class")
    assert table.baseline_rows == [] and "not measured (no labels)" in table.to_report()


def test_a_streamed_evaluation_times_every_batch_but_the_first():
    """A Grad-CAM whose first call sleeps 2 s (like a slow trace): with the first of three
    batches untimed, the time per image stays far below the 2 s / 9 images it would add."""

    class SlowStart(GradCAM):
        calls = 0

        def explain(self, *args, **kwargs):  # what `explain_dataset` calls per batch
            type(self).calls += 1
            if type(self).calls == 1:
                time.sleep(2.0)
            return super().explain(*args, **kwargs)

    model = wide_model()
    images, _, _ = wide_data(9)
    table = evaluate(model, tf.data.Dataset.from_tensor_slices(images).batch(3), methods=SlowStart,
                     metrics="sparseness", batch_size=3, baselines=False)
    assert SlowStart.calls == 3
    assert table.rows[0]["seconds_per_image"] < 2.0 / 9 / 2


def test_a_streamed_evaluation_builds_the_random_baseline_once(monkeypatch):
    from keras_cam.methods import RandomCAM

    built = []

    class CountedRandomCAM(RandomCAM):
        def __init__(self, model, *args, **kwargs):
            built.append(model)
            super().__init__(model, *args, **kwargs)

    monkeypatch.setitem(METHODS, "randomcam", CountedRandomCAM)
    model = wide_model()
    images, _, _ = wide_data(9)
    table = evaluate(model, tf.data.Dataset.from_tensor_slices(images).batch(3),
                     methods="gradcam", metrics="sparseness", batch_size=3)
    assert built == [model] and table.num_images == 9
    held = evaluate(model, images, methods="gradcam", metrics="sparseness", batch_size=3)
    assert table.baseline_rows[0]["sparseness"] == pytest.approx(
        held.baseline_rows[0]["sparseness"], rel=1e-5)
