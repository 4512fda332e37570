"""Tests of Ablation-CAM, SS-CAM and IS-CAM (keras_cam/methods/ablation.py, score.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc
from keras_cam.methods.ablation import ablation_weights
from keras_cam.surgery import build_cam_model, build_head_model

HEIGHT, WIDTH = 24, 40


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype("float32")


def _gap_model(strides: int = 2) -> keras.Model:
    """conv -> conv "feat" -> GAP -> Dense logits; `strides=1` keeps the maps on the pixels
    (the slow Score-CAM references place them with `tf.image.resize`)."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(8, 3, strides=strides, padding="same", activation="relu", name="feat")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(4, name="dense")(x))


def _split_model() -> tuple[keras.Model, keras.Model, keras.Model]:
    """`head(features(x))`: a non-GAP head (pool, conv, flatten, dense), for references."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(5, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="feat")(x)
    features = keras.Model(inputs, x)
    feature_input = keras.Input(x.shape[1:])
    y = layers.MaxPooling2D()(feature_input)
    y = layers.Conv2D(4, 3, activation="tanh")(y)
    y = layers.Dense(3)(layers.Flatten()(y))
    head = keras.Model(feature_input, y)
    return keras.Model(inputs, head(features(inputs))), features, head


# ------------------------------------------------------------------ Ablation-CAM
def test_ablation_weights_golden():
    weights = ablation_weights([2.0, -4.0, 0.0], [[1.5, 2.0, 3.0], [-2.0, -5.0, 0.0], [1, 2, 3]])
    np.testing.assert_allclose(
        weights.numpy(), [[0.25, 0.0, -0.5], [0.5, -0.25, 1.0], [0.0, 0.0, 0.0]]
    )


def test_gap_dense_head_weights_are_cam_over_the_logit():
    """Zeroing channel k lowers the logit by w_k^c mean(A^k): weights w_k^c mean(A^k) / y^c."""
    model = _gap_model()
    images = _images(3)
    targets = [0, 3, 1]
    features = keras.Model(model.inputs[0], model.get_layer("feat").output)(images).numpy()
    kernel, bias = (w.numpy().astype(np.float64) for w in model.get_layer("dense").weights)
    raw = kc.AblationCAM(model, "feat", verbose=0)(
        images, targets, upsample=False, normalize=False
    )
    for feature, target, fast in zip(features.astype(np.float64), targets, raw):
        means = feature.mean(axis=(0, 1))
        logit = means @ kernel[:, target] + bias[target]
        weights = kernel[:, target] * means / logit
        expected = np.maximum((feature * weights).sum(axis=-1), 0.0)
        np.testing.assert_allclose(fast, expected, atol=1e-5)


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_ablation_matches_slow_reference(score):
    model, features_model, head = _split_model()
    images = _images(2, seed=1)
    cam = kc.AblationCAM(model, "feat", score=score, batch_size=4, verbose=0)
    targets = [2, 0]
    fast = cam(images, targets, upsample=False, normalize=False)

    def read(features, target):
        logits = head(features[np.newaxis]).numpy()[0].astype(np.float64)
        if score == "probability":
            logits = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        return logits[target]

    for image, target, raw in zip(images, targets, fast):
        feature = features_model(image[np.newaxis]).numpy()[0]
        reference = read(feature, target)
        total = np.zeros(feature.shape[:2])
        for k in range(feature.shape[-1]):
            ablated = feature.copy()
            ablated[..., k] = 0.0
            total += (reference - read(ablated, target)) / reference * feature[..., k]
        np.testing.assert_allclose(raw, np.maximum(total, 0.0), atol=1e-5)
    assert fast.max() > 0


class _PerImageClass(kc.targets.Target):
    """Image `b`'s score is the output of `classes[b]`: a target reading per-image data."""

    def __init__(self, classes):
        self.classes = list(classes)

    def __call__(self, outputs):
        return self.scores(outputs, tf.range(tf.shape(outputs)[0]))

    def scores(self, outputs, image_index):
        classes = tf.gather(tf.constant(self.classes, tf.int32), image_index)
        return tf.gather(outputs, classes, batch_dims=1)


