"""The fused compiled pass of the gradient methods against slow references written here.

Every expected value is computed independently of keras_cam: eager `tf.GradientTape` passes
through sub-models built in the test, the methods' formulas in NumPy, `tf.image.resize` for the
placement (the explained layer sits after a 2x2 average pooling, so each feature cell covers a
2x2 block of pixels and the placement is exactly a half-pixel bilinear resize), and
`model.predict` for the scores.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cam as kc
from keras_cam.targets import SegmentationTarget, SimilarityTarget

HEIGHT, WIDTH, CLASSES = 24, 40, 4
PER_PASS = 4


def _model() -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="dense")(x)
    return keras.Model(inputs, outputs, name="fused24x40")


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return _model()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((70, HEIGHT, WIDTH, 3)).astype(np.float32)


def _gap_logits(model: keras.Model, features: tf.Tensor) -> tf.Tensor:
    dense = model.get_layer("dense")
    return tf.matmul(tf.reduce_mean(features, axis=(1, 2)), dense.kernel) + dense.bias


def _features_and_grads(model, images, score_of):
    """`A` at layer c2 and `dS/dA` by an eager tape; `score_of(logits, A) -> (B,)`."""
    features_model = keras.Model(model.input, model.get_layer("c2").output)
    with tf.GradientTape() as tape:
        features = features_model(tf.constant(images))
        tape.watch(features)
        total = tf.reduce_sum(score_of(_gap_logits(model, features)))
    return features.numpy(), tape.gradient(total, features).numpy()


def _class_score(classes):
    return lambda logits: tf.gather(logits, tf.constant(classes, tf.int32), batch_dims=1)


def _reference_raw(method: str, model, images, classes) -> np.ndarray:
    """Conv-resolution ReLU'd maps `(B, 12, 20)` by the papers' formulas, in NumPy."""
    if method == "cam":  # Zhou et al. 2016: M_c = sum_k w_kc A_k
        features = keras.Model(model.input, model.get_layer("c2").output)(images).numpy()
        kernel = model.get_layer("dense").kernel.numpy()
        return np.maximum(np.einsum("bhwk,kb->bhw", features, kernel[:, classes]), 0)
    features, grads = _features_and_grads(model, images, _class_score(classes))
    if method == "gradcam":  # w_k = mean_ij g
        combined = features * grads.mean(axis=(1, 2), keepdims=True)
    elif method == "hirescam":  # g (.) A
        combined = features * grads
    elif method == "layercam":  # ReLU(g) (.) A
        combined = features * np.maximum(grads, 0)
    elif method == "gradcam++":  # Eq. 19 as written
        total = features.sum(axis=(1, 2), keepdims=True)
        denominator = 2 * grads**2 + total * grads**3
        safe = np.where(denominator != 0, denominator, 1.0)
        alpha = np.where(denominator != 0, grads**2 / safe, 0.0)
        weights = (alpha * np.maximum(grads, 0)).sum(axis=(1, 2), keepdims=True)
        combined = features * weights
    else:
        raise AssertionError(method)
    return np.maximum(combined.sum(axis=-1), 0)


def _place(raw: np.ndarray) -> np.ndarray:
    return tf.image.resize(raw[..., None], (HEIGHT, WIDTH), "bilinear").numpy()[..., 0]


def _normalize(maps: np.ndarray, mode: str) -> np.ndarray:
    if mode == "none":
        return maps
    axes = tuple(range(1, maps.ndim))
    if mode == "batch":
        return maps / maps.max() if maps.max() > 0 else maps
    low, high = maps.min(axis=axes, keepdims=True), maps.max(axis=axes, keepdims=True)
    return np.where(high > low, (maps - low) / np.where(high > low, high - low, 1.0), 0.0)


METHODS = {
    "gradcam": kc.GradCAM,
    "gradcam++": kc.GradCAMPlusPlus,
    "layercam": kc.LayerCAM,
    "hirescam": kc.HiResCAM,
    "cam": kc.CAM,
}


@pytest.mark.parametrize("name", list(METHODS))
def test_fused_pass_matches_slow_reference_batches_modes_and_chunks(name, model, images):
    """Every batch size around `images_per_pass` (1, 4, 5, 70 with 4 per pass), every
    normalize mode, upsample on and off, against maps written out by hand."""
    cam = METHODS[name](model) if name == "cam" else METHODS[name](model, "c2")
    cam.images_per_pass = PER_PASS
    top = model.predict(images, verbose=0).argmax(axis=-1)
    for count in (1, PER_PASS, PER_PASS + 1, 70):
        raw = _reference_raw(name, model, images[:count], top[:count])
        placed = _place(raw)
        scale = max(float(np.abs(placed).max()), 1e-6)
        for mode in ("image", "batch", "none"):
            got = cam(images[:count], normalize=mode)
            tolerance = 1e-4 * (scale if mode == "none" else 1.0)
            np.testing.assert_allclose(got, _normalize(placed, mode), atol=tolerance)
        np.testing.assert_allclose(
            cam(images[:count], upsample=False, normalize=False), raw, atol=1e-4 * scale
        )


def test_fused_pass_targets_lists_callables_and_target_objects(model, images):
    cam = kc.GradCAM(model, "c2")
    cam.images_per_pass = PER_PASS
    batch = images[:9]
    classes = np.array([0, 1, 2, 3, 0, 1, 2, 3, 1])
    expected = _place(_reference_raw("gradcam", model, batch, classes))
    expected = _normalize(expected, "image")
    np.testing.assert_allclose(cam(batch, targets=list(classes)), expected, atol=1e-4)
    np.testing.assert_allclose(
        cam(batch, targets=[kc.targets.ClassTarget(int(c)) for c in classes]), expected, atol=1e-4
    )
    # a callable differentiating a mix of two logits, image per image
    mix = lambda logits: 2.0 * logits[:, 1] - logits[:, 3]  # noqa: E731
    features, grads = _features_and_grads(model, batch, mix)
    raw = np.maximum((features * grads.mean(axis=(1, 2), keepdims=True)).sum(-1), 0)
    np.testing.assert_allclose(cam(batch, targets=mix), _normalize(_place(raw), "image"),
                               atol=1e-4)


def test_callable_closure_read_at_each_call(model, images):
    """A callable's closure is read at call time: the second call explains the new value."""
    cam = kc.GradCAM(model, "c2")
    chosen = {"class": 0}
    target = lambda logits: logits[:, chosen["class"]]  # noqa: E731
    first = cam(images[:5], targets=target)
    chosen["class"] = 2
    second = cam(images[:5], targets=target)
    for got, cls in ((first, 0), (second, 2)):
        want = _normalize(_place(_reference_raw("gradcam", model, images[:5], [cls] * 5)), "image")
        np.testing.assert_allclose(got, want, atol=1e-4)


