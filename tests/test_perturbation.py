"""Tests of the perturbation family's engine (keras_cam/methods/perturbation.py).

A new member of the family is a small class: the toys below define only what a perturbed input
is and how scores become weights, and are checked against slow references written here, one
channel and one forward pass at a time.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cam.methods import perturbation
from keras_cam.methods.perturbation import PerturbationCAM

HEIGHT, WIDTH = 24, 40  # non-square: a swapped axis fails
CHANNELS = 8
CONSTANT_CHANNELS = (0, 5)  # all-zero after the ReLU, and constant 0.3


class MeanMaskedCAM(PerturbationCAM):
    """Toy: the image where the mask is 1, its mean colour where it is 0; softmax weights."""

    def perturb(self, images, masks):
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        return images * masks + mean * (1.0 - masks)

    def weights_from_scores(self, scores, selected, constant):
        return tf.nn.softmax(tf.where(selected, scores, -np.inf), axis=-1)


class TwoScaleCAM(PerturbationCAM):
    """Toy with two perturbations per pair (IS-CAM-like): the mask at half and full strength."""

    perturbations = 2

    def perturb(self, images, masks):
        return tf.concat([images * (0.5 * masks), images * masks], axis=0)

    def weights_from_scores(self, scores, selected, constant):
        return tf.where(selected & ~constant, scores, 0.0)

    def needs_constant_scores(self):
        return False


def _model() -> keras.Model:
    """conv -> pool -> conv "feat" (12x20, two channels engineered constant) -> GAP -> softmax."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="feat")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    feat = model.get_layer("feat")
    kernel, bias = (w.numpy() for w in feat.weights)
    kernel[..., list(CONSTANT_CHANNELS)] = 0.0
    bias[list(CONSTANT_CHANNELS)] = (0.0, 0.3)
    feat.set_weights([kernel, bias])
    return model


def _images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype("float32")


def _masks(model: keras.Model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature maps `(h, w, K)` and each channel's mask `(K, H, W)`: resized, min-max, 0 if flat."""
    features = keras.Model(model.inputs[0], model.get_layer("feat").output)(image[np.newaxis])
    features = features.numpy()[0]
    masks = []
    for k in range(features.shape[-1]):
        up = tf.image.resize(features[np.newaxis, :, :, k, np.newaxis], (HEIGHT, WIDTH))
        up = up.numpy()[0, :, :, 0].astype(np.float64)
        span = up.max() - up.min()
        masks.append((up - up.min()) / span if span > 0 else np.zeros_like(up))
    return features, np.stack(masks)


def _constant(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """bool `(B, K)`: the channels constant over each image's map (the engineered ones at least)."""
    features = keras.Model(model.inputs[0], model.get_layer("feat").output)(images).numpy()
    constant = features.max(axis=(1, 2)) == features.min(axis=(1, 2))
    assert constant[:, list(CONSTANT_CHANNELS)].all()
    return constant


def _probability(model: keras.Model, image: np.ndarray, target: int) -> float:
    return float(model(image[np.newaxis].astype("float32"), training=False).numpy()[0, target])


def _combine(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.maximum((features * weights).sum(axis=-1), 0.0)


def _slow_mean_masked(model: keras.Model, image: np.ndarray, target: int) -> np.ndarray:
    features, masks = _masks(model, image)
    mean = image.mean(axis=(0, 1))
    scores = np.array(
        [_probability(model, image * m[..., None] + mean * (1 - m[..., None]), target)
         for m in masks]
    )
    weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    return _combine(features, weights)


def _slow_two_scale(model: keras.Model, image: np.ndarray, target: int) -> np.ndarray:
    features, masks = _masks(model, image)
    weights = np.zeros(CHANNELS)
    for k, m in enumerate(masks):
        if m.any():  # a constant channel's mask is all zeros; it is left out
            weights[k] = np.mean(
                [_probability(model, image * (s * m[..., None]), target) for s in (0.5, 1.0)]
            )
    return _combine(features, weights)


# ------------------------------------------------------------------ toys vs references
@pytest.mark.parametrize("skip_constant", [True, False])
def test_mean_masked_toy_matches_slow_reference(skip_constant):
    model = _model()
    images = _images(3)
    targets = [2, 0, 3]
    cam = MeanMaskedCAM(model, "feat", batch_size=5, skip_constant=skip_constant, verbose=0)
    fast = cam(images, targets, upsample=False, normalize=False)
    assert fast.shape == (3, HEIGHT // 2, WIDTH // 2)
    for image, target, raw in zip(images, targets, fast):
        np.testing.assert_allclose(raw, _slow_mean_masked(model, image, target), atol=1e-5)
    stats = cam.last_stats
    skipped = _constant(model, images).sum() if skip_constant else 0
    assert stats.skipped == skipped
    assert stats.masked_passes == 3 * CHANNELS - skipped
    # The constant channels' inputs depend on the image (its mean): one per image.
    assert stats.baseline_passes == (3 if skip_constant else 0)


def test_several_perturbations_per_pair_are_averaged():
    model = _model()
    images = _images(2, seed=1)
    cam = TwoScaleCAM(model, "feat", batch_size=3, verbose=0)
    fast = cam(images, [1, 2], upsample=False, normalize=False)
    for image, target, raw in zip(images, [1, 2], fast):
        np.testing.assert_allclose(raw, _slow_two_scale(model, image, target), atol=1e-5)
    assert cam.last_stats.baseline_passes == 0  # needs_constant_scores() is False
    assert cam.last_stats.masked_passes == (~_constant(model, images)).sum()


def test_callable_target_equals_class_target():
    model = _model()
    images = _images(2, seed=2)
    cam = TwoScaleCAM(model, "feat", verbose=0)
    by_class = cam(images, 3, normalize=False)
    by_callable = cam(images, lambda p: p[:, 3], normalize=False)
    np.testing.assert_allclose(by_callable, by_class, rtol=0, atol=1e-7)


# ------------------------------------------------------------------ engine
def test_automatic_chunk_counts_every_perturbation(monkeypatch):
    model = _model()
    cam = TwoScaleCAM(model, "feat", verbose=0)
    # Largest activation per input pixel: the first conv's 6 channels at full size.
    per_input = 4 * HEIGHT * WIDTH * (3 + 1 + 2 * 6)
    monkeypatch.setattr(perturbation, "MEMORY_BUDGET_BYTES", 2 * 4 * per_input + 1)
    cam(_images(1))
    assert cam.last_stats.batch_size == 4  # pairs: 8 inputs per chunk fit the budget
    monkeypatch.setattr(perturbation, "MEMORY_BUDGET_BYTES", 1)
    cam(_images(1))
    assert cam.last_stats.batch_size == 1


def test_compiled_functions_do_not_retrace():
    cam = MeanMaskedCAM(_model(), "feat", batch_size=5, verbose=0)
    for n in (1, 3, 2):
        cam(_images(n, seed=n))
    cam.images_per_pass = 2  # batches of 3 run the first pass in parts
    for n in (1, 3, 2):
        cam(_images(n, seed=n))
    for compiled in cam._stream(None):
        assert compiled.experimental_get_tracing_count() == 1


def test_base_class_hooks_must_be_defined():
    cam = PerturbationCAM(_model(), "feat", verbose=0)
    with pytest.raises(NotImplementedError):
        cam(_images(1))