def test_ablation_first_pass_in_parts_reads_each_images_own_target():
    """A batch larger than `images_per_pass` runs the first pass (and `y^c`) in parts: each
    image keeps its own row of a per-image target, against the formula written out."""
    model, features_model, head = _split_model()
    images = _images(5, seed=4)
    classes = [2, 0, 1, 1, 2]
    cam = kc.AblationCAM(model, "feat", batch_size=4, verbose=0)
    cam.images_per_pass = 2
    fast = cam(images, _PerImageClass(classes), upsample=False, normalize=False)
    assert cam.last_stats.chunks > 1
    for image, target, raw in zip(images, classes, fast):
        feature = features_model(image[np.newaxis]).numpy()[0]
        read = lambda f: head(f[np.newaxis]).numpy()[0].astype(np.float64)[target]  # noqa: E731
        total = np.zeros(feature.shape[:2])
        for k in range(feature.shape[-1]):
            ablated = feature.copy()
            ablated[..., k] = 0.0
            total += (read(feature) - read(ablated)) / read(feature) * feature[..., k]
        np.testing.assert_allclose(raw, np.maximum(total, 0.0), atol=1e-5)


def test_ablation_is_exact_whatever_the_chunks_and_skips_zero_channels():
    model = _gap_model()
    feat = model.get_layer("feat")
    kernel, bias = (w.numpy() for w in feat.weights)
    kernel[..., :2], bias[:2] = 0.0, 0.0  # channels 0 and 1: zero everywhere
    bias[2], kernel[..., 2] = 0.7, 0.0  # channel 2: constant 0.7, must still be ablated
    feat.set_weights([kernel, bias])
    images = _images(3, seed=2)
    one = kc.AblationCAM(model, "feat", batch_size=1, skip_constant=False, verbose=0)
    many = kc.AblationCAM(model, "feat", batch_size=7, verbose=0)
    expected = one(images, normalize=False)
    np.testing.assert_allclose(many(images, normalize=False), expected, rtol=1e-5, atol=1e-6)
    stats = many.last_stats  # the two zero channels at least (others may be dead), never 2
    assert stats.skipped >= 2 * 3 and stats.skipped + stats.masked_passes == stats.selected == 24
    for i in range(3):  # a batch gives the maps of its images one at a time
        np.testing.assert_allclose(many(images[i], normalize=False), expected[i], atol=1e-6)


def test_ablation_callable_target_equals_class_target():
    model = _gap_model()
    images = _images(2, seed=3)
    cam = kc.AblationCAM(model, "feat", verbose=0)
    np.testing.assert_allclose(
        cam(images, lambda logits: logits[:, 2]), cam(images, 2), rtol=1e-5, atol=1e-6
    )


def test_head_model_restarts_from_the_layer():
    model, features_model, head = _split_model()
    images = _images(2, seed=4)
    head_model = build_head_model(build_cam_model(model, "feat"))
    logits = head_model(features_model(images))[0]
    np.testing.assert_allclose(logits, head(features_model(images)), rtol=1e-5, atol=1e-6)