def _segmentation_model() -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="seg_features")(inputs)
    outputs = keras.layers.Conv2D(2, 1, name="seg_logits")(x)
    return keras.Model(inputs, outputs, name="seg24x40")


def test_segmentation_masks_per_image_across_chunks(images):
    """Masks per image are indexed by the image's place in the call, not in its chunk."""
    model = _segmentation_model()
    batch = images[:7]
    masks = np.zeros((7, HEIGHT, WIDTH), np.float32)
    for index in range(7):
        masks[index, :, 4 * index : 4 * index + 6] = 1.0
    cam = kc.GradCAM(model, "seg_features", head="linear")
    cam.images_per_pass = 3
    got = cam(batch, targets=SegmentationTarget(1, masks), normalize=False)
    features_model = keras.Model(model.input, model.get_layer("seg_features").output)
    with tf.GradientTape() as tape:
        features = features_model(tf.constant(batch))
        tape.watch(features)
        logits = model.get_layer("seg_logits")(features)
        total = tf.reduce_sum(logits[..., 1] * masks)
    grads = tape.gradient(total, features).numpy()
    weights = grads.mean(axis=(1, 2), keepdims=True)
    want = np.maximum((features.numpy() * weights).sum(-1), 0)
    np.testing.assert_allclose(got, want, atol=1e-5 * max(want.max(), 1.0))


