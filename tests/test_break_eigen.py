"""Breaking `eigen_smooth` as a trace-time choice and `channel_sum` (keras_cam/methods/base.py).

Every reference here is computed without keras_cam: the explained layer's activations and
gradients come from the model's own layers and a `GradientTape`, the principal component from
NumPy's SVD (`references.eigen_map`), placement from `tf.image.resize` on exact 2x grids.

The analytic case: a layer of ONE channel. Its weighted activations `w A` form an `(N, 1)`
matrix whose centred first component is `w (A - mean A)`, oriented to agree with itself, so
for any method with a positive weight the `eigen_smooth` map is `ReLU(A - mean A)` up to
scale, whatever the weight's value: one reference for every method that accepts it.
"""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers
from references import eigen_map, gradient_weights
from tiny_models import CountingIdentity

import keras_cam as kc
from keras_cam.methods.base import channel_sum, eigen_smoothing

HEIGHT, WIDTH = 24, 40
TARGETS = [0, 2, 1]
REFUSING = ("guidedbackprop", "guidedgradcam", "fullgrad")
"""Methods without weighted activations, which refuse `eigen_smooth`."""
PROJECTING = ("eigencam", "eigengradcam", "kpcacam")
"""Methods whose map is already a projection: `eigen_smooth` leaves it as it is."""
ACCEPTING = sorted(set(kc.METHODS) - set(REFUSING))


def _one_channel_model(channels: int = 1) -> keras.Model:
    """conv -> 2x2 average pool -> conv "feat" (`channels`) -> GAP -> Dense "dense" (softmax),
    non-negative convs and a head whose class 0 weighs every channel most: every method's
    weight of class 0 is positive."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = layers.AveragePooling2D(2, name="pool")(x)
    x = layers.Conv2D(channels, 3, padding="same", activation="relu", name="feat")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="dense")(x))
    rng = np.random.default_rng(0)
    for name in ("c1", "feat"):
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights(
            [0.3 * np.abs(rng.normal(size=kernel.shape)).astype("float32"), np.zeros_like(bias)]
        )
    head = np.tile(np.array([[3.0, 1.0, 0.5]], "float32"), (channels, 1))
    model.get_layer("dense").set_weights([head, np.zeros(3, "float32")])
    return model


def _blob_images(n: int, seed: int = 1) -> np.ndarray:
    images = np.random.default_rng(seed).uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype("float32")
    images[:, 2:8, 30:38] += 2.0
    return images


def _features(model: keras.Model, images: np.ndarray, layer: str = "feat") -> np.ndarray:
    return keras.Model(model.input, model.get_layer(layer).output)(images).numpy().astype(float)


def _unit(maps: np.ndarray) -> np.ndarray:
    """Per-map division by the maximum (min is 0 after a ReLU with some zero cell)."""
    return maps / maps.max(axis=tuple(range(1, maps.ndim)), keepdims=True)


def _centred_reference(features: np.ndarray) -> np.ndarray:
    """`ReLU(A - mean A)` of a one-channel `(B, *cells, 1)` layer, scaled to max 1."""
    values = features[..., 0]
    axes = tuple(range(1, values.ndim))
    return _unit(np.maximum(values - values.mean(axis=axes, keepdims=True), 0.0))


# --------------------------------------------------- every method, one analytic reference
@pytest.mark.parametrize("name", ACCEPTING)
def test_eigen_smooth_of_a_one_channel_layer_is_its_centred_activation(name):
    model = _one_channel_model()
    images = _blob_images(3)
    cam = kc.get_method(name)(model, "feat")
    maps = cam(images, 0, upsample=False, eigen_smooth=True)
    plain = cam(images, 0, upsample=False)
    if name == "kpcacam":  # a kernel projection already: eigen_smooth changes nothing
        np.testing.assert_array_equal(maps, plain)
        return
    expected = _centred_reference(_features(model, images))
    if name == "randomcam":  # a random weight of either sign: the component or its negation
        values = _features(model, images)[..., 0]
        negated = _unit(np.maximum(values.mean(axis=(1, 2), keepdims=True) - values, 0.0))
        for got, plus, minus in zip(maps, expected, negated):
            assert min(np.abs(got - plus).max(), np.abs(got - minus).max()) < 1e-5
        return
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    if name not in PROJECTING:  # the plain map is A itself, scaled: not the centred one
        assert np.abs(plain - expected).max() > 0.05


@pytest.mark.parametrize("name", REFUSING)
def test_methods_without_weighted_activations_refuse_eigen_smooth(name):
    model = _one_channel_model()
    cam = kc.get_method(name)(model, None if name == "fullgrad" else "feat")
    with pytest.raises(ValueError, match="does not combine weighted activations.*"
                                         "eigen_smooth=False"):
        cam(_blob_images(1), 0, eigen_smooth=True)
    assert not eigen_smoothing(cam)


# --------------------------------------------------- several channels: the gradient family
def _model(channels: int = 6, counting: bool = False, softmax: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = CountingIdentity(name="count")(inputs) if counting else inputs
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="c1")(x)
    x = layers.AveragePooling2D(2, name="pool")(x)
    x = layers.Conv2D(channels, 3, padding="same", activation="relu", name="feat")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    activation = "softmax" if softmax else None
    return keras.Model(inputs, layers.Dense(3, activation=activation, name="dense")(x))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype("float32")


def _features_and_gradients(
    model: keras.Model, images: np.ndarray, targets, layer: str = "feat"
) -> tuple[np.ndarray, np.ndarray]:
    """`A` of `layer` ("feat" or "c1") and `dS/dA` of each image's target logit."""
    features = keras.Model(model.input, model.get_layer(layer).output)(images)
    with tf.GradientTape() as tape:
        tape.watch(features)
        rest = features
        for name in ("pool", "feat", "gap", "dense")[2 if layer == "feat" else 0 :]:
            rest = model.get_layer(name)(rest)  # the model's own layers after `layer`
        logits = rest
        total = tf.reduce_sum(tf.gather(logits, list(targets), batch_dims=1))
    grads = tape.gradient(total, features).numpy().astype(np.float64)
    return features.numpy().astype(np.float64), grads


