"""Element-wise Grad-CAM, Smooth Grad-CAM++, ShapleyCAM, FinerCAM, Guided Backprop and Guided
Grad-CAM: golden weights, slow references written here, identities, the model left untouched."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers
from tiny_models import gap_model, oblong_split_model

import keras_cam as kc
from keras_cam.methods.gradient import finer_scores, plus_plus_weights, shapley_weights
from keras_cam.methods.guided import positive_gradient, saliency


def _images(n, seed=0, size=(24, 40)):
    return np.random.default_rng(seed).uniform(0, 1, (n, *size, 3)).astype("float32")


def _logits_of(head):
    """The head's logits from its features, written from its layers (independent of keras_cam)."""
    pre = keras.Model(head.input, head.get_layer("classifier").input)
    dense = head.get_layer("classifier")
    return lambda features: pre(features) @ dense.kernel + dense.bias


def _close(got, expected):
    scale = max(np.abs(expected).max(), 1e-12)
    np.testing.assert_allclose(got / scale, expected / scale, atol=1e-5)


def _plus_plus(values, d1, d2, d3):
    """Eq. 19 in NumPy with explicit loops over channels."""
    weights = np.zeros(values.shape[-1])
    for c in range(values.shape[-1]):
        denominator = 2 * d2[..., c] + values[..., c].sum() * d3[..., c]
        alpha = np.divide(d2[..., c], denominator, out=np.zeros_like(denominator),
                          where=denominator != 0)
        weights[c] = (alpha * np.maximum(d1[..., c], 0)).sum()
    return weights


# ---------------------------------------------------------------- golden weight functions
def test_element_wise_cam_by_hand():
    features = tf.constant([[[[1.0, 2.0], [3.0, 0.0]]]])  # 1x2 positions, 2 channels
    grads = tf.constant([[[[1.0, -1.0], [-1.0, 5.0]]]])
    # position 0: relu(1) + relu(-2) = 1; position 1: relu(-3) + relu(0) = 0
    got = kc.GradCAMElementWise.compute_cam(None, features, grads).numpy()
    np.testing.assert_allclose(got, [[[1.0, 0.0]]])
    # HiResCAM sums first: relu(1 - 2) = 0 at position 0
    np.testing.assert_allclose(kc.HiResCAM.compute_cam(None, features, grads), [[[0.0, 0.0]]])


def test_plus_plus_weights_of_averaged_derivatives_by_hand():
    # one channel, 1x2 positions: A = [1, 3] (sum 4), D1 = [1, -1], D2 = [2, 1], D3 = [1, .5]
    # alpha = D2 / (2 D2 + 4 D3) = [2/8, 1/4]; w = .25 * relu(1) + .25 * relu(-1) = .25
    features = tf.constant([[[[1.0], [3.0]]]])
    d1, d2, d3 = (tf.constant([[[[a], [b]]]]) for a, b in ((1.0, -1.0), (2.0, 1.0), (1.0, 0.5)))
    np.testing.assert_allclose(plus_plus_weights(features, d1, d2, d3), [[0.25]])


def test_shapley_weights_by_hand():
    grads = tf.constant([[[[1.0], [2.0]], [[3.0], [4.0]]]])
    hessian_activations = tf.constant([[[[2.0], [0.0]], [[0.0], [4.0]]]])
    # g - H A / 2 = [0, 2, 3, 2]: mean 1.75
    np.testing.assert_allclose(shapley_weights(grads, hessian_activations), [[1.75]])


def test_finer_scores_by_hand():
    outputs = tf.constant([[1.0, 3.0, 2.5, 0.0]])
    # class 1 (score 3): distances 2, -, .5, 3 -> the two closest are classes 2 and 0
    p = np.exp([1.0, 3.0, 2.5, 0.0]) / np.exp([1.0, 3.0, 2.5, 0.0]).sum()
    alpha = 0.5
    expected = (p[2] * (3 - alpha * 2.5) + p[0] * (3 - alpha * 1.0)) / (p[2] + p[0])
    got = finer_scores(outputs, outputs, tf.constant([1]), alpha, 2)
    np.testing.assert_allclose(got, [expected], rtol=1e-6)
    # alpha 0: the class's own score
    np.testing.assert_allclose(finer_scores(outputs, outputs, tf.constant([1]), 0.0, 3), [3.0])


