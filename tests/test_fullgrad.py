"""Tests of FullGrad (keras_cam/methods/fullgrad.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc
from keras_cam.methods.fullgrad import layer_bias, normalized_sum

HEIGHT, WIDTH = 24, 40


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, HEIGHT, WIDTH, 3)).astype("float32")


def _model(fused: bool = True, use_bias: bool = True, batch_norm: bool = True) -> keras.Model:
    """conv(relu) -> BN -> strided conv(relu) -> GAP -> Dense; `fused=False` puts the ReLUs in
    layers of their own (the same weights: the reference reads the pre-activations)."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    activation = "relu" if fused else None
    x = layers.Conv2D(4, 3, padding="same", activation=activation, use_bias=use_bias,
                      name="c1")(inputs)
    x = x if fused else layers.ReLU()(x)
    if batch_norm:
        x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv2D(5, 3, strides=2, padding="same", activation=activation,
                      use_bias=use_bias, name="c2")(x)
    x = x if fused else layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name="dense")(x))


def _randomize_batch_norm(model: keras.Model) -> None:
    bn = model.get_layer("bn")
    rng = np.random.default_rng(1)
    bn.set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.5, 4), rng.normal(0, 0.5, 4),
                    rng.uniform(0.5, 2.0, 4)])


def _normalize(channel: np.ndarray) -> np.ndarray:
    span = channel.max() - channel.min()
    return (channel - channel.min()) / span if span > 0 else np.zeros_like(channel)


def _slow_fullgrad(reference: keras.Model, image: np.ndarray, target: int) -> np.ndarray:
    """The formula on the unfused twin: one image, explicit loops over terms and channels."""
    names = ["c1", "bn", "c2"]
    probe = keras.Model(reference.inputs[0],
                        [reference.output, *[reference.get_layer(n).output for n in names]])
    x = tf.constant(image[np.newaxis])
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits, *outputs = probe(x)
        score = logits[0, target]
    grads = tape.gradient(score, [x, *outputs])
    total = np.zeros((HEIGHT, WIDTH))
    input_term = np.abs(image * grads[0].numpy()[0])
    for c in range(3):
        total += _normalize(input_term[..., c])
    bn = reference.get_layer("bn")
    gamma, beta, mean, variance = (w.numpy() for w in bn.weights)
    biases = {
        "c1": reference.get_layer("c1").bias.numpy(),
        "bn": beta - gamma * mean / np.sqrt(variance + bn.epsilon),
        "c2": reference.get_layer("c2").bias.numpy(),
    }
    for name, grad in zip(names, grads[1:]):
        grad = grad.numpy()[0]
        term = np.zeros(grad.shape[:2])
        for c in range(grad.shape[-1]):
            term += _normalize(np.abs(biases[name][c] * grad[..., c]))
        total += tf.image.resize(term[np.newaxis, ..., np.newaxis], (HEIGHT, WIDTH)).numpy()[
            0, ..., 0
        ]
    return total


def test_normalized_sum_golden():
    maps = np.array([[[[1.0, 5.0]], [[3.0, 5.0]]]])  # (1, 2, 1, 2): channel 1 is constant
    np.testing.assert_allclose(normalized_sum(maps).numpy(), [[[0.0], [1.0]]])


def test_layer_bias_of_batch_norm_is_its_inference_offset():
    bn = layers.BatchNormalization(epsilon=0.5)
    bn.build((None, 2, 2, 2))
    bn.set_weights([np.array([2.0, 1.0]), np.array([1.0, 0.0]), np.array([3.0, -1.0]),
                    np.array([3.5, 0.5])])
    # gamma (x - mean) / sqrt(var + eps) + beta at x = 0
    np.testing.assert_allclose(layer_bias(bn), [1.0 - 2.0 * 3.0 / 2.0, 1.0], rtol=1e-6)


def test_fullgrad_matches_slow_reference():
    model, reference = _model(fused=True), _model(fused=False)
    _randomize_batch_norm(model)
    reference.set_weights(model.get_weights())
    images = _images(2)
    targets = [2, 0]
    cam = kc.FullGrad(model)
    assert [layer.name for layer in cam.bias_layers] == ["c1", "bn", "c2"]
    fast = cam(images, targets, normalize=False)
    for image, target, raw in zip(images, targets, fast):
        np.testing.assert_allclose(raw, _slow_fullgrad(reference, image, target), atol=1e-5)
    normalized = cam(images, targets)
    assert normalized.shape == (2, HEIGHT, WIDTH) and normalized.max() == pytest.approx(1.0)


def test_without_biases_only_the_input_gradient_term_is_left():
    model = _model(use_bias=False, batch_norm=False)
    images = _images(1, seed=3)
    cam = kc.FullGrad(model)
    assert cam.bias_layers == []
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = model(x)[0, 1]
    term = np.abs(images[0] * tape.gradient(score, x).numpy()[0])
    expected = sum(_normalize(term[..., c]) for c in range(3))
    np.testing.assert_allclose(cam(images, 1, normalize=False)[0], expected, atol=1e-5)


def test_fullgrad_refusals():
    with pytest.raises(ValueError, match="`layer_call` must be None; received layer='c1'"):
        kc.FullGrad(_model(), "c1")
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(4, 3, activation="tanh", name="squashed")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match=r"layer 'squashed'.*activation 'tanh' is fused"):
        kc.FullGrad(model)