def _eigen_maps(weighted: np.ndarray) -> np.ndarray:
    return np.stack([eigen_map(values) for values in weighted])


def _close(got: np.ndarray, expected: np.ndarray, rtol: float = 1e-4) -> None:
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"])
def test_eigen_smooth_of_gradient_methods_is_the_component_of_their_weighted_activations(name):
    model = _model()
    images = _images(3, seed=2)
    features, grads = _features_and_gradients(model, images, TARGETS)
    weighted = gradient_weights(name, features, grads) * features
    cam = kc.get_method(name)(model, "feat")
    got = cam(images, TARGETS, upsample=False, normalize=False, eigen_smooth=True)
    _close(got, _eigen_maps(weighted))
    plain = cam(images, TARGETS, upsample=False, normalize=False)
    _close(plain, np.maximum(weighted.sum(axis=-1), 0.0))


def _score_cam_weights(model: keras.Model, images: np.ndarray, features: np.ndarray,
                       targets) -> np.ndarray:
    """Score-CAM's `w_k = p_c(X * H^k)` (Wang et al. 2020, Eq. 3-4 with the authors' plain
    probability), `H^k` channel `k` resized to the input and min-max normalized, 0 for a
    constant channel; one image and one channel at a time."""
    weights = np.zeros((len(features), features.shape[-1]))
    for b, (image, values, cls) in enumerate(zip(images, features, targets)):
        for k in range(values.shape[-1]):
            channel = values[..., k]
            if channel.max() == channel.min():
                continue
            mask = tf.image.resize(channel[..., None], (HEIGHT, WIDTH), "bilinear").numpy()
            mask = (mask - mask.min()) / (mask.max() - mask.min())
            weights[b, k] = float(model(image[None] * mask[None], training=False)[0, cls])
    return weights


def test_score_cam_eigen_smooth_over_chunks_of_images_and_channels():
    model = _model(softmax=True)
    images = _images(5, seed=3)
    targets = [0, 2, 1, 1, 0]
    features = _features(model, images)
    weighted = features * _score_cam_weights(model, images, features, targets)[:, None, None]
    cam = kc.ScoreCAM(model, "feat", batch_size=4, verbose=0)  # 6 channels: chunks of pairs
    cam.images_per_pass = 2  # and images in parts of 2
    got = cam(images, targets, upsample=False, normalize=False, eigen_smooth=True)
    _close(got, _eigen_maps(weighted), rtol=1e-3)
    plain = cam(images, targets, upsample=False, normalize=False)
    _close(plain, np.maximum(weighted.sum(axis=-1), 0.0), rtol=1e-3)


