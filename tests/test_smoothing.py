"""Tests of the combining and smoothing options every method has: `layer=[...]`,
`aug_smooth` and `eigen_smooth` (keras_cam/methods/base.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

import keras_cam as kc
from keras_cam.methods.base import AUGMENTATIONS
from keras_cam.methods.projection import principal_projection

HEIGHT, WIDTH = 24, 40


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype("float32")


def _model() -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="first")(inputs)
    x = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="feat")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name="dense")(x))


# ------------------------------------------------------------------ eigen_smooth
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_first_component_of_a_rank_one_tensor_is_that_component(sign):
    u = np.array([[0.0, 1.0, 3.0], [2.0, 5.0, 1.0]])  # (h, w), hand-written
    v = sign * np.array([1.0, 2.0, 0.5, 0.25])  # (C,)
    weighted = (u[..., np.newaxis] * v)[np.newaxis].astype(np.float32)
    # centred over positions: (u - mean u) v^T; its component is (u - mean u) |v|, oriented
    # along the summed columns, whose sign is that of sum(v)
    expected = sign * (u - u.mean()) * np.linalg.norm(v)
    np.testing.assert_allclose(principal_projection(weighted).numpy()[0], expected, atol=1e-5)


def test_eigen_smooth_of_rank_one_weighted_activations_is_that_component():
    """`feat` = ReLU(1x1 conv of one map s, positive kernel v): A^k = v_k ReLU(s), so the
    Grad-CAM weighted activations w_k A^k are rank one."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    s = layers.Conv2D(1, 3, padding="same", name="s")(inputs)
    x = layers.Conv2D(4, 1, use_bias=False, activation="relu", name="feat")(s)
    model = keras.Model(inputs, layers.Dense(3, name="dense")(layers.GlobalAveragePooling2D()(x)))
    kernel = np.array([[[[0.5, 1.0, 2.0, 0.25]]]], np.float32)
    model.get_layer("feat").set_weights([kernel])
    images = _images(2, seed=1)
    cam = kc.GradCAM(model, "feat")
    maps = cam(images, 1, upsample=False, normalize=False, eigen_smooth=True)
    u = np.maximum(keras.Model(inputs, s)(images).numpy()[..., 0], 0.0)
    dense = model.get_layer("dense").kernel.numpy()[:, 1]
    wv = dense / (HEIGHT * WIDTH) * kernel[0, 0, 0]  # Grad-CAM weight x the loading
    for ui, raw in zip(u, maps):
        component = np.sign(wv.sum()) * (ui - ui.mean()) * np.linalg.norm(wv)
        np.testing.assert_allclose(raw, np.maximum(component, 0.0), atol=1e-5)
    # the switch lasts one call
    plain = cam(images, 1, upsample=False, normalize=False)
    np.testing.assert_allclose(plain[0], np.maximum(u[0] * wv.sum(), 0.0), atol=1e-6)


@pytest.mark.parametrize("name", ["gradcam", "scorecam", "ablationcam"])
def test_eigen_smooth_applies_to_gradient_score_and_ablation_methods(name):
    model = _model()
    images = _images(2, seed=2)
    cam = kc.get_method(name)(model, "feat")
    plain = cam(images, 0, upsample=False, normalize=False)
    smooth = cam(images, 0, upsample=False, normalize=False, eigen_smooth=True)
    assert smooth.shape == plain.shape and np.isfinite(smooth).all() and smooth.max() > 0
    assert not np.allclose(smooth, plain)


# ------------------------------------------------------------------ several layers
@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "scorecam", "ablationcam"])
def test_one_layer_in_a_list_is_the_single_layer_map(name):
    model = _model()
    images = _images(3, seed=3)
    single = kc.get_method(name)(model, "feat")
    listed = kc.get_method(name)(model, ["feat"])
    assert [layer.name for layer in listed.layers] == ["feat"] and listed.layer is single.layer
    np.testing.assert_allclose(listed(images), single(images), atol=1e-6)


def test_several_layers_average_the_normalized_placed_maps():
    model = _model()
    images = _images(2, seed=4)
    cam = kc.GradCAM(model, ["feat", "first"])
    assert [layer.name for layer in cam.layers] == ["feat", "first"]
    parts = [kc.GradCAM(model, name)(images, [0, 2]) for name in ("feat", "first")]
    mean = (parts[0] + parts[1]) / 2
    np.testing.assert_allclose(cam(images, [0, 2], normalize=False), mean, atol=1e-6)
    low, high = mean.min(axis=(1, 2), keepdims=True), mean.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(cam(images, [0, 2]), (mean - low) / (high - low), atol=1e-5)


