"""Tests of Score-CAM and Faster Score-CAM (keras_cam/methods/score.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cam.methods import METHODS, FasterScoreCAM, ScoreCAM, get_method
from keras_cam.methods import perturbation
from keras_cam.methods.score import channel_weights

SIZE = 16
CHANNELS = 12
ZERO_CHANNELS = (0, 1, 2)  # all-zero after the ReLU
CONSTANT_CHANNEL = 3  # constant 0.5 everywhere


def _small_model(
    head: str = "softmax",
    num_classes: int = 4,
    constant: bool = True,
    size: tuple[int, int] = (SIZE, SIZE),
) -> keras.Model:
    """conv -> conv "feat" (12 channels, four of them engineered constant) -> GAP -> Dense."""
    inputs = keras.Input((*size, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="feat")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    units = 1 if head == "sigmoid" else num_classes
    outputs = keras.layers.Dense(units, activation=head)(x)
    model = keras.Model(inputs, outputs)
    if constant:
        feat = model.get_layer("feat")
        kernel, bias = (w.numpy() for w in feat.weights)
        kernel[..., list(ZERO_CHANNELS) + [CONSTANT_CHANNEL]] = 0.0
        bias[list(ZERO_CHANNELS)] = 0.0
        bias[CONSTANT_CHANNEL] = 0.5
        feat.set_weights([kernel, bias])
    return model


def _images(n: int, seed: int = 0, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, *size, 3)).astype("float32")


def _probabilities(model: keras.Model, image: np.ndarray) -> np.ndarray:
    """Class probabilities: a single sigmoid unit p gives [1 - p, p]; logits get a softmax."""
    output = model(image[np.newaxis], training=False).numpy()[0].astype(np.float64)
    if output.shape == (1,):
        return np.array([1.0 - output[0], output[0]])
    if model.layers[-1].activation is keras.activations.linear:
        return np.exp(output - output.max()) / np.exp(output - output.max()).sum()
    return output


def _slow_score_cam(
    model: keras.Model,
    image: np.ndarray,
    target: int | None,
    weighting: str,
    channels: list[int] | None = None,
) -> np.ndarray:
    """The formula, one channel and one forward pass at a time (no skipping, no batching)."""
    features = keras.Model(model.inputs[0], model.get_layer("feat").output)(image[np.newaxis])
    features = features.numpy()[0]
    if target is None:
        target = int(np.argmax(_probabilities(model, image)))
    channels = list(range(features.shape[-1])) if channels is None else channels
    baseline = _probabilities(model, np.zeros_like(image))[target]
    scores = {}
    for k in channels:
        up = tf.image.resize(features[np.newaxis, :, :, k, np.newaxis], image.shape[:2])
        up = up.numpy()[0, :, :, 0]
        if up.max() == up.min():  # no mask: the authors skip it; the paper's mask is 0
            scores[k] = None if weighting == "reference" else baseline
            continue
        mask = (up - up.min()) / (up.max() - up.min())
        scores[k] = _probabilities(model, image * mask[..., np.newaxis])[target]
    if weighting == "reference":
        weights = {k: s for k, s in scores.items() if s is not None}
    else:
        exp = {k: np.exp(s - max(scores.values())) for k, s in scores.items()}
        weights = {k: e / sum(exp.values()) for k, e in exp.items()}
    total = np.zeros(features.shape[:2])
    for k, weight in weights.items():
        total += weight * features[:, :, k]
    return np.maximum(total, 0.0)


def _feature_maps(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return keras.Model(model.inputs[0], model.get_layer("feat").output)(images).numpy()


# ------------------------------------------------------------------ the formula
@pytest.mark.parametrize("weighting", ["reference", "softmax"])
@pytest.mark.parametrize("head", ["softmax", "linear", "sigmoid"])
def test_matches_slow_reference(weighting, head):
    model = _small_model(head)
    images = _images(3)
    cam = ScoreCAM(model, "feat", weighting=weighting, batch_size=5, verbose=0)
    targets = [1, 0, 1] if head == "sigmoid" else [2, 0, 3]
    fast = cam(images, targets, upsample=False, normalize=False)
    for image, target, raw in zip(images, targets, fast):
        slow = _slow_score_cam(model, image, target, weighting)
        assert np.abs(raw - slow).max() < 1e-5
    assert fast.max() > 0


@pytest.mark.parametrize("weighting", ["reference", "softmax"])
def test_top1_targets_and_faster_variant_match_reference(weighting):
    model = _small_model()
    images = _images(2, seed=1)
    cam = ScoreCAM(model, "feat", max_channels=5, weighting=weighting, verbose=0)
    fast = cam(images, upsample=False, normalize=False)
    variance = _feature_maps(model, images).var(axis=(1, 2))
    for image, raw, var in zip(images, fast, variance):
        top = list(np.argsort(-var, kind="stable")[:5])
        slow = _slow_score_cam(model, image, None, weighting, channels=top)
        assert np.abs(raw - slow).max() < 1e-5


def test_channel_weights_golden():
    scores = [[0.9, 0.1, 0.5, 0.3]]
    selected = [[True, True, True, False]]
    constant = [[False, False, True, False]]
    reference = channel_weights(scores, selected, constant, "reference").numpy()
    np.testing.assert_allclose(reference, [[0.9, 0.1, 0.0, 0.0]])
    softmax = channel_weights(scores, selected, constant, "softmax").numpy()
    expected = np.exp([0.9, 0.1, 0.5]) / np.exp([0.9, 0.1, 0.5]).sum()
    np.testing.assert_allclose(softmax, [[*expected, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="`weighting` must be one of"):
        channel_weights(scores, selected, constant, "paper")


# ------------------------------------------------------------------ skipping
@pytest.mark.parametrize("weighting", ["reference", "softmax"])
def test_skipping_is_counted_and_exact(weighting):
    model = _small_model()
    images = _images(3)
    features = _feature_maps(model, images)
    constant = features.max(axis=(1, 2)) == features.min(axis=(1, 2))
    assert constant[:, list(ZERO_CHANNELS) + [CONSTANT_CHANNEL]].all()

    skipping = ScoreCAM(model, "feat", weighting=weighting, verbose=0)
    maps = skipping(images, upsample=False, normalize=False)
    stats = skipping.last_stats
    assert stats.skipped == constant.sum()
    assert stats.selected == 3 * CHANNELS
    assert stats.masked_passes == stats.selected - stats.skipped
    assert stats.skipped_fraction == pytest.approx(constant.sum() / (3 * CHANNELS))
    assert stats.baseline_passes == (1 if weighting == "softmax" else 0)

    running = ScoreCAM(model, "feat", weighting=weighting, skip_constant=False, verbose=0)
    np.testing.assert_allclose(
        running(images, upsample=False, normalize=False), maps, rtol=0, atol=1e-6
    )
    assert running.last_stats.skipped == 0
    assert running.last_stats.masked_passes == 3 * CHANNELS


@pytest.mark.parametrize("weighting", ["reference", "softmax"])
def test_all_constant_layer_gives_zero_maps_not_nan(weighting):
    model = _small_model()
    feat = model.get_layer("feat")
    feat.set_weights([np.zeros_like(w) for w in feat.get_weights()])
    cam = ScoreCAM(model, "feat", weighting=weighting, verbose=0)
    maps = cam(_images(2))
    assert np.array_equal(maps, np.zeros((2, SIZE, SIZE), np.float32))
    assert cam.last_stats.skipped_fraction == 1.0
    assert cam.last_stats.masked_passes == 0


# ------------------------------------------------------------ invariances
def test_batch_size_and_number_of_images_do_not_change_results():
    model = _small_model(constant=False)
    images = _images(4, seed=2)
    targets = [0, 3, 1, 2]
    reference = ScoreCAM(model, "feat", verbose=0)(images, targets, normalize=False)
    for batch_size in (1, 7, 64):
        cam = ScoreCAM(model, "feat", batch_size=batch_size, verbose=0)
        np.testing.assert_allclose(
            cam(images, targets, normalize=False), reference, rtol=1e-5, atol=1e-6
        )
        assert cam.last_stats.chunks == -(-4 * CHANNELS // batch_size)
    cam = ScoreCAM(model, "feat", batch_size=5, verbose=0)
    for i, target in enumerate(targets):
        one = cam(images[i], target, normalize=False)
        np.testing.assert_allclose(one, reference[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("max_channels", "weighting"), [(None, "softmax"), (5, "reference")])
def test_first_pass_in_parts_and_many_chunks_match_slow_reference(max_channels, weighting):
    """More images than `images_per_pass` (first pass in parts, top-1 read per part) and a
    stream of several chunks crossing images, on a non-square input: the formula's maps."""
    size = (12, 20)
    model = _small_model(size=size)
    images = _images(5, seed=5, size=size)
    cam = ScoreCAM(
        model, "feat", batch_size=4, max_channels=max_channels, weighting=weighting, verbose=0
    )
    cam.images_per_pass = 2
    fast = cam(images, upsample=False, normalize=False)
    assert cam.last_stats.chunks > 5
    variance = _feature_maps(model, images).var(axis=(1, 2))
    for image, raw, var in zip(images, fast, variance):
        top = None if max_channels is None else list(np.argsort(-var, kind="stable")[:5])
        slow = _slow_score_cam(model, image, None, weighting, channels=top)
        assert np.abs(raw - slow).max() < 1e-5


