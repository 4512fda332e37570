"""The fused compiled pass of the gradient methods against slow references written here.

Every expected value is computed independently of keras_cam: eager `tf.GradientTape` passes
through sub-models built in the test, the methods' formulas in NumPy, `tf.image.resize` for the
placement (the explained layer sits after a 2x2 average pooling, so each feature cell covers a
2x2 block of pixels and the placement is exactly a half-pixel bilinear resize), and
`model.predict` for the scores.
"""

from __future__ import annotations

import inspect
import logging
import os
import pathlib
import subprocess
import sys
import threading

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


def _gradcam_raw(features_model, head, inputs, classes) -> np.ndarray:
    """Grad-CAM `(B, *cells)` of channels-last features; `head(A) -> logits`."""
    with tf.GradientTape() as tape:
        features = features_model(inputs)
        tape.watch(features)
        total = tf.reduce_sum(tf.gather(head(features), classes, batch_dims=1))
    grads = tf.cast(tape.gradient(total, features), tf.float32).numpy()
    features = tf.cast(features, tf.float32).numpy()
    axes = tuple(range(1, features.ndim - 1))
    return np.maximum((features * grads.mean(axis=axes, keepdims=True)).sum(-1), 0)


def _dense_head(dense, axes):
    return lambda features: tf.matmul(
        tf.cast(tf.reduce_mean(features, axis=axes), tf.float32), dense.kernel
    ) + dense.bias


LAYOUTS = {  # input shape, conv, global pooling, spatial axes of the channels-last features
    "conv1d": ((40, 2), keras.layers.Conv1D, keras.layers.GlobalAveragePooling1D, 1),
    "conv3d": ((6, 8, 10, 1), keras.layers.Conv3D, keras.layers.GlobalAveragePooling3D,
               (1, 2, 3)),
    "channels_first": ((3, HEIGHT, WIDTH), keras.layers.Conv2D,
                       keras.layers.GlobalAveragePooling2D, (1, 2)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fused_pass_on_signals_volumes_and_channels_first(layout):
    rng = np.random.default_rng(1)
    shape, conv, gap, axes = LAYOUTS[layout]
    options = {"data_format": "channels_first"} if layout == "channels_first" else {}
    inputs = keras.Input(shape)
    features = conv(4, 3, padding="same", activation="relu", name="conv", **options)(inputs)
    outputs = keras.layers.Dense(3, name="dense")(gap(**options)(features))
    model = keras.Model(inputs, outputs)
    batch = rng.random((7, *shape)).astype(np.float32)
    top = model.predict(batch, verbose=0).argmax(-1)
    features_model = keras.Model(model.input, model.get_layer("conv").output)
    if layout == "channels_first":  # the reference works channels-last
        features_model = keras.Sequential([features_model, keras.layers.Permute((2, 3, 1))])
    want = _gradcam_raw(features_model, _dense_head(model.get_layer("dense"), axes), batch, top)
    cam = kc.GradCAM(model, "conv")
    cam.images_per_pass = 3
    got = cam(batch, upsample=False, normalize=False)
    np.testing.assert_allclose(got, want, atol=1e-5 * max(want.max(), 1.0))
    maps, scores = cam.explain(batch)
    spatial = shape[1:] if options else shape[:-1]
    assert maps.shape == (7, *spatial)
    np.testing.assert_array_equal(scores.argmax(-1), top)


def test_fused_pass_two_inputs_two_outputs_nested_uint8(images):
    rng = np.random.default_rng(2)
    # two inputs: the metadata row of each image travels with it through the chunks
    picture = keras.Input((HEIGHT, WIDTH, 3), name="picture")
    meta = keras.Input((2,), name="meta")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(picture)
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(x), meta])
    model = keras.Model([picture, meta], keras.layers.Dense(3, activation="softmax", name="d")(x))
    batch, rows = images[:9], rng.random((9, 2)).astype(np.float32)
    cam = kc.GradCAM(model, "conv", input="picture")
    cam.images_per_pass = 4
    probabilities = model.predict([batch, rows], verbose=0)
    conv = keras.Model(picture, model.get_layer("conv").output)
    dense = model.get_layer("d")
    head = lambda a: tf.matmul(tf.concat([tf.reduce_mean(a, (1, 2)), rows], 1),  # noqa: E731
                               dense.kernel) + dense.bias
    want = _gradcam_raw(conv, head, batch, probabilities.argmax(-1))
    maps, scores = cam.explain([batch, rows], normalize=False)
    np.testing.assert_allclose(maps, want, atol=1e-5 * want.max())
    np.testing.assert_allclose(scores, probabilities, atol=1e-6)
    # two outputs: the scores are the chosen output's
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs))
    first = keras.layers.Dense(3, activation="softmax", name="first")(pooled)
    second = keras.layers.Dense(5, activation="softmax", name="second")(pooled)
    model = keras.Model(inputs, [first, second])
    _, scores = kc.GradCAM(model, "conv", output="second").explain(images[:5])
    np.testing.assert_allclose(scores, model.predict(images[:5], verbose=0)[1], atol=1e-6)
    # nested: the layer found inside the inner model, the outer model's scores
    inner = keras.Sequential([keras.Input((HEIGHT, WIDTH, 3)), keras.layers.Conv2D(
        4, 3, padding="same", activation="relu", name="inner_conv")], name="inner")
    outer_in = keras.Input((HEIGHT, WIDTH, 3))
    outer = keras.Model(outer_in, keras.layers.Dense(3, activation="softmax", name="d")(
        keras.layers.GlobalAveragePooling2D()(inner(outer_in))))
    cam = kc.GradCAM(outer)
    assert cam.layer.name == "inner_conv"
    probabilities = outer.predict(images[:5], verbose=0)
    want = _gradcam_raw(inner, _dense_head(outer.get_layer("d"), (1, 2)), images[:5],
                        probabilities.argmax(-1))
    maps, scores = cam.explain(images[:5], normalize=False)
    np.testing.assert_allclose(maps, want, atol=1e-5 * want.max())
    np.testing.assert_allclose(scores, probabilities, atol=1e-6)
    # uint8 input: explained as given, NumPy and tensor alike
    raw_in = keras.Input((HEIGHT, WIDTH, 3), dtype="uint8")
    scaled = keras.layers.Rescaling(1 / 255)(raw_in)
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(scaled)
    model = keras.Model(raw_in, keras.layers.Dense(3, activation="softmax", name="d")(
        keras.layers.GlobalAveragePooling2D()(conv)))
    pixels = rng.integers(0, 256, (6, HEIGHT, WIDTH, 3)).astype(np.uint8)
    features_model = keras.Model(raw_in, model.get_layer("conv").output)
    probabilities = model.predict(pixels, verbose=0)
    want = _gradcam_raw(features_model, _dense_head(model.get_layer("d"), (1, 2)),
                        pixels, probabilities.argmax(-1))
    cam = kc.GradCAM(model, "conv")
    for given in (pixels, tf.constant(pixels)):
        maps, scores = cam.explain(given, normalize=False)
        np.testing.assert_allclose(maps, want, atol=1e-5 * want.max())
        np.testing.assert_allclose(scores, probabilities, atol=1e-6)


