"""Attacks on what landed with the fused Score-CAM family engine (perturbation.py): non-finite
model outputs and settings changed between calls must be refused, never turned into maps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc

HEIGHT, WIDTH = 24, 40
CHANNELS = 5


class _NanWhere(layers.Layer):
    """Passes the model's scores through, NaN for the inputs `rule` flags (per image)."""

    def __init__(self, rule: str, **kwargs):
        super().__init__(**kwargs)
        self.rule = rule

    def call(self, inputs):
        images, scores = inputs
        if self.rule == "dark":  # masked copies: the mean drops below the originals'
            bad = tf.reduce_mean(images, axis=[1, 2, 3]) < 0.45
        else:  # "marked": images whose top-left pixel is exactly 1
            bad = images[:, 0, 0, 0] == 1.0
        return tf.where(bad[:, tf.newaxis], float("nan"), scores)

    def get_config(self):
        return {**super().get_config(), "rule": self.rule}


def _model(rule: str | None = None) -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="last")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    if rule is not None:
        outputs = _NanWhere(rule)([inputs, outputs])
    return keras.Model(inputs, outputs)


def _images(count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 1.0, (count, HEIGHT, WIDTH, 3)).astype(
        "float32"
    ) * np.float32(0.99)


PERTURBATION_METHODS = [
    (kc.ScoreCAM, {}),
    (kc.ScoreCAM, {"weighting": "softmax"}),
    (kc.FasterScoreCAM, {}),
    (kc.SSCAM, {"n_samples": 2}),
    (kc.ISCAM, {"n_steps": 2}),
]


@pytest.mark.parametrize(("method", "options"), PERTURBATION_METHODS)
def test_nan_scores_of_masked_inputs_are_refused(method, options):
    # The originals score finitely; masked copies (darker on average) score NaN.
    model, images = _model("dark"), _images()
    assert np.isfinite(model.predict(images, verbose=0)).all()
    cam = method(model, "last", verbose=0, batch_size=3, **options)
    with pytest.raises(ValueError, match="non-finite values while explaining image 0"):
        cam(images)


@pytest.mark.parametrize(("method", "options"), PERTURBATION_METHODS)
def test_model_nan_for_one_image_only_is_refused(method, options):
    # (Ablation-CAM refuses this model: its output reads the input around the layer.)
    model, images = _model("marked"), _images(3)
    images[1, 0, 0, 0] = 1.0
    scores = model.predict(images, verbose=0)
    assert np.isnan(scores[1]).all() and np.isfinite(scores[[0, 2]]).all()
    cam = method(model, "last", verbose=0, batch_size=2, **options)
    with pytest.raises(ValueError, match="non-finite values while explaining image 1"):
        cam(images)
    with pytest.raises(ValueError, match="non-finite values while explaining image 1"):
        cam(images, targets=[0, 1, 2])  # a class given: the masked scores decide


@pytest.mark.parametrize(
    ("method", "options"), [*PERTURBATION_METHODS, (kc.AblationCAM, {})]
)
def test_nan_weights_are_refused(method, options):
    model = _model()
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    bias[0] = np.nan  # every output NaN (the softmax mixes the classes)
    dense.set_weights([kernel, bias])
    cam = method(model, "last", verbose=0, **options)
    with pytest.raises(ValueError, match="non-finite values while explaining image 0"):
        cam(_images())


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("max_channels", 0),
        ("max_channels", -1),
        ("max_channels", CHANNELS + 1),
        ("max_channels", True),
        ("max_channels", 2.5),
        ("batch_size", 0),
        ("batch_size", -2),
        ("batch_size", 1.5),
        ("batch_size", True),
    ],
)
def test_settings_changed_to_invalid_values_are_refused(argument, value):
    # Settings are read at each call (tests/test_score.py), so they are checked at each call.
    cam = kc.ScoreCAM(_model(), "last", verbose=0, max_channels=3)
    images = _images()
    cam(images)
    setattr(cam, argument, value)
    with pytest.raises(ValueError, match=f"`{argument}` must be an int"):
        cam(images)