def test_a_one_chunk_call_is_one_compiled_call_and_each_further_chunk_one_more():
    model = _small_model()
    cam = ScoreCAM(model, "feat", batch_size=4, verbose=0)
    calls = []

    def counting(name, compiled):
        def call(*args):
            calls.append(name)
            return compiled(*args)

        return call

    cam._class_streams[False] = tuple(
        counting(name, compiled)
        for name, compiled in zip(("first", "begin", "step"), cam._class_streams[False])
    )
    cam(_images(1))  # 8 channels to run, 4 per chunk
    assert calls == ["begin", "step"]
    calls.clear()
    cam.max_channels = 3  # settings are read at each call, not traced in
    cam(_images(1))
    assert calls == ["begin"] and cam.last_stats.masked_passes == 3


def test_settings_changed_between_calls_apply():
    model = _small_model()
    images = _images(2, seed=6)
    cam = ScoreCAM(model, "feat", weighting="softmax", verbose=0)
    cam(images)
    cam.max_channels, cam.skip_constant = 5, False
    fast = cam(images, [1, 3], upsample=False, normalize=False)
    assert cam.last_stats.selected == cam.last_stats.masked_passes == 10
    for image, target, raw, var in zip(
        images, [1, 3], fast, _feature_maps(model, images).var(axis=(1, 2))
    ):
        top = list(np.argsort(-var, kind="stable")[:5])
        assert np.abs(raw - _slow_score_cam(model, image, target, "softmax", top)).max() < 1e-5