def test_positive_gradient_and_saliency_by_hand():
    values = tf.constant([1.0, -2.0, 3.0])
    with tf.GradientTape() as tape:
        tape.watch(values)
        out = positive_gradient(values)
        total = tf.reduce_sum(out * tf.constant([2.0, -1.0, -3.0]))
    np.testing.assert_array_equal(out, values)
    np.testing.assert_array_equal(tape.gradient(total, values), [2.0, 0.0, 0.0])
    np.testing.assert_array_equal(saliency(tf.constant([[[[0.5, -2.0, 1.0]]]])), [[[2.0]]])


# ---------------------------------------------------------------- slow references
def test_element_wise_gradcam_matches_a_slow_reference():
    model, features_model, head = oblong_split_model()
    logits_of = _logits_of(head)
    images, classes = _images(3), [2, 0, 3]
    maps = kc.GradCAMElementWise(model, layer="target")(
        images, targets=classes, upsample=False, normalize=False
    )
    for image, cls, got in zip(images, classes, maps):
        features = tf.constant(features_model(image[None]))
        with tf.GradientTape() as tape:
            tape.watch(features)
            score = logits_of(features)[0, cls]
        grads = tape.gradient(score, features).numpy()[0].astype(np.float64)
        values = features.numpy()[0].astype(np.float64)
        expected = np.zeros(values.shape[:2])
        for c in range(values.shape[-1]):
            expected += np.maximum(grads[..., c] * values[..., c], 0)
        _close(got, expected)


def test_smooth_gradcam_plus_plus_matches_a_slow_reference():
    model, features_model, head = oblong_split_model()
    logits_of = _logits_of(head)
    images, classes = _images(2, seed=1), [1, 3]
    n, std, seed = 3, 0.2, 11
    maps = kc.SmoothGradCAMPlusPlus(model, layer="target", n_samples=n, noise_std=std, seed=seed)(
        images, targets=classes, upsample=False, normalize=False
    )
    noise = tf.random.stateless_normal([n, 1, 24, 40, 3], seed=[seed, 0]).numpy()
    for image, cls, got in zip(images, classes, maps):
        values = features_model(image[None]).numpy()[0].astype(np.float64)
        sample_grads = []
        for s in range(n):
            noisy = image + std * (image.max() - image.min()) * noise[s, 0]
            features = tf.constant(features_model(noisy[None].astype("float32")))
            with tf.GradientTape() as tape:
                tape.watch(features)
                score = logits_of(features)[0, cls]
            sample_grads.append(tape.gradient(score, features).numpy()[0].astype(np.float64))
        g = np.stack(sample_grads)
        weights = _plus_plus(values, g.mean(0), (g**2).mean(0), (g**3).mean(0))
        _close(got, np.maximum((values * weights).sum(-1), 0))


def test_shapley_cam_matches_a_slow_second_order_reference():
    model, features_model, head = oblong_split_model()
    logits_of = _logits_of(head)
    images, classes = _images(3, seed=2), [0, 1, 2]
    maps = kc.ShapleyCAM(model, layer="target")(
        images, targets=classes, upsample=False, normalize=False
    )
    for image, cls, got in zip(images, classes, maps):
        features = tf.constant(features_model(image[None]))
        with tf.GradientTape() as outer:
            outer.watch(features)
            with tf.GradientTape() as inner:
                inner.watch(features)
                score = logits_of(features)[0, cls]
            grads = inner.gradient(score, features)
            directional = tf.reduce_sum(grads * tf.stop_gradient(features))
        hvp = outer.gradient(directional, features).numpy()[0].astype(np.float64)
        assert np.abs(hvp).max() > 1e-4  # the tanh head is curved: the second-order term counts
        values = features.numpy()[0].astype(np.float64)
        g = grads.numpy()[0].astype(np.float64)
        weights = np.array([(g[..., c] - 0.5 * hvp[..., c]).mean() for c in range(g.shape[-1])])
        _close(got, np.maximum((values * weights).sum(-1), 0))


