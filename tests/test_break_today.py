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