# --------------------------------------------------- several layers and augmentations
def _placed(maps: np.ndarray) -> np.ndarray:
    """Conv-resolution `(B, h, w)` maps on the input: bilinear (exact on these 1x and 2x
    grids), then min-max per map."""
    size = (HEIGHT, WIDTH)
    placed = tf.image.resize(maps[..., None].astype("float32"), size, "bilinear")[..., 0]
    placed = placed.numpy().astype(np.float64)
    low = placed.min(axis=(1, 2), keepdims=True)
    span = placed.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (placed - low) / np.where(span > 0, span, 1.0), 0.0)


def _grad_cam_eigen(model: keras.Model, images: np.ndarray, layer: str) -> np.ndarray:
    features, grads = _features_and_gradients(model, images, TARGETS, layer)
    return _eigen_maps(features * grads.mean(axis=(1, 2), keepdims=True))


def test_eigen_smooth_with_sibling_layers_and_aug_smooth():
    """pytorch-grad-cam's multi-layer `aug_smooth` + `eigen_smooth`: each view's and layer's
    eigen map placed and normalized, flipped back, averaged, normalized."""
    model = _model()
    images = _images(3, seed=4)
    total = 0.0
    for flip in (False, True):
        for factor in (1.0, 1.1, 0.9):
            view = images * np.float32(factor)
            view = view[:, :, ::-1] if flip else view
            for layer in ("feat", "c1"):
                maps = _placed(_grad_cam_eigen(model, np.ascontiguousarray(view), layer))
                total = total + (maps[:, :, ::-1] if flip else maps)
    expected = _unit(total - total.min(axis=(1, 2), keepdims=True))
    cam = kc.GradCAM(model, ["feat", "c1"])
    got = cam(images, TARGETS, aug_smooth=True, eigen_smooth=True)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    siblings = (cam, *cam._siblings)
    assert not any(eigen_smoothing(explainer) for explainer in siblings)
    plain = cam(images, TARGETS, aug_smooth=True)  # the same explainer, plain again
    assert np.abs(plain - expected).max() > 0.05