def test_finer_cam_matches_a_slow_reference():
    model, features_model, head = oblong_split_model(classes=6)
    logits_of = _logits_of(head)
    images, classes = _images(3, seed=3), [5, 0, 2]
    alpha, comparisons = 0.7, 2
    maps = kc.FinerCAM(model, layer="target", alpha=alpha, comparisons=comparisons)(
        images, targets=classes, upsample=False, normalize=False
    )
    for image, cls, got in zip(images, classes, maps):
        features = tf.constant(features_model(image[None]))
        logits = logits_of(features).numpy()[0]
        distance = np.abs(logits - logits[cls])
        distance[cls] = np.inf
        similar = np.argsort(distance, kind="stable")[:comparisons]
        with tf.GradientTape() as tape:
            tape.watch(features)
            y = logits_of(features)[0]
            e = [tf.exp(y[j] - tf.reduce_max(y)) for j in similar]
            terms = [e_j * (y[cls] - alpha * y[j]) for e_j, j in zip(e, similar)]
            score = tf.add_n(terms) / tf.add_n(e)
        grads = tape.gradient(score, features).numpy()[0].astype(np.float64)
        values = features.numpy()[0].astype(np.float64)
        _close(got, np.maximum((values * grads.mean(axis=(0, 1))).sum(-1), 0))


def _guided_relu_model():
    """24x40: Conv2D(relu) -> Conv2D -> ReLU layer -> GAP -> Dense(softmax)."""
    inputs = keras.Input((24, 40, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = layers.Conv2D(5, 3, padding="same", name="c2")(x)
    x = layers.ReLU(name="r2")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="classifier")(x))


def _reference_guided(model, image, cls):
    """Guided backprop written out: the forward pass from the layers' weights, with a guided
    ReLU (gradient `dy * [z > 0] * [dy > 0]`) on the pre-activations."""

    @tf.custom_gradient
    def guided_relu(z):
        def gradient(dy):
            return dy * tf.cast(z > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)

        return tf.nn.relu(z), gradient

    k1, b1 = model.get_layer("c1").get_weights()
    k2, b2 = model.get_layer("c2").get_weights()
    w, b = model.get_layer("classifier").get_weights()
    x = tf.constant(image[None])
    with tf.GradientTape() as tape:
        tape.watch(x)
        a1 = guided_relu(tf.nn.conv2d(x, k1, 1, "SAME") + b1)
        a2 = guided_relu(tf.nn.conv2d(a1, k2, 1, "SAME") + b2)
        score = (tf.reduce_mean(a2, axis=(1, 2)) @ w + b)[0, cls]
    gradients = tape.gradient(score, x).numpy()[0].astype(np.float64)
    # Grad-CAM at the ReLU layer (GAP -> Dense: the mean gradient is w[:, c] / (h w), times h w)
    features = tf.nn.relu(tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(x, k1, 1, "SAME") + b1), k2, 1,
                                       "SAME") + b2).numpy()[0].astype(np.float64)
    coarse = np.maximum((features * w[:, cls] / (24 * 40)).sum(-1), 0)
    return np.abs(gradients).max(axis=-1), coarse


def test_guided_backprop_and_guided_gradcam_match_a_slow_reference():
    model = _guided_relu_model()
    images, classes = _images(2, seed=4), [2, 0]
    guided = kc.GuidedBackprop(model)(images, targets=classes, normalize=False)
    product = kc.GuidedGradCAM(model)(images, targets=classes, normalize=False)
    for image, cls, got_guided, got_product in zip(images, classes, guided, product):
        expected_guided, coarse = _reference_guided(model, image, cls)
        assert got_guided.shape == (24, 40)
        _close(got_guided, expected_guided)
        _close(got_product, expected_guided * coarse)  # the ReLU layer keeps the 24x40 grid


# ---------------------------------------------------------------- identities
def test_element_wise_gradcam_is_hirescam_with_the_relu_inside():
    model, _, _ = oblong_split_model()
    images = _images(3, seed=5)
    element = kc.GradCAMElementWise(model, layer="target")(images, upsample=False, normalize=False)
    hires = kc.HiResCAM(model, layer="target")(images, upsample=False, normalize=False)
    assert (element >= hires - 1e-6).all() and (element > hires + 1e-4).any()
    # where every g * A >= 0 (positive kernel on ReLU features of a GAP head) they agree
    positive = gap_model(size=16)
    positive.get_layer("classifier").set_weights(
        [np.abs(w) for w in positive.get_layer("classifier").get_weights()]
    )
    x = _images(2, seed=6, size=(16, 16))
    np.testing.assert_allclose(
        kc.GradCAMElementWise(positive)(x, targets=1, normalize=False),
        kc.HiResCAM(positive)(x, targets=1, normalize=False), rtol=1e-5, atol=1e-7,
    )