def test_max_channels_equal_to_channel_count_is_the_full_run():
    model = _small_model()
    images = _images(2)
    full = ScoreCAM(model, "feat", verbose=0)(images)
    every = ScoreCAM(model, "feat", max_channels=CHANNELS, verbose=0)
    np.testing.assert_array_equal(every(images), full)
    assert every.last_stats.selected == 2 * CHANNELS


def test_nested_model():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="inner")(inputs)
    base = keras.Model(inputs, x, name="base")
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    cam = ScoreCAM(model, verbose=0)
    maps = cam(_images(2))
    assert cam.layer.name == "inner"
    assert maps.shape == (2, SIZE, SIZE) and np.isfinite(maps).all() and maps.max() == 1.0


def test_faster_score_cam_selects_top_channels():
    model = _small_model(constant=False)
    cam = ScoreCAM(model, "feat", max_channels=3, verbose=0)
    cam(_images(2))
    assert cam.last_stats.selected == 6
    assert cam.last_stats.masked_passes == 6


def test_callable_target_scores_the_probabilities():
    model = _small_model()
    images = _images(2)
    cam = ScoreCAM(model, "feat", verbose=0)
    by_index = cam(images, 2, normalize=False)
    by_callable = cam(images, lambda probabilities: probabilities[:, 2], normalize=False)
    np.testing.assert_allclose(by_callable, by_index, rtol=0, atol=1e-7)


def test_compiled_functions_do_not_retrace():
    model = _small_model()
    cam = ScoreCAM(model, "feat", batch_size=5, weighting="softmax", verbose=0)
    cam.images_per_pass = 2  # batches of 3 run the first pass in parts
    for n in (1, 3, 2, 3):  # different image counts and last-chunk sizes
        cam(_images(n, seed=n))
    for compiled in cam._stream(None):  # first pass in parts, first chunk, further chunks
        assert compiled.experimental_get_tracing_count() == 1


