"""Eigen-CAM, KPCA-CAM, FEM, RandomCAM and EigenGrad-CAM: golden weights, slow references, identities."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import eigen_map, fem_map, kpca_map
from tiny_models import oblong_split_model

import keras_cam as kc
from keras_cam.methods.activation import fem_weights, random_weights
from keras_cam.methods.eigen import kernel_projection
from keras_cam.methods.projection import principal_projection


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 24, 40, 3)).astype("float32")


def _features_and_grads(features_model, head, images, classes):
    """Features and d(logit)/d(features) one image at a time, float64, from the halves."""
    logits_of = keras.Model(head.input, head.get_layer("classifier").input)
    dense = head.get_layer("classifier")
    values, grads = [], []
    for image, cls in zip(images, classes):
        features = tf.constant(features_model(image[None]))
        with tf.GradientTape() as tape:
            tape.watch(features)
            score = (logits_of(features) @ dense.kernel + dense.bias)[0, cls]
        values.append(features.numpy()[0].astype(np.float64))
        grads.append(tape.gradient(score, features).numpy()[0].astype(np.float64))
    return values, grads


def _close(got, expected):
    scale = max(np.abs(expected).max(), 1e-12)
    np.testing.assert_allclose(got / scale, expected / scale, atol=1e-5)


# ---------------------------------------------------------------- golden weight functions
def test_fem_weights_follow_the_k_sigma_rule_by_hand():
    # one image, 2x2 positions, 2 channels
    # channel 0: [0, 0, 0, 4]: mean 1, std sqrt(3) = 1.732; k=1: threshold 2.732 -> one of 4
    # channel 1: [1, 1, 1, 1]: std 0, threshold 1, nothing strictly above -> 0
    features = tf.constant([[[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [4.0, 1.0]]]])
    np.testing.assert_allclose(fem_weights(features, k=1.0), [[0.25, 0.0]])
    # k=0: channel 0 above its mean at one position of four
    np.testing.assert_allclose(fem_weights(features, k=0.0), [[0.25, 0.0]])
    # k=2: 1 + 2 * 1.732 = 4.46 > 4: nothing stands out
    np.testing.assert_allclose(fem_weights(features, k=2.0), [[0.0, 0.0]])


def test_principal_projection_of_a_hand_matrix():
    # 1x3 positions, 2 channels, rank 1 after centring: rows (0,0), (1,2), (2,4)
    # centred: (-1,-2), (0,0), (1,2); v1 = (1,2)/sqrt(5); projections -sqrt(5), 0, sqrt(5)
    weighted = tf.constant([[[[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]]])
    root5 = np.sqrt(5.0)
    np.testing.assert_allclose(principal_projection(weighted), [[[-root5, 0.0, root5]]], rtol=1e-6)
    # the orientation follows the activations, not the SVD's sign: mirrored data, mirrored map
    mirrored = tf.reverse(weighted, axis=[2])
    np.testing.assert_allclose(principal_projection(mirrored), [[[root5, 0.0, -root5]]], rtol=1e-6)


def test_kernel_projection_of_two_positions_by_hand():
    # two positions (0,0) and (2,0): centred (-1,0), (1,0); |x1 - x2|^2 = 4; gamma = 1/C = 1/2
    # K12 = exp(-2); centred kernel [[a, -a], [-a, a]], a = (1 - K12) / 2; top eigenpair
    # lambda = 1 - K12, a = (1, -1)/sqrt(2); projection = sqrt((1 - K12)/2) * (-1, 1) oriented
    # so it agrees with the summed activations (-1, 1).
    weighted = tf.constant([[[[0.0, 0.0], [2.0, 0.0]]]])
    value = np.sqrt((1.0 - np.exp(-2.0)) / 2.0)
    np.testing.assert_allclose(kernel_projection(weighted, "rbf"), [[[-value, value]]], rtol=1e-5)
    sigmoid = kernel_projection(weighted, "sigmoid", gamma=1.0)
    # sigmoid: K = tanh(x.x' + 1): K11 = K22 = tanh(2), K12 = tanh(0) = 0
    # centred: a = (tanh(2) - 0) / 2 on the diagonal; lambda = tanh(2)
    expected = np.sqrt(np.tanh(2.0) / 2.0)
    np.testing.assert_allclose(sigmoid, [[[-expected, expected]]], rtol=1e-5)


def test_random_weights_are_seeded_uniform_and_shared_by_the_batch():
    weights = random_weights(tf.constant(50), tf.constant(3), seed=7).numpy()
    assert weights.shape == (3, 50) and (weights >= -1).all() and (weights < 1).all()
    np.testing.assert_array_equal(weights[0], weights[2])
    np.testing.assert_array_equal(weights, random_weights(tf.constant(50), tf.constant(3), 7))
    assert not np.allclose(weights, random_weights(tf.constant(50), tf.constant(3), 8))
    assert weights.min() < -0.5 < 0.5 < weights.max()  # spread over [-1, 1)


# ---------------------------------------------------------------- slow references on a model
def test_eigen_cam_and_eigengrad_cam_match_a_slow_svd_reference():
    model, features_model, head = oblong_split_model()
    images = _images(3)
    classes = [0, 3, 1]
    values, grads = _features_and_grads(features_model, head, images, classes)
    eigen = kc.EigenCAM(model, layer="target")(images, upsample=False, normalize=False)
    eigengrad = kc.EigenGradCAM(model, layer="target")(
        images, targets=classes, upsample=False, normalize=False
    )
    for i in range(3):
        _close(eigen[i], eigen_map(values[i]))
        _close(eigengrad[i], eigen_map(values[i] * grads[i]))
        assert eigen[i].max() > 0 and eigengrad[i].max() > 0


def test_kpca_cam_matches_a_slow_kernel_reference_with_either_kernel():
    model, features_model, _ = oblong_split_model()
    images = _images(2, seed=3)
    maps = kc.KPCACAM(model, layer="target", kernel="rbf", gamma=0.5)(
        images, upsample=False, normalize=False
    )
    default = kc.KPCACAM(model, layer="target")(images, upsample=False, normalize=False)
    for image, got, got_default in zip(images, maps, default):
        values = features_model(image[None]).numpy()[0].astype(np.float64)
        _close(got, kpca_map(values, gamma=0.5, kernel="rbf"))
        _close(got_default, kpca_map(values))


def test_fem_and_random_cam_match_slow_references():
    model, features_model, _ = oblong_split_model()
    images = _images(3, seed=4)
    fem = kc.FEM(model, layer="target", k=1.0)(images, upsample=False, normalize=False)
    random = kc.RandomCAM(model, layer="target", seed=5)(images, upsample=False, normalize=False)
    drawn = tf.random.stateless_uniform([6], seed=[5, 0], minval=-1.0, maxval=1.0).numpy()
    for i, image in enumerate(images):
        values = features_model(image[None]).numpy()[0].astype(np.float64)
        _close(fem[i], fem_map(values, k=1.0))
        _close(random[i], np.maximum((values * drawn).sum(-1), 0))


# ---------------------------------------------------------------- identities and properties
def test_eigen_cam_of_a_rank_one_activation_tensor_is_that_component():
    # a model whose explained layer outputs u(x, y) * v_c: Conv2D 1x1 from a one-channel map
    height, width = 24, 40
    component = np.random.default_rng(0).uniform(0, 1, (height, width)).astype("float32")
    loadings = np.array([0.5, 2.0, 1.0, 3.0], "float32")
    inputs = keras.Input((height, width, 1))
    rank_one = keras.layers.Conv2D(4, 1, use_bias=False, name="rank_one")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(rank_one)
    )
    model = keras.Model(inputs, outputs)
    model.get_layer("rank_one").set_weights([loadings.reshape(1, 1, 1, 4)])
    maps = kc.EigenCAM(model, layer="rank_one")(component[None, ..., None], upsample=False, normalize=False)
    expected = np.maximum(component - component.mean(), 0) * np.linalg.norm(loadings)
    np.testing.assert_allclose(maps[0], expected, rtol=1e-4, atol=1e-5)
    # negative loadings: the same component, the same map (the sign follows the activations)
    model.get_layer("rank_one").set_weights([-loadings.reshape(1, 1, 1, 4)])
    flipped = kc.EigenCAM(model, layer="rank_one")(component[None, ..., None], upsample=False, normalize=False)
    np.testing.assert_allclose(flipped[0], np.maximum(component.mean() - component, 0)
                               * np.linalg.norm(loadings), rtol=1e-4, atol=1e-5)


def test_activation_methods_ignore_the_target_and_random_cam_is_reproducible():
    model, _, _ = oblong_split_model()
    images = _images(2, seed=2)
    for method in (kc.EigenCAM, kc.KPCACAM, kc.FEM, kc.RandomCAM):
        cam = method(model, layer="target")
        assert not cam.requires_gradients
        np.testing.assert_array_equal(cam(images, targets=0), cam(images, targets=2))
    first = kc.RandomCAM(model, seed=3)(images)
    np.testing.assert_array_equal(first, kc.RandomCAM(model, seed=3)(images))
    assert not np.allclose(first, kc.RandomCAM(model, seed=4)(images))


def test_bad_options_are_refused_with_the_argument_named():
    model, _, _ = oblong_split_model()
    with pytest.raises(ValueError, match=r"`kernel` must be one of \('rbf', 'sigmoid'\); received 'poly'"):
        kc.KPCACAM(model, kernel="poly")
    with pytest.raises(ValueError, match=r"`gamma` must be a finite number > 0.0; received -1"):
        kc.KPCACAM(model, gamma=-1)
    with pytest.raises(TypeError, match=r"`gamma` must be a number; received 'auto'"):
        kc.KPCACAM(model, gamma="auto")
    with pytest.raises(ValueError, match=r"`k` must be a finite number >= 0.0; received -0.5"):
        kc.FEM(model, k=-0.5)
    with pytest.raises(TypeError, match=r"`seed` must be an int; received 1.5"):
        kc.RandomCAM(model, seed=1.5)
    with pytest.raises(ValueError, match=r"`seed` must be >= 0; received -1"):
        kc.RandomCAM(model, seed=-1)