def test_several_layers_keep_each_methods_arguments():
    model = _model()
    cam = kc.ScoreCAM(model, ["feat", "first"], max_channels=3, batch_size=2, verbose=0)
    assert cam._siblings[0].max_channels == 3 and cam._siblings[0].batch_size == 2
    assert cam(_images(1)[0]).shape == (HEIGHT, WIDTH)


# ------------------------------------------------------------------ aug_smooth
def _symmetric_model() -> keras.Model:
    """Mirror-symmetric kernels, no biases, ReLU: f(flip x) = f(x) up to the flip of the maps,
    and f(a x) = a f(x) (positively homogeneous), so Grad-CAM and Ablation-CAM maps of a flipped
    or rescaled input are the flipped or rescaled map."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(5, 3, padding="same", activation="relu", use_bias=False, name="c1")(inputs)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", use_bias=False, name="feat")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(3, use_bias=False)(x))
    for name in ("c1", "feat"):
        kernel = model.get_layer(name).kernel.numpy()
        model.get_layer(name).set_weights([(kernel + kernel[:, ::-1]) / 2])
    return model


@pytest.mark.parametrize("name", ["gradcam", "ablationcam"])
def test_aug_smooth_on_a_flip_symmetric_model_and_input_is_the_plain_map(name):
    # No resampling is involved (the flip is exact and the intensity factors scale the map
    # of a positively homogeneous model, which normalization undoes): only float rounding.
    model = _symmetric_model()
    half = _images(2, seed=5)
    images = (half + half[:, :, ::-1]) / 2
    cam = kc.get_method(name)(model, "feat")
    np.testing.assert_allclose(cam(images, aug_smooth=True), cam(images), atol=1e-5)


def test_aug_smooth_averages_the_flipped_back_maps_of_each_view():
    model = _model()
    images = _images(2, seed=6)
    cam = kc.GradCAM(model, "feat")
    top = model(images).numpy().argmax(axis=-1)  # read once, on the original images
    views = []
    for flip, factor in AUGMENTATIONS:
        view = images * np.float32(factor)
        view = view[:, :, ::-1] if flip else view
        maps = cam(view, top)
        views.append(maps[:, :, ::-1] if flip else maps)
    assert len(views) == 6
    mean = np.mean(views, axis=0)
    np.testing.assert_allclose(cam(images, aug_smooth=True, normalize=False), mean, atol=1e-5)
    smoothed = cam(images, aug_smooth=True)
    assert smoothed.min() == 0.0 and smoothed.max() == pytest.approx(1.0)


def test_aug_smooth_views_of_a_uint8_model_are_uint8_images():
    inputs = keras.Input((HEIGHT, WIDTH, 3), dtype="uint8")
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="feat")(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
    images = np.random.default_rng(8).integers(0, 256, (2, HEIGHT, WIDTH, 3)).astype(np.uint8)
    cam = kc.GradCAM(model, "feat")
    views = []
    for flip, factor in AUGMENTATIONS:  # 1.1 x 255 would not fit: clipped, as a uint8 image
        scaled = images.astype(np.float32) * np.float32(factor)  # float32, half to even
        view = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
        maps = cam(view[:, :, ::-1] if flip else view, [0, 1])
        views.append(maps[:, :, ::-1] if flip else maps)
    smoothed = cam(images, [0, 1], aug_smooth=True, normalize=False)
    np.testing.assert_allclose(smoothed, np.mean(views, axis=0), atol=1e-5)


def test_aug_smooth_of_fullgrad_and_several_layers_together():
    model = _model()
    images = _images(1, seed=7)
    assert kc.FullGrad(model)(images, aug_smooth=True).shape == (1, HEIGHT, WIDTH)
    both = kc.GradCAM(model, ["feat", "first"])(images[0], aug_smooth=True)
    assert both.shape == (HEIGHT, WIDTH) and np.isfinite(both).all()


# ------------------------------------------------------------------ refusals
def test_combining_refusals():
    model = _model()
    images = _images(1)
    with pytest.raises(ValueError, match="`upsample` must be True; received upsample=False"):
        kc.GradCAM(model, "feat")(images, upsample=False, aug_smooth=True)
    with pytest.raises(ValueError, match="`upsample` must be True"):
        kc.GradCAM(model, ["feat", "first"])(images, upsample=False)
    with pytest.raises(ValueError, match="`layer` is an empty list"):
        kc.GradCAM(model, [])
    with pytest.raises(ValueError, match="FullGrad does not combine weighted activations"):
        kc.FullGrad(model)(images, eigen_smooth=True)
    with pytest.raises(ValueError, match="`layer` and `layer_call` must be None"):
        kc.FullGrad(model, ["feat", "first"])
    with pytest.raises(TypeError, match="`layer` must be a layer name"):
        kc.CAM(model, ["feat"])  # CAM has one layer: the one its GAP head pools