class _Picky(kc.GradCAM):
    """Grad-CAM that refuses any batch holding an image whose top-left value is 7."""

    display_name = "Picky"

    def explain_batch(self, images, targets, others=()):
        if np.any(np.asarray(images)[:, 0, 0, 0] == 7.0):
            raise ValueError("Picky refuses the marked image.")
        return super().explain_batch(images, targets, others)


def _rows(table):
    return {row["method"]: row for row in table.rows}


@pytest.mark.parametrize("marked", [[3], [0, 1, 2, 3, 4]])
def test_streamed_evaluate_keeps_a_method_failing_on_some_images_as_an_error_row(marked):
    # The in-memory evaluate is the reference: the failing method gets an error row, the
    # others are evaluated. The stream used to raise the method's error out of evaluate.
    model, images = _model(), _images(5)
    images[marked, 0, 0, 0] = 7.0
    labels = np.array([0, 1, 2, 0, 1])
    options = {"metrics": ["average_drop", "sparseness"], "verbose": 0, "batch_size": 2}
    memory = kc.evaluate(model, images, labels, methods=[kc.GradCAM, _Picky], **options)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    streamed = kc.evaluate(model, dataset, methods=[kc.GradCAM, _Picky], **options)
    expected, got = _rows(memory), _rows(streamed)
    assert list(got) == list(expected) == ["gradcam", "_Picky"]
    assert got["_Picky"]["error"] == expected["_Picky"]["error"]
    assert "refuses the marked image" in got["_Picky"]["error"]
    assert got["_Picky"]["average_drop"] is None and got["_Picky"]["sparseness"] is None
    assert got["gradcam"]["error"] is None
    for metric in ("average_drop", "sparseness"):
        assert abs(got["gradcam"][metric] - expected["gradcam"][metric]) < 1e-5
    assert streamed.accuracy == memory.accuracy


def test_streamed_evaluate_raises_when_its_only_method_fails_like_in_memory():
    model, images = _model(), _images(4)
    images[2, 0, 0, 0] = 7.0
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    for source in (images, dataset):
        with pytest.raises(ValueError, match="refuses the marked image"):
            kc.evaluate(model, source, methods=[_Picky], metrics=["sparseness"], verbose=0)


def test_labels_csv_with_a_header_row_says_how_to_keep_it(tmp_path):
    # A header is the usual first row of a CSV: the refusal names it and the fix ('#').
    from keras_cam import io

    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"file,label\r\na.png,1\r\n")
    with pytest.raises(ValueError, match=r"line 1: .*header row.*'#'"):
        io.read_labels(labels, tmp_path)
    labels.write_bytes(b"# file,label\r\na.png,1\r\na.png,1\r\n")
    rows = io.read_labels(labels, tmp_path)
    assert [(path.name, label, box) for path, label, box in rows] == [("a.png", 1, None)] * 2


def test_a_method_registered_at_run_time_under_any_spelling_is_found(monkeypatch):
    # `kc.METHODS` is the registry every tool reads; a key as the user spells it ("MyCAM")
    # used to be listed as known by get_method's error while being refused.
    class MyCAM(kc.GradCAM):
        display_name = "My CAM"

    monkeypatch.setitem(kc.METHODS, "MyCAM", MyCAM)
    for spelling in ("MyCAM", "mycam", "my-cam", "My CAM"):
        assert kc.get_method(spelling) is MyCAM
    model, images = _model(), _images(3)
    expected = kc.GradCAM(model, "last")(images)
    batches = list(kc.explain_dataset(["MyCAM"], images, model, batch_size=2, verbose=0))
    got = np.concatenate([batch.maps["MyCAM"] for batch in batches])
    assert np.abs(got - expected).max() < 1e-5
    table = kc.evaluate(model, images, methods=["mycam"], metrics=["sparseness"], verbose=0)
    assert [row["method"] for row in table.rows] == ["MyCAM"]