# ------------------------------------------------------------ options and errors
def test_automatic_batch_size_follows_the_memory_budget(monkeypatch):
    model = _small_model()
    cam = ScoreCAM(model, "feat", verbose=0)
    # Largest activation: the 12-channel maps at 16x16 = 12 per input pixel.
    per_input = 4 * SIZE * SIZE * (3 + 1 + 2 * CHANNELS)
    monkeypatch.setattr(perturbation, "MEMORY_BUDGET_BYTES", 5 * per_input + 1)
    cam(_images(1))
    assert cam.last_stats.batch_size == 5
    monkeypatch.setattr(perturbation, "MEMORY_BUDGET_BYTES", 1)
    cam(_images(1))
    assert cam.last_stats.batch_size == 1


def test_progress_bar_only_when_verbose(monkeypatch, capsys):
    monkeypatch.setattr(perturbation, "_PROGRESS_AFTER_SECONDS", 0.0)
    model = _small_model()
    ScoreCAM(model, "feat", batch_size=2, verbose=1)(_images(1))
    assert "pass" in capsys.readouterr().out
    ScoreCAM(model, "feat", batch_size=2, verbose=0)(_images(1))
    assert capsys.readouterr().out == ""


def test_registry():
    assert METHODS["scorecam"] is ScoreCAM
    assert get_method("Faster Score-CAM") is FasterScoreCAM
    model = _small_model()
    assert FasterScoreCAM(model, "feat").max_channels == 10
    assert FasterScoreCAM(model, "feat", max_channels=4).max_channels == 4
    narrow = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(6, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    assert FasterScoreCAM(narrow).max_channels == 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, r"`batch_size` must be an int >= 1.*received 0"),
        ({"batch_size": 2.5}, r"`batch_size` must be an int >= 1.*received 2.5"),
        ({"batch_size": True}, r"`batch_size` must be an int >= 1"),
        ({"max_channels": 0}, r"`max_channels` must be an int from 1 to 12 .*'feat'.*received 0"),
        ({"max_channels": 13}, r"`max_channels` must be an int from 1 to 12 .*received 13"),
        ({"weighting": "paper"}, r"`weighting` must be one of \('reference', 'softmax'\)"),
        ({"verbose": 3}, r"`verbose` must be 0, 1 or 2; received 3"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScoreCAM(_small_model(), "feat", **kwargs)


def test_bad_images_and_targets():
    cam = ScoreCAM(_small_model(), "feat", verbose=0)
    with pytest.raises(ValueError, match="expects 16"):
        cam(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        cam(_images(1), targets=4)


# ------------------------------------------------------------ a trained model
def _bright_squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red or green square (the class) at a random place on gray noise, and its box."""
    rng = np.random.default_rng(seed)
    size = 32
    images = rng.normal(0.4, 0.08, (n, size, size, 1)).repeat(3, axis=-1)
    labels = rng.integers(0, 2, n)
    boxes = np.zeros((n, 4), np.int32)
    for i in range(n):
        side = int(rng.integers(6, 10))
        x0, y0 = rng.integers(0, size - side, 2)
        colour = (1.0, 0.15, 0.15) if labels[i] == 0 else (0.15, 1.0, 0.15)
        images[i, y0 : y0 + side, x0 : x0 + side] = colour
        boxes[i] = (x0, y0, x0 + side, y0 + side)
    return images.astype("float32"), labels.astype("int32"), boxes


@pytest.mark.slow
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_trained_model_map_peaks_inside_the_object(head):
    images, labels, boxes = _bright_squares(640, seed=0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if head == "sigmoid":
        outputs = keras.layers.Dense(1, activation="sigmoid")(x)
        loss = "binary_crossentropy"
    else:
        outputs = keras.layers.Dense(2, activation="softmax")(x)
        loss = "sparse_categorical_crossentropy"
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=["accuracy"])
    model.fit(images[:512], labels[:512], batch_size=32, epochs=6, verbose=0)
    test_images, test_labels, test_boxes = images[512:], labels[512:], boxes[512:]
    assert model.evaluate(test_images, test_labels, verbose=0)[1] > 0.9

    x0, y0, x1, y1 = test_boxes.T
    chance = ((x1 - x0) * (y1 - y0) / (32 * 32)).mean()  # about 6%
    for cam in (ScoreCAM(model, verbose=0), FasterScoreCAM(model, verbose=0)):
        maps = cam(test_images, targets=test_labels)
        assert (maps.max(axis=(1, 2)) > maps.min(axis=(1, 2))).all()  # non-constant maps
        ys, xs = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
        hits = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        assert hits.mean() > max(0.8, 8 * chance), type(cam).__name__