# --------------------------------------------------- the flag never leaks
def test_a_refused_eigen_call_leaves_the_next_plain_call_plain():
    model = _model()
    images = _images(3, seed=5)
    features, grads = _features_and_gradients(model, images, TARGETS)
    weighted = features * grads.mean(axis=(1, 2), keepdims=True)
    cam = kc.GradCAM(model, ["feat"])
    bad = images.copy()
    bad[2, 3, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values .first in image 2"):
        cam(bad, TARGETS, upsample=True, eigen_smooth=True)
    assert not eigen_smoothing(cam)
    plain = kc.GradCAM(model, "feat")
    with pytest.raises(ValueError, match="NaN or infinite values .first in image 2"):
        plain(bad, TARGETS, upsample=False, eigen_smooth=True)  # inside the fused pass
    got = plain(images, TARGETS, upsample=False, normalize=False)
    _close(got, np.maximum(weighted.sum(axis=-1), 0.0))
    maps, scores = plain.explain(images, TARGETS, upsample=False, normalize=False)
    _close(maps, np.maximum(weighted.sum(axis=-1), 0.0))


def test_plain_eigen_explain_and_explain_dataset_interleaved_on_one_explainer():
    model = _model()
    images = _images(4, seed=6)
    targets = [0, 2, 1, 2]
    features, grads = _features_and_gradients(model, images, targets)
    weighted = features * grads.mean(axis=(1, 2), keepdims=True)
    plain, eigen = np.maximum(weighted.sum(axis=-1), 0.0), _eigen_maps(weighted)
    cam = kc.GradCAM(model, "feat")
    data = tf.data.Dataset.from_tensor_slices((images, np.array(targets))).batch(3)
    for _ in range(2):
        _close(cam(images, targets, upsample=False, normalize=False, eigen_smooth=True), eigen)
        streamed = [b.maps["gradcam"] for b in kc.explain_dataset(
            {"gradcam": cam}, data, targets="labels", verbose=0)]
        reference = _placed(plain)
        np.testing.assert_allclose(np.concatenate(streamed), reference, atol=2e-5)
        maps, _ = cam.explain(images, targets, upsample=False, normalize=False)
        _close(maps, plain)


def test_concurrent_first_calls_trace_each_pass_once_and_keep_their_choice():
    """Two threads trace the plain and the eigen pass of a fresh explainer at the same time."""
    model = _model(counting=True)
    counter = model.get_layer("count")
    images = _images(3, seed=7)
    features, grads = _features_and_gradients(model, images, TARGETS)
    weighted = features * grads.mean(axis=(1, 2), keepdims=True)
    expected = {False: np.maximum(weighted.sum(axis=-1), 0.0), True: _eigen_maps(weighted)}
    for method in (kc.GradCAM, kc.ScoreCAM):
        cam = method(model, "feat")
        built = counter.runs
        start = threading.Barrier(2)
        results: dict[bool, list[np.ndarray]] = {False: [], True: []}
        errors: list[BaseException] = []

        def explain(eigen_smooth: bool, cam=cam, start=start, results=results,
                    errors=errors) -> None:
            try:
                start.wait(timeout=60)
                for _ in range(3):
                    results[eigen_smooth].append(cam(
                        images, TARGETS, upsample=False, normalize=False,
                        eigen_smooth=eigen_smooth,
                    ))
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        threads = [threading.Thread(target=explain, args=(flag,)) for flag in (False, True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        if method is kc.GradCAM:
            assert counter.runs == built + 2  # one trace per choice, not per call
            for flag in (False, True):
                for maps in results[flag]:
                    _close(maps, expected[flag])
        else:  # Score-CAM: its begin/step functions traced once per choice
            for flag in (False, True):
                _, begin, step = cam._class_streams[flag]
                assert begin.experimental_get_tracing_count() == 1
                assert results[flag][0].shape == (3, HEIGHT // 2, WIDTH // 2)
            assert np.abs(results[True][0] - results[False][0]).max() > 0


# --------------------------------------------------- flags are booleans
@pytest.mark.parametrize("flag", ["eigen_smooth", "aug_smooth", "upsample"])
@pytest.mark.parametrize("value", ["False", 1, None])
def test_call_flags_must_be_booleans(flag, value):
    """A truthy string ("False" from a config file) must not silently switch a flag on (or a
    falsy value off): the call names the flag and what to pass."""
    cam = kc.GradCAM(_model(), "feat")
    with pytest.raises(TypeError, match=f"`{flag}` must be True or False; received {value!r}"):
        cam(_images(1), 0, **{flag: value})


def test_numpy_booleans_are_booleans():
    model = _model()
    images = _images(2, seed=8)
    cam = kc.GradCAM(model, "feat")
    np.testing.assert_array_equal(
        cam(images, [0, 1], eigen_smooth=np.bool_(True), upsample=np.bool_(False)),
        cam(images, [0, 1], eigen_smooth=True, upsample=False),
    )


# --------------------------------------------------- signals, volumes, channels-first
_CONVS = {1: layers.Conv1D, 2: layers.Conv2D, 3: layers.Conv3D}
_GAPS = {
    1: layers.GlobalAveragePooling1D,
    2: layers.GlobalAveragePooling2D,
    3: layers.GlobalAveragePooling3D,
}
_SHAPES = {1: (40,), 2: (HEIGHT, WIDTH), 3: (6, 8, 10)}


def _nd_model(rank: int, data_format: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    cells = _SHAPES[rank]
    shape = (3, *cells) if data_format == "channels_first" else (*cells, 3)
    conv = _CONVS[rank]
    inputs = keras.Input(shape)
    x = conv(5, 3, padding="same", activation="relu", data_format=data_format, name="c1")(inputs)
    x = conv(6, 3, strides=2, padding="same", activation="relu", data_format=data_format,
             name="feat")(x)
    x = _GAPS[rank](data_format=data_format, name="gap")(x)
    return keras.Model(inputs, layers.Dense(3, name="dense")(x))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("rank", [1, 2, 3], ids=["signal", "image", "volume"])
def test_eigen_smooth_of_signals_volumes_and_channels_first(rank, data_format):
    model = _nd_model(rank, data_format)
    images = np.random.default_rng(rank).uniform(0, 1, (3, *model.input.shape[1:]))
    images = images.astype("float32")
    features = keras.Model(model.input, model.get_layer("feat").output)(images)
    first = data_format == "channels_first"
    axes = tuple(range(2, rank + 2)) if first else tuple(range(1, rank + 1))
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = model.get_layer("dense")(tf.reduce_mean(features, axis=axes))
        total = tf.reduce_sum(tf.gather(logits, TARGETS, batch_dims=1))
    grads = tape.gradient(total, features).numpy().astype(np.float64)
    values = features.numpy().astype(np.float64)
    if first:  # the reference works on channels-last `(B, *cells, C)`
        values, grads = np.moveaxis(values, 1, -1), np.moveaxis(grads, 1, -1)
    weighted = values * grads.mean(axis=tuple(range(1, rank + 1)), keepdims=True)
    cells = weighted.shape[1:-1]
    expected = np.stack([
        eigen_map(w.reshape(-1, 1, w.shape[-1])).reshape(cells) for w in weighted
    ])
    cam = kc.GradCAM(model, "feat")
    got = cam(images, TARGETS, upsample=False, normalize=False, eigen_smooth=True)
    assert got.shape == (3, *cells)
    _close(got, expected, rtol=1e-3)
    plain = cam(images, TARGETS, upsample=False, normalize=False)
    _close(plain, np.maximum(weighted.sum(axis=-1), 0.0), rtol=1e-3)


# --------------------------------------------------- mixed precision
@pytest.mark.parametrize("name", ["gradcam", "layercam", "scorecam", "ablationcam", "iscam"])
def test_eigen_smooth_under_mixed_precision(name):
    """float16 activations: the component is computed from what the float16 layer outputs."""
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        model = _one_channel_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("feat").compute_dtype == "float16"
    images = _blob_images(2, seed=3)
    cam = kc.get_method(name)(model, "feat")
    maps = cam(images, 0, upsample=False, eigen_smooth=True)
    assert maps.dtype == np.float32
    np.testing.assert_allclose(maps, _centred_reference(_features(model, images)), atol=2e-3)


# --------------------------------------------------- channel_sum at its edges
@pytest.mark.parametrize(
    "batch, cells, channels",
    [(1, (7, 9), 5), (3, (4, 6), 1), (2, (3, 5), 4096), (1, (1, 1), 3)],
    ids=["one-image", "one-channel", "4096-channels", "one-cell"],
)
def test_channel_sum_against_numpy_at_the_edges(batch, cells, channels):
    rng = np.random.default_rng(channels)
    features = rng.normal(size=(batch, *cells, channels)).astype(np.float32)
    weights = rng.normal(size=(batch, channels)).astype(np.float32)
    expected = np.einsum("bhwc,bc->bhw", features.astype(np.float64), weights)
    got = channel_sum(tf.constant(features), tf.constant(weights)).numpy()
    assert got.shape == (batch, *cells)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"])
def test_default_compute_cam_of_one_image_and_many_channels(name):
    """A single image (no batch axis) through a 512-channel layer: the plain sum by NumPy."""
    model = _model(channels=512)
    image = _images(1, seed=9)
    features, grads = _features_and_gradients(model, image, [2])
    expected = np.maximum((gradient_weights(name, features, grads) * features).sum(-1), 0.0)
    got = kc.get_method(name)(model, "feat")(image[0], 2, upsample=False, normalize=False)
    assert got.shape == expected.shape[1:]
    _close(got, expected[0], rtol=1e-3)


# --------------------------------------------------- callable targets: traced once per call
class _ClassScore(kc.Target):
    """The logit of `cls` (a field the user may change between calls)."""

    def __init__(self, cls: int):
        self.cls = cls

    def __call__(self, outputs):
        return outputs[:, self.cls]


@pytest.mark.parametrize("method", [kc.GradCAM, kc.ScoreCAM], ids=["gradcam", "scorecam"])
def test_a_callable_target_is_traced_once_per_layer_in_an_augmented_call(method):
    """`aug_smooth` explains 6 views with the same callable: one trace of each layer's pass
    serves them all (a trace per view cost 17x a class-index call on the demo model); a
    field changed before the next call is still read afresh."""
    model = _model(counting=True, softmax=method is kc.ScoreCAM)
    counter = model.get_layer("count")
    images = _images(2, seed=10)
    cam = method(model, ["feat", "c1"], **({"verbose": 0} if method is kc.ScoreCAM else {}))
    target = _ClassScore(2)
    before = counter.runs
    by_callable = cam(images, target, aug_smooth=True, eigen_smooth=True)
    traces = counter.runs - before
    assert traces <= 2 * (2 if method is kc.ScoreCAM else 1)  # per layer, not per view
    np.testing.assert_allclose(
        by_callable, cam(images, [2, 2], aug_smooth=True, eigen_smooth=True), atol=1e-5
    )
    target.cls = 1
    np.testing.assert_allclose(
        cam(images, target, aug_smooth=True), cam(images, [1, 1], aug_smooth=True), atol=1e-5
    )


# --------------------------------------------------- explain_dataset's run identity
def _rerun(tmp_path, first, second, name="g"):
    """Writes a run with `first` (a built explainer), then reruns into the same folder with
    `second`: returns the second call's error, or None."""
    model_data = (_images(6, seed=11), np.array([0, 1, 2, 0, 1, 2]))
    kc.explain_dataset({name: first}, model_data, out_dir=tmp_path, batch_size=3, verbose=0)
    try:
        kc.explain_dataset({name: second}, model_data, out_dir=tmp_path, batch_size=3, verbose=0)
    except ValueError as error:
        return error
    return None


def test_explain_dataset_refuses_a_rerun_with_other_layers(tmp_path):
    """`layer=[feat, c1]` and `layer=feat` give other maps: their shards must not mix."""
    model = _model()
    error = _rerun(tmp_path, kc.GradCAM(model, ["feat", "c1"]), kc.GradCAM(model, "feat"))
    assert error is not None and "holds a run with other arguments (methods" in str(error)
    assert _rerun(tmp_path / "same", kc.GradCAM(model, ["feat", "c1"]),
                  kc.GradCAM(model, ["feat", "c1"])) is None  # the same run resumes


@pytest.mark.parametrize(
    "first, second",
    [
        ((kc.GradCAM, {"score": "logit"}), (kc.GradCAM, {"score": "probability"})),
        ((kc.ScoreCAM, {"max_channels": 2}), (kc.ScoreCAM, {"max_channels": 4})),
        ((kc.KPCACAM, {}), (kc.KPCACAM, {"kernel": "rbf", "gamma": 0.01})),
    ],
    ids=["score", "max_channels", "kernel"],
)
def test_explain_dataset_refuses_a_rerun_with_other_method_arguments(tmp_path, first, second):
    model = _model(softmax=True)
    (method, options), (other, other_options) = first, second
    error = _rerun(tmp_path, method(model, "feat", verbose=0, **options),
                   other(model, "feat", verbose=0, **other_options))
    assert error is not None and "holds a run with other arguments (methods" in str(error)
    changed = next(iter(set(other_options) - set(options)), None) or next(iter(options))
    assert changed in str(error)


def test_explain_dataset_method_options_are_part_of_the_run(tmp_path):
    model = _model(softmax=True)
    data = (_images(3, seed=12), np.array([0, 1, 2]))
    kc.explain_dataset("scorecam", data, model, out_dir=tmp_path, verbose=0,
                       method_options={"scorecam": {"max_channels": 2}})
    with pytest.raises(ValueError, match="holds a run with other arguments .methods.*max_channels"):
        kc.explain_dataset("scorecam", data, model, out_dir=tmp_path, verbose=0,
                           method_options={"scorecam": {"max_channels": 4}})


def test_settings_list_every_constructor_argument_but_the_model_and_verbose():
    model = _model(softmax=True)
    settings = kc.ScoreCAM(model, [model.get_layer("feat"), "c1"], max_channels=2,
                           verbose=1).settings()
    assert settings["layer"] == ["feat", "c1"] and settings["max_channels"] == 2
    assert settings["score"] == "logit" and settings["skip_constant"] is True  # defaults
    assert "verbose" not in settings and "model" not in settings
    assert kc.KPCACAM(model, "feat", gamma=0.5).settings()["gamma"] == 0.5  # via **kwargs too
    assert kc.KPCACAM(model, "feat", score="probability").settings()["score"] == "probability"