# ------------------------------------------------------------ Score-CAM vs a slow reference
def _slow_score_cam(model, features_of, image, score_of, others=None, channels_axis=-1,
                    kept=None, coefficients=(1.0,), weighting="reference"):
    """Wang et al. 2020 as keras_cam documents it, one eager masked pass per channel: each
    channel min-max normalized to a mask (the layer is at the input's resolution here, so
    no resize), `s_k` the mean score over the path `coefficients` (IS-CAM; 1 for Score-CAM),
    `w_k = s_k` over the non-constant kept channels ("reference") or the softmax of `s_k`
    over the kept ones with constant channels at the blank input's score ("softmax");
    map = ReLU(sum_k w_k A^k), min-max normalized."""

    def run(x):
        batch = x[np.newaxis].astype("float32")
        return model(batch if others is None else [batch, others[np.newaxis]], training=False)

    features = np.asarray(features_of(image[np.newaxis] if others is None
                                      else [image[np.newaxis], others[np.newaxis]]))[0]
    features = np.moveaxis(features, channels_axis, -1)
    count = features.shape[-1]
    kept = range(count) if kept is None else kept
    scores = np.full(count, -np.inf if weighting == "softmax" else 0.0)
    blank = float(score_of(run(np.zeros_like(image))))
    for k in kept:
        channel = features[..., k]
        if channel.max() == channel.min():
            scores[k] = blank if weighting == "softmax" else 0.0
            continue
        mask = (channel - channel.min()) / (channel.max() - channel.min())
        mask = np.expand_dims(mask, channels_axis)
        scores[k] = np.mean([float(score_of(run(image * c * mask))) for c in coefficients])
    if weighting == "softmax":
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
    else:
        weights = scores
    raw = np.maximum((features * weights).sum(-1), 0.0)
    return (raw - raw.min()) / (raw.max() - raw.min()) if raw.max() > raw.min() else raw * 0


def _with_features(model):
    return keras.Model(model.inputs, model.get_layer("last").output)


def test_score_cam_family_matches_the_slow_reference_on_non_square_batches_over_chunks():
    model = _model()
    images = _images(3, seed=4)
    features_of = _with_features(model)
    classes = [2, 0, 1]
    variance = np.asarray(features_of(images)).var(axis=(1, 2))
    cases = [
        (kc.ScoreCAM(model, "last", batch_size=2, verbose=0), {}),
        (kc.ScoreCAM(model, "last", batch_size=4, weighting="softmax", verbose=0),
         {"weighting": "softmax"}),
        (kc.ISCAM(model, "last", n_steps=3, batch_size=5, verbose=0),
         {"coefficients": np.cumsum(np.arange(1, 4) / 3)}),
        (kc.ScoreCAM(model, "last", max_channels=2, batch_size=3, verbose=0), {"top": 2}),
    ]
    for cam, options in cases:
        top = options.pop("top", None)
        got = cam(images, targets=classes)
        for i, (image, cls) in enumerate(zip(images, classes)):
            kept = None if top is None else list(np.argsort(-variance[i], kind="stable")[:top])
            want = _slow_score_cam(model, features_of, image, lambda p, c=cls: p[0, c],
                                   kept=kept, **options)
            assert np.abs(got[i] - want).max() < 1e-5, type(cam).__name__