def test_fused_pass_mixed_precision(images):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    batch = images[:6]
    probabilities = model.predict(batch, verbose=0)
    features_model = keras.Model(model.input, model.get_layer("c2").output)
    dense = model.get_layer("dense")
    head = lambda a: tf.matmul(tf.cast(tf.reduce_mean(a, (1, 2)), tf.float16),  # noqa: E731
                               tf.cast(dense.kernel, tf.float16)) + tf.cast(dense.bias, tf.float16)
    want = _gradcam_raw(features_model, head, batch, probabilities.argmax(-1))
    cam = kc.GradCAM(model, "c2")
    cam.images_per_pass = 4
    maps, scores = cam.explain(batch, upsample=False, normalize=False)
    assert maps.dtype == np.float32 and scores.dtype == np.float32
    # float16 activations and gradients: each map to 5% of its own peak
    peaks = want.max(axis=(1, 2), keepdims=True)
    assert np.abs(maps - want).max() <= 0.05 * peaks.min() or np.all(
        np.abs(maps - want) <= 0.05 * peaks)
    np.testing.assert_allclose(scores, probabilities, atol=2e-3)


def _options(method: type) -> dict:
    parameters = inspect.signature(method.__init__).parameters
    cheap = {"n_samples": 2, "max_channels": 2, "batch_size": 8}
    return {name: value for name, value in cheap.items() if name in parameters}


