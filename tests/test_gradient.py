"""Grad-CAM, Grad-CAM++ and the gradient relatives: formulas, references and known answers."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from keras import layers
from tiny_models import argmax_in_box, gap_model, split_model, trained_box_model

import keras_cam as kc

GRADIENT_METHODS = [kc.GradCAM, kc.GradCAMPlusPlus, kc.XGradCAM, kc.HiResCAM, kc.LayerCAM]


def _images(n, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


# ---------------------------------------------------------------- golden weight tests
def _hand_arrays():
    # one image, 2x2 map, 2 channels; values chosen so every formula is easy to follow by hand
    features = np.array([[[[1.0, 0.0], [2.0, 1.0]], [[0.0, 3.0], [1.0, 0.0]]]], "float32")
    grads = np.array([[[[0.5, -1.0], [1.0, 2.0]], [[-0.5, 0.0], [0.0, 1.0]]]], "float32")
    return tf.constant(features), tf.constant(grads)


def _weights(method, features, grads):
    return method.compute_weights(None, features, grads, tf.zeros((1,), tf.int32)).numpy()


def test_gradcam_weights_are_mean_gradients():
    features, grads = _hand_arrays()
    np.testing.assert_allclose(_weights(kc.GradCAM, features, grads), [[0.25, 0.5]])


def test_gradcam_plus_plus_weights_follow_eq_19():
    features, grads = _hand_arrays()
    # channel 0: sum A = 4; g = [.5, 1, -.5, 0]
    # alpha = g^2 / (2 g^2 + 4 g^3): .25/(.5+.5)=.25, 1/(2+4)=1/6, .25/(.5-.5) -> 0 (safe), 0
    # w = sum alpha * relu(g) = .25*.5 + (1/6)*1 = 0.2916667
    # channel 1: sum A = 4; g = [-1, 2, 0, 1]
    # alpha: 1/(2-4) = -.5 (relu(g)=0 there), 4/(8+32)=.1, 0, 1/(2+4)=1/6
    # w = .1*2 + (1/6)*1 = 0.3666667
    np.testing.assert_allclose(
        _weights(kc.GradCAMPlusPlus, features, grads), [[0.125 + 1 / 6, 0.2 + 1 / 6]], rtol=1e-6
    )


def test_relatives_weights_by_hand():
    features, grads = _hand_arrays()
    # XGrad-CAM: sum(A*g)/sum(A): ch0 (.5+2+0+0)/4, ch1 (0+2+0+0)/4
    np.testing.assert_allclose(_weights(kc.XGradCAM, features, grads), [[0.625, 0.5]])
    np.testing.assert_array_equal(_weights(kc.HiResCAM, features, grads), grads.numpy())
    np.testing.assert_array_equal(_weights(kc.LayerCAM, features, grads), np.maximum(grads, 0))


def test_element_wise_and_channel_weights_combine_the_same_way():
    features, grads = _hand_arrays()
    channel = kc.BaseCAM.compute_cam(None, features, tf.constant([[1.0, -1.0]]))
    element = kc.BaseCAM.compute_cam(None, features, tf.ones_like(features) * [1.0, -1.0])
    np.testing.assert_allclose(channel, element)
    np.testing.assert_allclose(channel[0], np.maximum(features[0, ..., 0] - features[0, ..., 1], 0))


# ---------------------------------------------------------------- properties on models
def test_gradcam_equals_cam_by_hand_on_gap_dense_model():
    model = gap_model(classes=4)
    images = _images(6)
    features = keras.Model(model.input, model.get_layer("last_conv").output)(images).numpy()
    kernel = model.get_layer("classifier").kernel.numpy()
    cam = kc.GradCAM(model)
    for target in range(4):
        maps = cam(images, targets=target, upsample=False, normalize=False)
        by_hand = np.maximum(np.einsum("bhwc,c->bhw", features, kernel[:, target]), 0)
        for got, expected in zip(maps, by_hand):
            if expected.max() > 0:
                assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.999
            else:
                assert got.max() == 0


def test_gradients_match_a_slow_reference():
    model, features_model, head = split_model()
    images = _images(3)
    targets = [0, 2, 1]
    cam = kc.GradCAM(model, layer="target")
    maps = cam(images, targets=targets, upsample=False, normalize=False)
    for image, target, got in zip(images, targets, maps):
        features = tf.constant(features_model(image[None]))
        with tf.GradientTape() as tape:
            tape.watch(features)
            logits_input = head.layers[-1].input
            pre_softmax = keras.Model(head.input, logits_input)(features)
            dense = head.layers[-1]
            score = (pre_softmax @ dense.kernel + dense.bias)[0, target]
        grads = tape.gradient(score, features).numpy()[0]
        expected = np.maximum((features.numpy()[0] * grads.mean(axis=(0, 1))).sum(-1), 0)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_batch_equals_single_images_and_per_image_targets(method):
    model = gap_model(classes=4)
    images = _images(5, seed=1)
    targets = [3, 0, 1, 1, 2]
    cam = method(model)
    batch = cam(images, targets=targets)
    singles = np.stack([cam(image, targets=t) for image, t in zip(images, targets)])
    np.testing.assert_allclose(batch, singles, rtol=1e-5, atol=1e-5)
    per_class = [cam(images, targets=t) for t in range(4)]
    for i, target in enumerate(targets):
        np.testing.assert_allclose(batch[i], per_class[target][i], rtol=1e-5, atol=1e-5)


def test_callable_target_equals_class_index_and_top1_is_default():
    model = gap_model(classes=4)
    images = _images(4, seed=2)
    cam = kc.GradCAM(model)
    np.testing.assert_allclose(cam(images, targets=lambda logits: logits[:, 2]), cam(images, 2))
    top = model(images).numpy().argmax(axis=1)
    np.testing.assert_allclose(cam(images), cam(images, targets=top.tolist()))


def test_large_batches_are_chunked_without_changing_results():
    model = gap_model()
    images = _images(40, seed=3)
    cam = kc.GradCAMPlusPlus(model)
    chunked = cam(images)
    cam.images_per_pass = 64
    np.testing.assert_allclose(chunked, cam(images), rtol=1e-5, atol=1e-6)


def test_logit_maps_survive_a_saturated_softmax_probability_maps_do_not():
    model = gap_model(classes=3)
    dense = model.get_layer("classifier")
    dense.kernel.assign(dense.kernel * 200.0)  # one logit >> the others: softmax saturates
    images = _images(4, seed=4)
    probabilities = model(images).numpy()
    assert probabilities.max(axis=1).min() > 1 - 1e-6
    logit_maps = kc.GradCAM(model, score="logit")(images, normalize=False, upsample=False)
    prob_maps = kc.GradCAM(model, score="probability")(images, normalize=False, upsample=False)
    for logit_map, prob_map in zip(logit_maps, prob_maps):
        assert logit_map.max() > 0
        assert prob_map.max() < 1e-4 * logit_map.max()


@pytest.mark.slow
def test_trained_model_maps_peak_on_the_object():
    model, (images, labels, boxes) = trained_box_model()
    accuracy = (model(images).numpy().argmax(axis=1) == labels).mean()
    assert accuracy > 0.9
    box_share = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).mean() / 32**2
    for method in (kc.GradCAM, kc.GradCAMPlusPlus, kc.LayerCAM):
        hits = argmax_in_box(method(model)(images, targets=labels.tolist()), boxes).mean()
        # chance (a uniformly random peak) is the box's share of the image, about 6 %
        assert hits > 0.6 > 8 * box_share, (method.__name__, hits)


def test_compiled_pass_is_not_retraced():
    model = gap_model()
    cam = kc.GradCAM(model)
    for n in (1, 3, 7, 3):
        cam(_images(n, seed=n))
    cam(_images(2), targets=1)
    # one compiled pass (a concrete function: it cannot retrace) serves every batch size
    assert len(cam._passes) == 1


def test_mixed_precision_model_gives_finite_close_maps():
    images = _images(3, seed=5)
    reference = gap_model()
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        mixed = gap_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(reference.get_weights())
    got, expected = kc.GradCAM(mixed)(images, 1), kc.GradCAM(reference)(images, 1)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=0.05)


# ---------------------------------------------------------------- bad input and NaN safety
def test_bad_inputs_raise_clear_errors():
    cam = kc.GradCAM(gap_model(classes=4))
    with pytest.raises(ValueError, match=r"one image \(H, W, C\) or a batch"):
        cam(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="1 channel.*expects 3"):
        cam(np.zeros((2, 16, 16, 1)))
    with pytest.raises(ValueError, match="height 20.*resize them to 16x16"):
        cam(np.zeros((2, 20, 16, 3)))
    with pytest.raises(ValueError, match="empty batch"):
        cam(np.zeros((0, 16, 16, 3)))
    with pytest.raises(ValueError, match="class index 4, out of range.*4 classes"):
        cam(_images(2), targets=4)
    with pytest.raises(ValueError, match="class index -2"):
        cam(_images(2), targets=[0, -2])
    with pytest.raises(ValueError, match="one class per image: 2 images"):
        cam(_images(2), targets=[0, 1, 2])
    with pytest.raises(TypeError, match="`targets` must be None"):
        cam(_images(2), targets="cat")
    with pytest.raises(TypeError, match="numeric"):
        cam(np.array([["a"]]))
    bad = _images(3)
    bad[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values \\(first in image 1\\)"):
        cam(bad)
    with pytest.raises(ValueError, match="`score` must be one of"):
        kc.GradCAM(gap_model(), score="softmax")


def test_dead_features_give_zero_maps_not_nan():
    model = gap_model()
    conv = model.get_layer("last_conv")
    conv.bias.assign(np.full(conv.bias.shape, -1e3, "float32"))  # ReLU kills every activation
    for method in GRADIENT_METHODS:
        maps = method(model)(_images(2))
        assert np.isfinite(maps).all() and (maps == 0).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    images=arrays(
        np.float32,
        (2, 16, 16, 3),
        elements=st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False),
    ),
    method_index=st.integers(0, len(GRADIENT_METHODS) - 1),
)
def test_maps_are_never_nan_and_always_in_unit_range(images, method_index):
    cam = _hypothesis_cams()[method_index]
    maps = cam(images)
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    constant = cam(np.full((1, 16, 16, 3), images.flat[0], "float32"))
    assert np.isfinite(constant).all()


_CAMS: list = []


def _hypothesis_cams():
    if not _CAMS:
        keras.utils.set_random_seed(0)
        model = gap_model()
        _CAMS.extend(method(model) for method in GRADIENT_METHODS)
    return _CAMS


def test_sequential_with_softmax_activation_layer():
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            layers.Conv2D(3, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(2),
            layers.Activation("softmax"),
        ]
    )
    maps = kc.GradCAMPlusPlus(model)(np.random.default_rng(0).normal(size=(2, 12, 12, 1)))
    assert maps.shape == (2, 12, 12) and np.isfinite(maps).all()