def test_score_cam_matches_the_slow_reference_with_two_inputs_and_channels_first():
    images, vectors = _images(3, seed=5), np.random.default_rng(5).normal(size=(3, 4))
    pixels = keras.Input((HEIGHT, WIDTH, 3))
    vector = keras.Input((4,))
    x = layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="last")(pixels)
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(x), vector])
    two = keras.Model([pixels, vector], layers.Dense(3, activation="softmax")(x))
    got = kc.ScoreCAM(two, "last", input=0, batch_size=2, verbose=0)(
        [images, vectors.astype("float32")], targets=[0, 1, 2]
    )
    for i in range(3):
        want = _slow_score_cam(two, _with_features(two), images[i], lambda p, c=i: p[0, c],
                               others=vectors[i].astype("float32"))
        assert np.abs(got[i] - want).max() < 1e-5

    first = keras.Input((3, HEIGHT, WIDTH))
    y = layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="last",
                      data_format="channels_first")(first)
    y = layers.GlobalAveragePooling2D(data_format="channels_first")(y)
    channels_first = keras.Model(first, layers.Dense(3, activation="softmax")(y))
    transposed = np.ascontiguousarray(np.moveaxis(images, -1, 1))
    got = kc.ScoreCAM(channels_first, "last", batch_size=4, verbose=0)(transposed, [2, 2, 0])
    for i, cls in enumerate([2, 2, 0]):
        want = _slow_score_cam(channels_first, _with_features(channels_first), transposed[i],
                               lambda p, c=cls: p[0, c], channels_axis=0)
        assert np.abs(got[i] - want).max() < 1e-5


def test_score_cam_segmentation_masks_per_image_across_chunks_match_the_slow_reference():
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="last")(inputs)
    segmenter = keras.Model(inputs, layers.Conv2D(3, 1, activation="softmax")(x))
    images = _images(3, seed=6)
    regions = np.random.default_rng(6).uniform(size=(3, HEIGHT, WIDTH)) > 0.7
    got = kc.ScoreCAM(segmenter, "last", batch_size=2, verbose=0)(
        images, targets=kc.targets.SegmentationTarget(1, regions)
    )
    for i in range(3):
        want = _slow_score_cam(segmenter, _with_features(segmenter), images[i],
                               lambda p, r=regions[i]: np.sum(np.asarray(p)[0, ..., 1] * r))
        assert np.abs(got[i] - want).max() < 1e-5



def test_a_verdict_without_a_ranked_metric_ranks_nothing():
    # Sparseness alone ranks nothing: the summary used to list "rank 1 ... nan" for every row.
    from keras_cam.evaluation import EvaluationTable
    from keras_cam.metrics import MetricResult
    from keras_cam.verdict import verdict

    def row(name, value):
        return {"method": name, "display_name": name.title(), "sparseness": value,
                "seconds_per_image": 0.0, "error": None}

    def result(value):
        return {"sparseness": MetricResult("sparseness", np.array([value]), "fraction", True)}

    table = EvaluationTable(
        ("sparseness",), [row("gradcam", 0.8), row("scorecam", 0.3)],
        {"gradcam": result(0.8), "scorecam": result(0.3)}, 1,
        baseline_rows=[row("random", 0.1)], baseline_results={"random": result(0.1)},
    )
    found = verdict(table)
    assert found.ranking == [] and found.recommended is None
    assert "nan" not in found.text and "| rank |" not in found.text
    assert "No ranking" in found.text and "deletion" in found.text


@pytest.mark.parametrize("value", [0, -1, CHANNELS + 1, True, 2.5])
@pytest.mark.parametrize("method", [kc.ScoreCAM, kc.AblationCAM, kc.ISCAM])
def test_bad_max_channels_refused_at_construction(method, value):
    with pytest.raises(ValueError, match=rf"`max_channels` must be an int from 1 to {CHANNELS}"):
        method(_model(), "last", max_channels=value, verbose=0)


@pytest.mark.parametrize("method", [kc.ScoreCAM, kc.AblationCAM, kc.SSCAM])
def test_an_infinite_pixel_is_refused_naming_the_image(method):
    images = _images(3)
    images[2, 5, 7, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite values.*image 2"):
        method(_model(), "last", verbose=0)(images)