@pytest.mark.slow
def test_explain_scores_are_predict_for_every_method(model, images):
    """`explain` returns `__call__`'s maps and the model's own scores of the clean images,
    for every registered method (ShapleyCAM and Smooth Grad-CAM++ included: their extra
    passes must not leak a noisy copy's scores)."""
    batch = images[:3]
    probabilities = model.predict(batch, verbose=0)
    for name, method in kc.METHODS.items():
        options = _options(method)
        if name not in ("cam", "fullgrad"):
            options["layer"] = "c2"
        cam = method(model, **options)
        maps, scores = cam.explain(batch)
        np.testing.assert_allclose(scores, probabilities, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(maps, cam(batch), atol=1e-6, err_msg=name)
        single_map, single_scores = cam.explain(batch[0])
        assert single_map.shape == (HEIGHT, WIDTH) and single_scores.shape == (CLASSES,), name
        np.testing.assert_allclose(single_scores, probabilities[0], atol=1e-6, err_msg=name)


def test_top1_map_explains_the_class_explain_reports():
    """Two classes saturate a sigmoid head (both probabilities are 1.0 in float32): the
    top-1 map must explain the class `explain` (and `explain_dataset`) reports as the top-1,
    `argmax(scores)`, not another class picked from the logits."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs))
    dense = keras.layers.Dense(2, activation="sigmoid", name="d")
    model = keras.Model(inputs, dense(pooled))
    kernel = np.array([[1.0, -1.0], [-1.0, 1.0], [0.5, 0.5]], np.float32)
    dense.set_weights([kernel, np.array([30.0, 40.0], np.float32)])
    batch = np.random.default_rng(4).random((3, HEIGHT, WIDTH, 3)).astype(np.float32)
    probabilities = model.predict(batch, verbose=0)
    assert (probabilities == 1.0).all()  # a tie: argmax is class 0
    cam = kc.GradCAM(model, "conv")
    maps, scores = cam.explain(batch)
    reported = scores.argmax(-1)
    np.testing.assert_array_equal(reported, probabilities.argmax(-1))
    features_model = keras.Model(model.input, model.get_layer("conv").output)
    logits = lambda a: tf.matmul(tf.reduce_mean(a, (1, 2)), dense.kernel) + dense.bias  # noqa
    # a "same"-padded stride-1 layer: its maps already are on the input grid
    want = _normalize(_gradcam_raw(features_model, logits, batch, reported), "image")
    np.testing.assert_allclose(maps, want, atol=1e-4)
    np.testing.assert_allclose(cam(batch), want, atol=1e-4)
    batches = list(kc.explain_dataset("gradcam", batch, model, layer="conv", batch_size=2,
                                      verbose=0))
    np.testing.assert_array_equal(np.concatenate([b.classes for b in batches]), reported)
    np.testing.assert_allclose(np.concatenate([b.maps["gradcam"] for b in batches]), want,
                               atol=1e-4)


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_complex_images_refused(model, images, kind):
    """A complex input's imaginary part would be dropped silently by the cast to float32."""
    values = images[:2].astype(np.complex64) + 1j
    given = values if kind == "numpy" else tf.constant(values)
    with pytest.raises(TypeError, match=r"`images`.*complex64.*real"):
        kc.GradCAM(model, "c2")(given)


def _broken_model(model: keras.Model, layer: str, index: int, value: float) -> keras.Model:
    broken = _model()
    broken.set_weights(model.get_weights())
    weights = broken.get_layer(layer).get_weights()
    weights[index][...] = value
    broken.get_layer(layer).set_weights(weights)
    return broken


@pytest.mark.parametrize("name", ["gradcam", "eigencam", "fem", "randomcam", "hirescam"])
def test_non_finite_model_output_refused(model, images, name):
    """A model whose output is not finite (a dense kernel of inf: the features are fine, the
    scores are not) is refused with the image named, for `__call__` and `explain` alike; never
    NaN scores next to a plausible map."""
    broken = _broken_model(model, "dense", 0, np.inf)
    assert not np.isfinite(broken.predict(images[:3], verbose=0)).all()
    cam = kc.get_method(name)(broken, "c2")
    with pytest.raises(ValueError, match=r"non-finite values while explaining image 0"):
        cam.explain(images[:3])
    with pytest.raises(ValueError, match=r"non-finite values while explaining image 0"):
        cam(images[:3])


def test_nan_in_one_class_refused_for_top1(model, images):
    """A NaN bias in one class: the top-1 class is undefined, so no top-1 map is returned."""
    broken = _broken_model(model, "dense", 1, 0.0)
    weights = broken.get_layer("dense").get_weights()
    weights[1][3] = np.nan
    broken.get_layer("dense").set_weights(weights)
    cam = kc.GradCAM(broken, "c2")
    for call in (lambda: cam(images[:3]), lambda: cam.explain(images[:3])):
        with pytest.raises(ValueError, match=r"non-finite values while explaining image 0"):
            call()


@pytest.mark.parametrize("kind", ["numpy", "constant", "variable"])
def test_nan_or_inf_in_one_image_named(model, images, kind):
    bad = images[:6].copy()
    bad[4, 3, 7, 1] = np.nan if kind != "constant" else np.inf
    given = {"numpy": bad, "constant": tf.constant(bad), "variable": tf.Variable(bad)}[kind]
    cam = kc.GradCAM(model, "c2")
    cam.images_per_pass = PER_PASS
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first in image 4\)"):
        cam.explain(given)
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first in image 4\)"):
        cam(given)


