"""keras_cam's compiled functions never make TensorFlow warn about retracing in documented use:
explainers per layer, per fold, per `evaluate` call (issue 10, kind 11)."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

import keras_cam as kc


class _Messages(logging.Handler):
    """Collects the messages of TensorFlow's Python logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def tf_messages():
    logger = logging.getLogger("tensorflow")
    handler = _Messages()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _three_conv_model() -> keras.Model:
    inputs = keras.Input((12, 20, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _retracing(messages: list[str]) -> list[str]:
    """Retracing warnings about keras_cam's functions (not Keras' own training function)."""
    return [
        message
        for message in messages
        if "retracing" in message and "TensorFlowTrainer" not in message
    ]


def test_score_cam_explainers_per_layer_do_not_warn(tf_messages):
    model = _three_conv_model()
    images = np.random.default_rng(0).random((2, 12, 20, 3)).astype(np.float32)
    for layer in ("conv1", "conv2", "conv3"):
        for method in (kc.ScoreCAM, kc.FasterScoreCAM):
            method(model, layer, verbose=0)(images)
            method(model, layer, verbose=0, weighting="softmax")(images, targets=lambda p: p[:, 1])
    assert _retracing(tf_messages) == []


def test_repeated_evaluate_does_not_warn(tf_messages):
    images = np.random.default_rng(1).random((3, 12, 20, 3)).astype(np.float32)
    model = _three_conv_model()
    for _ in range(3):  # the same model, every metric, fresh explainers each time
        kc.evaluate(model, images, methods=("scorecam", "fasterscorecam"))
    for _ in range(3):  # a new model per fold
        kc.evaluate(_three_conv_model(), images, methods=("scorecam", "fasterscorecam"),
                    metrics="average_drop")
    assert _retracing(tf_messages) == []


def test_every_gradient_method_per_layer_does_not_warn(tf_messages):
    model = _three_conv_model()
    images = np.random.default_rng(2).random((2, 12, 20, 3)).astype(np.float32)
    for name, method in kc.METHODS.items():
        if name in ("cam", "fullgrad") or not method.requires_gradients:  # no layer to choose
            continue
        for layer in ("conv1", "conv2", "conv3"):
            method(model, layer)(images)
    assert _retracing(tf_messages) == []


@pytest.mark.slow
def test_heatmap_callback_per_fold_does_not_warn(tf_messages, tmp_path):
    images = np.random.default_rng(3).random((4, 12, 20, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    for fold in range(6):
        model = _three_conv_model()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        callback = kc.HeatmapCallback(images, out_dir=tmp_path / str(fold))
        model.fit(images, labels, epochs=1, callbacks=[callback], verbose=0)
    assert _retracing(tf_messages) == []
