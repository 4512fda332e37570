"""The output contract every registered method keeps, on every kind of model it accepts."""

import keras
import numpy as np
import pytest
from keras import layers
from tiny_models import gap_model

import keras_cam as kc

SIZE = 16


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, SIZE, SIZE, 3)).astype("float32")


def _sequential():
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            layers.Conv2D(6, 3, padding="same", activation="relu"),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(4, activation="softmax"),
        ]
    )


def _nested():
    inner = gap_model()
    backbone = keras.Model(inner.input, inner.get_layer("last_conv").output, name="backbone")
    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, layers.Dense(4, activation="softmax")(layers.Dropout(0.2)(x)))


def _reloaded(tmp_path):
    path = tmp_path / "model.keras"
    gap_model().save(path)
    return keras.models.load_model(path, safe_mode=True)


MODEL_KINDS = {
    "functional": lambda tmp_path: gap_model(),
    "sequential": lambda tmp_path: _sequential(),
    "nested": lambda tmp_path: _nested(),
    "reloaded": _reloaded,
}


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_every_method_keeps_the_contract(name, kind, tmp_path):
    model = MODEL_KINDS[kind](tmp_path)
    images = _images(4)
    weights_before = [w.numpy().copy() for w in model.weights]
    predictions_before = model(images).numpy()

    cam = kc.get_method(name)(model)
    maps = cam(images)

    assert maps.shape == (4, SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert cam(images[0]).shape == (SIZE, SIZE)
    low_resolution = cam(images, upsample=False)
    layer_grid = (SIZE, SIZE) if cam.pixel_resolution else tuple(cam.layer.output.shape[1:3])
    assert low_resolution.shape[1:] == layer_grid
    order = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(cam(images[order]), maps[order], rtol=1e-4, atol=1e-5)
    # the user's model is untouched
    for before, after in zip(weights_before, model.weights):
        np.testing.assert_array_equal(before, after.numpy())
    np.testing.assert_allclose(model(images), predictions_before, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_every_method_under_mixed_precision(name):
    images = _images(2, seed=1)
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        model = gap_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    reference = gap_model()  # float32, the same weights
    reference.set_weights(model.get_weights())
    maps = kc.get_method(name)(model)(images)
    assert maps.dtype == np.float32
    # By value: the float32 maps of the same weights (an all-zero map would not pass).
    np.testing.assert_allclose(maps, kc.get_method(name)(reference)(images), atol=0.03)


def test_registry_lookup_is_forgiving_and_lists_known_names():
    assert kc.get_method("Grad-CAM++") is kc.GradCAMPlusPlus
    assert kc.get_method("grad_cam") is kc.GradCAM
    assert kc.get_method(kc.ScoreCAM) is kc.ScoreCAM
    with pytest.raises(ValueError, match=r"Unknown CAM method 'gradcam\+\+\+'.*'gradcam\+\+'"):
        kc.get_method("gradcam+++")
    for name, method in kc.METHODS.items():
        assert issubclass(method, kc.BaseCAM) and method.display_name
        assert kc.get_method(name) is method