def test_similarity_and_regression_targets(images):
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="emb_features")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="embedding")(x), name="embedder")
    batch = images[:6]
    references = np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32)
    cam = kc.GradCAM(model, "emb_features", head="linear")
    cam.images_per_pass = 4
    features_model = keras.Model(model.input, model.get_layer("emb_features").output)
    dense = model.get_layer("embedding")

    def reference(score_of):
        with tf.GradientTape() as tape:
            features = features_model(tf.constant(batch))
            tape.watch(features)
            embedding = tf.matmul(tf.reduce_mean(features, (1, 2)), dense.kernel) + dense.bias
            total = tf.reduce_sum(score_of(embedding))
        grads = tape.gradient(total, features).numpy()
        raw = np.maximum((features.numpy() * grads.mean(axis=(1, 2), keepdims=True)).sum(-1), 0)
        return _normalize(raw, "image")

    def cosine(embedding):
        unit = references / np.linalg.norm(references, axis=1, keepdims=True)
        return tf.reduce_sum(tf.math.l2_normalize(embedding, axis=1) * unit, axis=1)

    np.testing.assert_allclose(
        cam(batch, targets=SimilarityTarget(references), upsample=False),
        reference(cosine), atol=1e-4,
    )
    np.testing.assert_allclose(
        cam(batch, targets=kc.targets.RegressionTarget(2, "lower"), upsample=False),
        reference(lambda embedding: -embedding[:, 2]), atol=1e-4,
    )


def test_eigen_smooth_then_plain_is_the_plain_map(model, images):
    cam = kc.GradCAM(model, "c2")
    plain = _normalize(_place(_reference_raw(
        "gradcam", model, images[:5], model.predict(images[:5], verbose=0).argmax(-1))), "image")
    smoothed = cam(images[:5], eigen_smooth=True)
    assert np.abs(smoothed - plain).max() > 1e-2  # the switch did something
    np.testing.assert_allclose(cam(images[:5]), plain, atol=1e-4)


def test_aug_smooth_and_two_layers_against_references(model, images):
    batch = images[:5]
    top = model.predict(batch, verbose=0).argmax(-1)
    # layer=[c1, c2]: the mean of the per-image normalized maps of each layer, normalized again
    c1 = keras.Model(model.input, model.get_layer("c1").output)
    with tf.GradientTape() as tape:
        features = c1(tf.constant(batch))
        tape.watch(features)
        deeper = model.get_layer("c2")(model.get_layer("pool")(features))
        total = tf.reduce_sum(tf.gather(_gap_logits(model, deeper), top, batch_dims=1))
    grads = tape.gradient(total, features).numpy()
    first = _normalize(np.maximum((features.numpy() * grads.mean((1, 2), keepdims=True)).sum(-1),
                                  0), "image")
    second = _normalize(_place(_reference_raw("gradcam", model, batch, top)), "image")
    got = kc.GradCAM(model, ["c1", "c2"])(batch)
    np.testing.assert_allclose(got, _normalize((first + second) / 2, "image"), atol=1e-4)
    # aug_smooth: flips x intensities 1.0, 1.1, 0.9; top-1 read on the original images
    total = 0.0
    for flip in (False, True):
        for factor in (1.0, 1.1, 0.9):
            view = batch * factor
            view = view[:, :, ::-1] if flip else view
            maps = _normalize(_place(_reference_raw("gradcam", model, view, top)), "image")
            total = total + (maps[:, :, ::-1] if flip else maps)
    got = kc.GradCAM(model, "c2")(batch, aug_smooth=True)
    np.testing.assert_allclose(got, _normalize(total / 6, "image"), atol=1e-4)