def test_ablation_refuses_a_layer_bypassed_by_a_skip_connection():
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    y = layers.Conv2D(4, 3, padding="same", activation="relu", name="inner")(x)
    x = layers.Add(name="block_out")([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(3)(x))
    with pytest.raises(ValueError, match=r"'inner'.*bypasses that layer.*'conv5_block3_out'"):
        kc.AblationCAM(model, "inner")
    assert kc.AblationCAM(model, "block_out", verbose=0)(_images(1)[0]).shape == (HEIGHT, WIDTH)


def test_ablation_bad_arguments():
    with pytest.raises(ValueError, match="`score` must be one of"):
        kc.AblationCAM(_gap_model(), score="softmax")
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1"):
        kc.AblationCAM(_gap_model(), batch_size=0)


# ------------------------------------------------------------------ SS-CAM, IS-CAM
def _slow_masked_scores(model, image, target, scales, noise):
    """Mean softmax score over `scales[i] * mask + noise[i]`, per channel (Score-CAM masks)."""
    features = keras.Model(model.inputs[0], model.get_layer("feat").output)(image[np.newaxis])
    features = features.numpy()[0]
    scores = {}
    for k in range(features.shape[-1]):
        up = tf.image.resize(features[np.newaxis, :, :, k, np.newaxis], image.shape[:2])
        up = up.numpy()[0, :, :, 0]
        if up.max() == up.min():
            continue  # reference weighting: constant channels are left out
        mask = (up - up.min()) / (up.max() - up.min())
        total = 0.0
        for scale, delta in zip(scales, noise):
            logits = model(image[np.newaxis] * (scale * mask + delta)[..., np.newaxis])
            logits = logits.numpy()[0].astype(np.float64)
            total += (np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())[target]
        scores[k] = total / len(scales)
    cam = sum(score * features[..., k] for k, score in scores.items())
    return np.maximum(cam, 0.0)


def test_sscam_matches_slow_reference():
    model = _gap_model(strides=1)
    images = _images(2, seed=5)
    cam = kc.SSCAM(model, "feat", n_samples=3, noise_std=0.3, seed=7, batch_size=5, verbose=0)
    fast = cam(images, [1, 2], upsample=False, normalize=False)
    noise = tf.random.stateless_normal((3, HEIGHT, WIDTH), seed=[7, 0], stddev=0.3).numpy()
    for image, target, raw in zip(images, [1, 2], fast):
        slow = _slow_masked_scores(model, image, target, [1.0] * 3, noise)
        np.testing.assert_allclose(raw, slow, atol=1e-5)
    np.testing.assert_array_equal(cam(images, [1, 2], upsample=False, normalize=False), fast)


def test_iscam_matches_slow_reference():
    model = _gap_model(strides=1)
    images = _images(2, seed=6)
    fast = kc.ISCAM(model, "feat", n_steps=4, batch_size=3, verbose=0)(
        images, [3, 0], upsample=False, normalize=False
    )
    scales, coefficient = [], 0.0
    for i in range(1, 5):  # c_i = sum_{j <= i} j / N
        coefficient += i / 4
        scales.append(coefficient)
    for image, target, raw in zip(images, [3, 0], fast):
        slow = _slow_masked_scores(model, image, target, scales, np.zeros((4, HEIGHT, WIDTH)))
        np.testing.assert_allclose(raw, slow, atol=1e-5)


def test_sscam_without_noise_and_iscam_with_one_step_are_score_cam():
    model = _gap_model()
    images = _images(2, seed=7)
    score = kc.ScoreCAM(model, "feat", verbose=0)(images, normalize=False)
    for cam in (
        kc.SSCAM(model, "feat", n_samples=2, noise_std=0.0, verbose=0),
        kc.ISCAM(model, "feat", n_steps=1, verbose=0),
    ):
        np.testing.assert_allclose(cam(images, normalize=False), score, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "method, kwargs, match",
    [
        (kc.SSCAM, {"n_samples": 0}, "`n_samples` must be an int >= 1; received 0"),
        (kc.SSCAM, {"noise_std": -1.0}, "`noise_std` must be a number >= 0; received -1.0"),
        (kc.ISCAM, {"n_steps": 2.5}, "`n_steps` must be an int >= 1; received 2.5"),
    ],
)
def test_sscam_iscam_bad_arguments(method, kwargs, match):
    with pytest.raises(ValueError, match=match):
        method(_gap_model(), **kwargs)