def test_wrong_shapes_and_dtypes_refused(model, images):
    cam = kc.GradCAM(model, "c2")
    with pytest.raises(ValueError, match=r"`images` have width 20.*expects 40"):
        cam(images[:2, :, :20])
    with pytest.raises(ValueError, match=r"`images` have 1 channel.*expects 3"):
        cam(images[:2, ..., :1])
    with pytest.raises(ValueError, match=r"received shape \(24, 40\), of rank 2"):
        cam(images[0, ..., 0])
    with pytest.raises(TypeError, match=r"`images` must hold real numbers.*string"):
        cam(tf.constant("x", shape=(1, HEIGHT, WIDTH, 3)))
    with pytest.raises(TypeError, match=r"`images` must be numeric"):
        cam(np.full((1, HEIGHT, WIDTH, 3), "x"))


def test_no_new_passes_or_retracing_over_batch_sizes_and_modes(model, tf_messages):
    cam = kc.GradCAM(model, "c2")
    cam.images_per_pass = PER_PASS
    rng = np.random.default_rng(5)
    for count in (1, 2, 3, 4, 5, 7, 9, 13):
        batch = rng.random((count, HEIGHT, WIDTH, 3)).astype(np.float32)
        for mode in ("image", "batch", "none"):
            for upsample in (True, False):
                cam(batch, normalize=mode, upsample=upsample)
                cam(tf.constant(batch), targets=[1] * count, normalize=mode, upsample=upsample)
                cam.explain(batch, normalize=mode, upsample=upsample)
    assert sorted(cam._passes) == sorted(
        (upsample, mode, scores, False)
        for upsample in (False, True) for mode in ("image", "batch", "none")
        for scores in (False, True)
    )
    assert [m for m in tf_messages if "retracing" in m and "TensorFlowTrainer" not in m] == []


@pytest.fixture
def tf_messages():
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def test_explain_dataset_default_strategy_gives_in_memory_maps_and_predict(model, images):
    batch = images[:11]
    probabilities = model.predict(batch, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((batch, np.arange(11) % CLASSES))
    for targets, classes in ((None, probabilities.argmax(-1)), ("labels", np.arange(11) % 4)):
        shards = list(kc.explain_dataset(["gradcam", "gradcam++"], dataset, model, layer="c2",
                                         targets=targets, batch_size=4, verbose=0))
        assert [len(s.index) for s in shards] == [4, 4, 3]
        np.testing.assert_array_equal(np.concatenate([s.classes for s in shards]), classes)
        np.testing.assert_array_equal(np.concatenate([s.predicted for s in shards]),
                                      probabilities.argmax(-1))
        np.testing.assert_allclose(np.concatenate([s.scores for s in shards]),
                                   probabilities.max(-1), atol=1e-6)
        for name in ("gradcam", "gradcam++"):
            want = _normalize(_place(_reference_raw(name, model, batch, classes)), "image")
            np.testing.assert_allclose(np.concatenate([s.maps[name] for s in shards]), want,
                                       atol=1e-4)


MIRRORED_CHILD = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
import keras_cam as kc

model = keras.models.load_model(sys.argv[1])
data = np.load(sys.argv[2])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {}
for rule in ("top", "labels"):
    cams = {"gradcam": kc.GradCAM(model, "c2"), "layercam": kc.LayerCAM(model, "c2")}
    for cam in cams.values():
        cam.images_per_pass = 3  # chunks inside each replica's slice
    batches = list(kc.explain_dataset(
        cams, (data["images"], data["labels"]), targets=None if rule == "top" else "labels",
        batch_size=7, strategy=strategy, verbose=0))
    for name in cams:
        out[f"{rule}_{name}"] = np.concatenate([b.maps[name] for b in batches])
    out[f"{rule}_classes"] = np.concatenate([b.classes for b in batches])
    out[f"{rule}_predicted"] = np.concatenate([b.predicted for b in batches])
    out[f"{rule}_scores"] = np.concatenate([b.scores for b in batches])
np.savez(sys.argv[3], **out)
print("REPLICAS", strategy.num_replicas_in_sync)
"""


@pytest.mark.slow
def test_fused_pass_under_mirrored_strategy(model, images, tmp_path):
    """The fused pass itself (no `explain_batch` override) on two logical CPUs, top-1 and label
    targets: the reference maps and `model.predict`'s classes and scores."""
    model.save(tmp_path / "model.keras")
    batch, labels = images[:17], np.arange(17) % CLASSES
    np.savez(tmp_path / "data.npz", images=batch, labels=labels)
    root = pathlib.Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", MIRRORED_CHILD, str(tmp_path / "model.keras"),
         str(tmp_path / "data.npz"), str(tmp_path / "maps.npz")],
        env={**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3",
             "KERAS_BACKEND": "tensorflow"},
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "REPLICAS 2" in run.stdout
    got = np.load(tmp_path / "maps.npz")
    probabilities = model.predict(batch, verbose=0)
    for rule, classes in (("top", probabilities.argmax(-1)), ("labels", labels)):
        np.testing.assert_array_equal(got[f"{rule}_classes"], classes)
        np.testing.assert_array_equal(got[f"{rule}_predicted"], probabilities.argmax(-1))
        np.testing.assert_allclose(got[f"{rule}_scores"], probabilities.max(-1), atol=1e-6)
        for name in ("gradcam", "layercam"):
            want = _normalize(_place(_reference_raw(name, model, batch, classes)), "image")
            np.testing.assert_allclose(got[f"{rule}_{name}"], want, atol=1e-4, err_msg=name)