def test_one_clean_sample_of_smooth_gradcam_plus_plus_is_gradcam_plus_plus():
    model, _, _ = oblong_split_model()
    images = _images(2, seed=7)
    clean = kc.SmoothGradCAMPlusPlus(model, "target", n_samples=1, noise_std=0.0)
    plain = kc.GradCAMPlusPlus(model, "target")
    np.testing.assert_allclose(clean(images, normalize=False), plain(images, normalize=False),
                               rtol=1e-5, atol=1e-7)
    noisy = kc.SmoothGradCAMPlusPlus(model, "target", n_samples=4, noise_std=0.3)
    assert not np.allclose(noisy(images), plain(images), atol=1e-3)
    np.testing.assert_array_equal(noisy(images), noisy(images))  # seeded: the same each call


def test_shapley_cam_on_a_linear_head_is_gradcam_and_finer_cam_without_alpha_too():
    model = gap_model(size=16)
    images = _images(3, seed=8, size=(16, 16))
    gradcam = kc.GradCAM(model)(images, normalize=False)
    np.testing.assert_allclose(kc.ShapleyCAM(model)(images, normalize=False), gradcam,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(kc.FinerCAM(model, alpha=0.0)(images, normalize=False), gradcam,
                               rtol=1e-5, atol=1e-7)


def test_guided_methods_leave_the_model_and_later_explainers_untouched():
    model = _guided_relu_model()
    images = _images(2, seed=9)
    x = tf.constant(images)
    weights_before = [w.numpy().copy() for w in model.weights]
    gradcam_before = kc.GradCAM(model)(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(model(x)[:, 1])
    plain_before = tape.gradient(score, x).numpy()

    kc.GuidedBackprop(model)(images)
    kc.GuidedGradCAM(model)(images)

    for before, after in zip(weights_before, model.weights):
        np.testing.assert_array_equal(before, after.numpy())
    np.testing.assert_array_equal(kc.GradCAM(model)(images), gradcam_before)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(model(x)[:, 1])
    np.testing.assert_array_equal(tape.gradient(score, x).numpy(), plain_before)
    # and the guided gradient really differs from the plain one
    assert (plain_before < 0).any()


# ---------------------------------------------------------------- refusals and warnings
def test_bad_options_and_targets_are_refused_with_the_argument_named():
    model = gap_model(size=16)
    with pytest.raises(ValueError, match=r"`comparisons` must be at most 3 .*4 classes.*received 5"):
        kc.FinerCAM(model, comparisons=5)
    with pytest.raises(ValueError, match=r"`alpha` must be a finite number >= 0.0; received -1"):
        kc.FinerCAM(model, alpha=-1)
    with pytest.raises(ValueError, match=r"Finer-CAM explains one class per image"):
        kc.FinerCAM(model)(_images(1, size=(16, 16)), targets=lambda logits: logits[:, 0])
    inputs = keras.Input((16, 16, 3))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="relu")(inputs))
    single = keras.Model(inputs, layers.Dense(1)(x))
    with pytest.raises(ValueError, match=r"single output score.*Use `keras_cam.GradCAM`"):
        kc.FinerCAM(single, head="linear")
    with pytest.raises(ValueError, match=r"`n_samples` must be at least 1; received 0"):
        kc.SmoothGradCAMPlusPlus(model, n_samples=0)
    with pytest.raises(ValueError, match=r"`noise_std` must be a finite number >= 0.0; received"):
        kc.SmoothGradCAMPlusPlus(model, noise_std=-0.1)


def test_guided_backprop_warns_once_when_the_model_has_no_relu():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, activation="tanh")(inputs)
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(
        layers.GlobalAveragePooling2D()(x)))
    with pytest.warns(UserWarning, match=r"has no ReLU.*plain input gradient") as record:
        kc.GuidedBackprop(model)
    assert len([w for w in record if "no ReLU" in str(w.message)]) == 1
