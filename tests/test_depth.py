"""Depth: a base inside a block inside the model, and inputs of any size (`None` height and
width), for every method; expected maps come from an equivalent flat, fixed-size model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers
from references import (
    HEIGHT,
    WIDTH,
    copy_weights,
    corner_images,
    corner_model,
    reference_maps,
)

import keras_cam as kc

CLASSES = np.array([1, 0, 2])


def _quiet(name: str) -> dict:
    return {"verbose": 0} if "score" in name else {}


@pytest.fixture(scope="module")
def flat():
    return corner_model(positive=False, seed=4)


def _two_levels(flat: keras.Model, height=HEIGHT, width=WIDTH) -> keras.Model:
    """model( block( base(conv1 -> pool -> last_conv) -> linear ) ) -> GAP -> Dense, the same
    function as `flat`, with the same gradients (an extra ReLU would zero them where the
    features are 0)."""
    base_input = keras.Input((height, width, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(base_input)
    x = layers.AveragePooling2D(2, name="pool")(x)
    x = layers.Conv2D(12, 3, padding="same", activation="relu", name="last_conv")(x)
    base = keras.Model(base_input, x, name="base")
    block_input = keras.Input((height, width, 3))
    linear = layers.Activation("linear", name="block_linear")
    block = keras.Model(block_input, linear(base(block_input)), name="block")
    inputs = keras.Input((height, width, 3))
    x = layers.GlobalAveragePooling2D(name="gap")(block(inputs))
    outputs = layers.Dense(3, activation="softmax", name="classifier")(x)
    model = keras.Model(inputs, outputs, name="two_levels")
    copy_weights(flat, model)
    return model


@pytest.fixture(scope="module")
def nested(flat):
    return _two_levels(flat)


@pytest.fixture(scope="module")
def expected(flat):
    images = corner_images(3, seed=5)
    return images, {name: reference_maps(name, flat, images, CLASSES) for name in kc.METHODS}


def test_the_nested_model_computes_the_flat_model(flat, nested, expected):
    images, _ = expected
    np.testing.assert_allclose(nested(images), flat(images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_automatic_layer_two_levels_deep(name, nested, expected):
    images, references = expected
    cam = kc.get_method(name)(nested, **_quiet(name))
    assert cam.layer.name == "block_linear"
    np.testing.assert_allclose(cam(images, targets=CLASSES), references[name], atol=2e-4)


@pytest.mark.parametrize("layer", ["block/base/last_conv", "last_conv", "object"])
@pytest.mark.parametrize("name", ["gradcam", "scorecam"])
def test_explicit_layer_two_levels_deep(name, layer, nested, expected):
    images, references = expected
    if layer == "object":
        layer = nested.get_layer("block").get_layer("base").get_layer("last_conv")
    cam = kc.get_method(name)(nested, layer, **_quiet(name))
    assert cam.layer.name == "last_conv"
    np.testing.assert_allclose(cam(images, targets=CLASSES), references[name], atol=2e-4)


def test_cam_equals_gradcam_two_levels_deep(nested, expected):
    images, references = expected
    cam_maps = kc.CAM(nested)(images, targets=CLASSES)
    np.testing.assert_allclose(cam_maps, kc.GradCAM(nested)(images, targets=CLASSES), atol=1e-5)
    np.testing.assert_allclose(cam_maps, references["gradcam"], atol=2e-4)


@pytest.fixture(scope="module")
def any_size(flat):
    model = corner_model(height=None, width=None, positive=False, seed=99)
    copy_weights(flat, model)
    return model


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_every_method_on_a_model_of_any_input_size(name, any_size, flat, expected):
    images, references = expected
    cam = kc.get_method(name)(any_size, **_quiet(name))
    # At 24x40, the maps of the fixed-size flat model.
    np.testing.assert_allclose(cam(images, targets=CLASSES), references[name], atol=2e-4)
    # Another non-square size, 16x32, and its transpose 32x16, through the same explainer.
    for height, width in ((16, 32), (32, 16)):
        other = corner_images(2, height=height, width=width, seed=6)
        fixed = corner_model(height, width, positive=False, seed=7)
        copy_weights(flat, fixed)
        maps = cam(other, targets=CLASSES[:2])
        assert maps.shape == (2, height, width)
        np.testing.assert_allclose(
            maps, reference_maps(name, fixed, other, CLASSES[:2]), atol=2e-4
        )