def test_fullgrad_reads_the_weights_of_each_call(images):
    """An explainer is built once and reused while the model trains (`HeatmapCallback`):
    the compiled pass must read the biases as they are at each call, not as they were when
    it was traced."""
    from references import corner_model, reference_fullgrad_maps

    model = corner_model(HEIGHT, WIDTH, positive=False)
    cam = kc.FullGrad(model)
    batch = images[:3]
    classes = np.array([0, 1, 2])
    np.testing.assert_allclose(cam(batch, classes), reference_fullgrad_maps(model, batch, classes),
                               atol=1e-4)
    rng = np.random.default_rng(6)
    for name in ("conv1", "last_conv"):  # "training": new biases
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([kernel, rng.normal(size=bias.shape).astype(np.float32)])
    np.testing.assert_allclose(cam(batch, classes), reference_fullgrad_maps(model, batch, classes),
                               atol=1e-4)


@pytest.mark.parametrize("name", ["guidedbackprop", "fullgrad", "gradcam"])
def test_nan_score_of_another_class_refused_by_every_fused_method(model, images, name):
    """The explained class's gradient is finite, but the model's output is not (a NaN bias
    of class 3): refused by the methods whose pass does not go through `_forward` too."""
    broken = _broken_model(model, "dense", 1, 0.0)
    weights = broken.get_layer("dense").get_weights()
    weights[1][3] = np.nan
    broken.get_layer("dense").set_weights(weights)
    cam = kc.get_method(name)(broken) if name == "fullgrad" else kc.get_method(name)(broken, "c2")
    with pytest.raises(ValueError, match=r"non-finite values while explaining image 0"):
        cam(images[:3], targets=0)


def test_first_calls_from_several_threads(model, images):
    """Several threads calling a fresh explainer at once (a server) each trace a pass: the
    head's scores recorded while tracing must stay in their own thread's pass."""
    probabilities = model.predict(images[:6], verbose=0)
    for _ in range(3):  # a fresh explainer each time: the threads trace at once
        cam = kc.GradCAM(model, "c2")
        results, errors = {}, []

        def work(start: int) -> None:
            try:
                results[start] = cam.explain(images[start : start + 3])
            except Exception as error:  # noqa: BLE001 -- reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(start,)) for start in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for start, (maps, scores) in results.items():
            rows = slice(start, start + 3)
            np.testing.assert_allclose(scores, probabilities[rows], atol=1e-6)
            want = _reference_raw("gradcam", model, images[rows], probabilities[rows].argmax(-1))
            np.testing.assert_allclose(maps, _normalize(_place(want), "image"), atol=1e-4)
