"""`eigen_smooth` is chosen when a pass is traced (a per-thread flag, part of each compiled
function's key), and Grad-CAM's channel sum is one contraction (keras_cam/methods/base.py,
keras_cam/methods/perturbation.py)."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers
from references import eigen_map
from tiny_models import CountingIdentity

import keras_cam as kc
from keras_cam.methods.base import channel_sum, eigen_smoothing

HEIGHT, WIDTH = 24, 40
TARGETS = [0, 2, 1]


def _model() -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = CountingIdentity(name="count")(inputs)
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="first")(x)
    x = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="feat")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, layers.Dense(3, name="dense")(x))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype("float32")


def _features_and_gradients(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, ...]:
    """`A` of layer `feat` and `dS/dA` of each image's `TARGETS` logit, by hand."""
    features = keras.Model(model.input, model.get_layer("feat").output)(images)
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = model.get_layer("dense")(model.get_layer("gap")(features))
        total = tf.reduce_sum(tf.gather(logits, TARGETS[: len(images)], batch_dims=1))
    return features.numpy().astype(np.float64), tape.gradient(total, features).numpy()


def _eigen_maps(weighted: np.ndarray) -> np.ndarray:
    """`ReLU(principal_projection)` of each `(h, w, C)` image by NumPy SVD (`eigen_map`: the
    centred positions projected on the first right singular vector, oriented to agree with
    their sum), checking that each first component is well defined."""
    for values in weighted:
        centred = values.reshape(-1, values.shape[-1]) - values.mean(axis=(0, 1))
        singular = np.linalg.svd(centred, compute_uv=False)
        assert singular[0] > 1.05 * singular[1]
    return np.stack([eigen_map(values) for values in weighted])


def _grad_cam_references(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, ...]:
    """Raw Grad-CAM maps (Selvaraju et al., Eq. 1-2) and their `eigen_smooth` version:
    ReLU of the first principal component of `w_k A^k`."""
    features, grads = _features_and_gradients(model, images)
    weighted = features * grads.mean(axis=(1, 2), keepdims=True)
    plain = np.maximum(weighted.sum(axis=-1), 0.0)
    return plain, _eigen_maps(weighted)


def _assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


# ------------------------------------------------------------------ threads
def test_concurrent_plain_and_eigen_calls_each_get_their_own_maps():
    model = _model()
    images = _images(3, seed=1)
    plain, eigen = _grad_cam_references(model, images)
    assert np.abs(plain - eigen).max() > 0.1 * plain.max()  # the two maps differ
    cam = kc.GradCAM(model, "feat")
    rounds = 25
    start = threading.Barrier(2)
    results: dict[bool, list[np.ndarray]] = {False: [], True: []}
    errors: list[BaseException] = []

    def explain(eigen_smooth: bool) -> None:
        try:
            for _ in range(rounds):
                start.wait(timeout=60)  # every call of one thread starts with one of the other
                maps = cam(images, TARGETS, upsample=False, normalize=False,
                           eigen_smooth=eigen_smooth)
                results[eigen_smooth].append(maps)
        except BaseException as error:  # reported by the main thread
            start.abort()
            errors.append(error)

    threads = [threading.Thread(target=explain, args=(flag,)) for flag in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results[False]) == len(results[True]) == rounds
    for maps in results[False]:
        _assert_close(maps, plain)
    for maps in results[True]:
        _assert_close(maps, eigen)
    assert not eigen_smoothing(cam)  # nothing left switched on, in this thread either


def test_element_wise_eigen_smooth_projects_the_rectified_products():
    """pytorch-grad-cam's `GradCAMElementWise`: the component of `ReLU(g ⊙ A)`, then ReLU."""
    model = _model()
    images = _images(2, seed=2)
    features, grads = _features_and_gradients(model, images)
    positive = np.maximum(grads * features, 0.0)
    cam = kc.GradCAMElementWise(model, "feat")
    smooth = cam(images, TARGETS[:2], upsample=False, normalize=False, eigen_smooth=True)
    _assert_close(smooth, _eigen_maps(positive))
    plain = cam(images, TARGETS[:2], upsample=False, normalize=False)
    _assert_close(plain, positive.sum(axis=-1))


@pytest.mark.parametrize("method", [kc.GuidedBackprop, kc.GuidedGradCAM])
def test_guided_methods_refuse_eigen_smooth(method):
    with pytest.raises(ValueError, match="does not combine weighted activations, so "
                                         "`eigen_smooth` does not apply"):
        method(_model(), "feat")(_images(1), eigen_smooth=True)


# ------------------------------------------------------------------ no retracing
def test_plain_and_eigen_calls_trace_each_gradient_pass_once():
    model = _model()
    counter = model.get_layer("count")
    images = _images(2, seed=3)
    cam = kc.GradCAM(model, "feat")
    built = counter.runs
    cam(images, eigen_smooth=False)
    assert counter.runs == built + 1  # one trace of the plain pass
    cam(images, eigen_smooth=True)
    assert counter.runs == built + 2  # one of the eigen pass
    for eigen_smooth in (False, True, False, True):
        cam(images, eigen_smooth=eigen_smooth)
    assert counter.runs == built + 2
    assert sorted(cam._passes) == [(True, "image", False, False), (True, "image", False, True)]


def test_plain_and_eigen_calls_trace_each_score_cam_function_once():
    model = _model()
    counter = model.get_layer("count")
    images = _images(1, seed=4)
    cam = kc.ScoreCAM(model, "feat", batch_size=4, verbose=0)  # 6 channels: two chunks
    for eigen_smooth in (False, True):
        cam(images, eigen_smooth=eigen_smooth)
    traced = counter.runs
    for eigen_smooth in (False, True, False, True):
        cam(images, eigen_smooth=eigen_smooth)
    assert counter.runs == traced
    for eigen_smooth in (False, True):
        _, begin, step = cam._class_streams[eigen_smooth]
        assert begin.experimental_get_tracing_count() == step.experimental_get_tracing_count() == 1


# ------------------------------------------------------------------ the channel sum
@pytest.mark.parametrize("cells", [(7,), (3, 5), (2, 3, 4)], ids=["1d", "2d", "3d"])
def test_channel_sum_is_the_weighted_sum_of_channels(cells):
    rng = np.random.default_rng(len(cells))
    features = rng.normal(size=(2, *cells, 6)).astype(np.float32)
    channel = rng.normal(size=(2, 6)).astype(np.float32)
    position = rng.normal(size=(2, *cells, 6)).astype(np.float32)
    by_channel = np.einsum("b...c,bc->b...", features.astype(np.float64), channel)
    by_position = (features.astype(np.float64) * position).sum(axis=-1)
    for weights, expected in ((channel, by_channel), (position, by_position)):
        got = channel_sum(tf.constant(features), tf.constant(weights)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        cam = kc.BaseCAM.compute_cam(None, tf.constant(features), tf.constant(weights))
        np.testing.assert_allclose(cam.numpy(), np.maximum(expected, 0.0), rtol=1e-5, atol=1e-5)


def test_compute_cam_outside_a_call_is_the_plain_sum():
    cam = kc.GradCAM(_model(), "feat")
    features = tf.constant(np.random.default_rng(5).normal(size=(1, 3, 5, 6)), tf.float32)
    weights = tf.constant(np.random.default_rng(6).normal(size=(1, 6)), tf.float32)
    expected = np.maximum(np.einsum("bhwc,bc->bhw", features.numpy(), weights.numpy()), 0.0)
    np.testing.assert_allclose(cam.compute_cam(features, weights).numpy(), expected, atol=1e-5)
