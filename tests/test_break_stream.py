"""Breaking commit 23847f1: the rebatched stream, the finite check inside the fused pass and a
fixed-size model's geometry held as constants. Every answer is computed here independently
(a Grad-CAM and a bilinear placement written in the test, `model.predict`)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cam as kc

HEIGHT, WIDTH, CLASSES = 24, 40, 3
BAD = 4  # the non-finite image of a batch of 6
NAMED = r"NaN or infinite values \(first in image 4\)"


def rgb_model(dtype: str = "float32", size: tuple[int, int] = (HEIGHT, WIDTH)) -> keras.Model:
    """Conv -> conv("last") -> GAP -> softmax Dense on RGB images of `size` and `dtype`."""
    inputs = keras.Input((*size, 3), dtype=dtype)
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs) if dtype != "float32" else inputs
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="rgb")


def bad_images(
    value: float = np.nan, integers: bool = False, size: tuple[int, int] = (HEIGHT, WIDTH)
) -> np.ndarray:
    """Six RGB images of `size`; image `BAD` holds one `value` pixel."""
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (6, *size, 3)).astype(np.float32)
    if integers:
        images = np.round(images * 255.0)
    images[BAD, 3, 5, 1] = value
    return images


# ------------------------------------------------------------ non-finite images, refused
@pytest.mark.parametrize("kind", ["numpy", "tensor"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_an_integer_input_model_names_the_non_finite_image(kind, value):
    """A uint8 model checks its images' values on the host; a NaN there is a NaN, named, not
    'non-integer values in [nan, nan]'."""
    images = bad_images(value, integers=True)
    given = images if kind == "numpy" else tf.constant(images)
    with pytest.raises(ValueError, match=NAMED):
        kc.GradCAM(rgb_model("uint8"))(given)


class CheckNumerics(keras.layers.Layer):
    """`tf.debugging.check_numerics`: an op that refuses a NaN at run time (identity else)."""

    def call(self, x):
        return tf.debugging.check_numerics(x, "features")


def checked_model() -> keras.Model:
    """A conv -> GAP -> softmax model that checks its input for NaN itself, inside the pass."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(
        CheckNumerics()(inputs)
    )
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_an_op_of_the_model_failing_on_a_nan_image_inside_the_pass_still_names_it(kind):
    images = bad_images()
    given = images if kind == "numpy" else tf.constant(images)
    cam = kc.GradCAM(checked_model(), layer="last")
    assert cam(images[:BAD]).shape == (BAD, HEIGHT, WIDTH)  # finite images: maps
    with pytest.raises(ValueError, match=NAMED):
        cam(given)


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_an_op_of_the_method_failing_on_an_infinite_image_still_names_it(kind):
    """KPCA-CAM's eigendecomposition refuses infinite features inside the pass (6x10
    images: one kernel of 60 positions per image)."""
    images = bad_images(np.inf, size=(6, 10))
    given = images if kind == "numpy" else tf.constant(images, tf.float64)
    with pytest.raises(ValueError, match=NAMED):
        kc.KPCACAM(rgb_model(size=(6, 10)))(given)


# ------------------------------------------------------- the stream: shards of any batches
def slow_gradcam(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017, Eq. 1-2) image by image: the pre-softmax logit of
    `classes` differentiated w.r.t. layer "last", mean gradients as weights, ReLU, placed by
    `place_reference` (same-padded stride-1 convs: offset 0, scale 1) and min-max normalized."""
    features_model = keras.Model(model.inputs[0], model.get_layer("last").output)
    dense = model.layers[-1]
    out = []
    for image, cls in zip(images, classes):
        features = tf.constant(features_model(image[None].astype(np.float32)))
        with tf.GradientTape() as tape:
            tape.watch(features)
            logits = tf.matmul(tf.reduce_mean(features, axis=(1, 2)), dense.kernel) + dense.bias
            score = logits[0, int(cls)]
        grads = tape.gradient(score, features).numpy()[0]
        cam = np.maximum(np.einsum("hwc,c->hw", features.numpy()[0], grads.mean(axis=(0, 1))), 0)
        identity = [(0.0, 1.0, 0.0, HEIGHT), (0.0, 1.0, 0.0, WIDTH)]
        out.append(min_max(place_reference(cam, (HEIGHT, WIDTH), identity)))
    return np.stack(out)


def axis_sampler(cells: int, pixels: int, offset: float, scale: float, lo: float, hi: float):
    """`(pixels, cells)` bilinear weights of one axis, as `place_maps`' docstring defines them:
    pixel centre `i + 0.5` maps to cell position `(c - offset) / scale - 0.5`, clamped to the
    grid; scale 0 stretches the cells over `[lo, hi)`; pixels outside `[lo, hi)` get 0."""
    if scale == 0:
        scale, offset = (hi - lo) / cells, lo
    weights = np.zeros((pixels, cells))
    for i in range(pixels):
        centre = i + 0.5
        if not lo <= centre < hi:
            continue
        position = min(max((centre - offset) / scale - 0.5, 0.0), cells - 1.0)
        low = int(np.floor(position))
        high = min(low + 1, cells - 1)
        weights[i, low] += 1.0 - (position - low)
        weights[i, high] += position - low
    return weights


def place_reference(cam: np.ndarray, size, placement) -> np.ndarray:
    """One map `(h, w)` (or `(t,)`, `(d, h, w)`) placed on `size` axis by axis."""
    for axis, (pixels, geometry) in enumerate(zip(size, placement)):
        sampler = axis_sampler(cam.shape[axis], pixels, *geometry)
        cam = np.moveaxis(np.tensordot(sampler, np.moveaxis(cam, axis, 0), axes=1), 0, axis)
    return cam


def min_max(cam: np.ndarray) -> np.ndarray:
    low, high = cam.min(), cam.max()
    return (cam - low) / (high - low) if high > low else np.zeros_like(cam)


@pytest.fixture(scope="module")
def stream_data():
    keras.utils.set_random_seed(3)
    model = rgb_model()
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (23, HEIGHT, WIDTH, 3)).astype(np.float32)
    labels = rng.integers(0, CLASSES, 23)
    probabilities = model.predict(images, verbose=0)
    return model, images, labels, probabilities, slow_gradcam(model, images, labels)


def sized_batches(images, labels, sizes):
    """A generator of `(images, labels)` batches of the given sizes, in order."""
    start = 0
    for size in sizes:
        yield images[start : start + size], labels[start : start + size]
        start += size


DATASETS = {
    "unbatched": lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)),
    "batches_of_5": lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(5),
    "batches_of_16": lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
    "float64_int32_column": lambda x, y: tf.data.Dataset.from_tensor_slices(
        (x.astype(np.float64), y.astype(np.int32)[:, None])
    ).batch(7),
    "uint8_scaled_back": lambda x, y: tf.data.Dataset.from_tensor_slices(
        (x.astype(np.float64), y)
    ).batch(3).map(lambda a, b: (a, tf.cast(b, tf.uint8))),
    "varying_generator": lambda x, y: tf.data.Dataset.from_generator(
        lambda: sized_batches(x, y, [1, 5, 2, 9, 6]),
        output_signature=(
            tf.TensorSpec((None, None, None, 3), tf.float32), tf.TensorSpec((None,), tf.int64)
        ),
    ),
    "python_iterable": lambda x, y: sized_batches(x, y, [10, 3, 10]),
    "numpy_tuple": lambda x, y: (x, y),
}


@pytest.mark.parametrize("kind", sorted(DATASETS))
def test_any_batching_gives_shards_of_batch_size_with_the_reference_records(stream_data, kind):
    model, images, labels, probabilities, reference = stream_data
    batches = list(kc.explain_dataset(
        "gradcam", DATASETS[kind](images, labels), model, targets="labels", batch_size=8,
        verbose=0,
    ))
    assert [b.shard for b in batches] == [0, 1, 2]
    assert [len(b.index) for b in batches] == [8, 8, 7]
    np.testing.assert_array_equal(np.concatenate([b.index for b in batches]), np.arange(23))
    np.testing.assert_array_equal(np.concatenate([b.classes for b in batches]), labels)
    np.testing.assert_array_equal(np.concatenate([b.labels.reshape(-1) for b in batches]), labels)
    np.testing.assert_array_equal(
        np.concatenate([b.predicted for b in batches]), probabilities.argmax(-1)
    )
    np.testing.assert_allclose(
        np.concatenate([b.scores for b in batches]), probabilities.max(-1), atol=1e-6
    )
    np.testing.assert_allclose(np.concatenate([b.images for b in batches]), images)
    np.testing.assert_allclose(
        np.concatenate([b.maps["gradcam"] for b in batches]), reference, atol=1e-4
    )


class Stop(RuntimeError):
    """The error an interrupted iterable raises."""


def stopping(images, labels, size, stop):
    """Batches of `size` that raise `Stop` once `stop` images were read."""
    for start in range(0, len(images), size):
        if start >= stop:
            raise Stop("interrupted")
        yield images[start : start + size], labels[start : start + size]


class Counting(kc.GradCAM):
    """Grad-CAM that counts the batches it explains."""

    calls = 0

    def explain(self, images, targets=None, **kwargs):
        Counting.calls += 1
        return super().explain(images, targets, **kwargs)


def read_shards(folder: pathlib.Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("shard-*"))}


@pytest.mark.parametrize("size, stop", [(10, 20), (3, 9), (6, 12)])
def test_an_iterable_stopping_midway_writes_full_shards_only_and_resumes_identically(
    stream_data, tmp_path, size, stop
):
    """Batches of 10 (larger than the shards of 4), of 3 and of 6 (smaller, not divisors):
    the shards written before the error are full and hold the images read; the rerun skips
    them (counted) and ends with the files of an uninterrupted run."""
    model, images, labels, probabilities, reference = stream_data
    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    with pytest.raises(Stop, match="interrupted"):
        kc.explain_dataset({"gradcam": Counting(model)}, stopping(images, labels, size, stop),
                           batch_size=4, out_dir=interrupted, verbose=0)
    records = [json.loads(path.read_text()) for path in sorted(interrupted.glob("shard-*.json"))]
    assert [r["shard"] for r in records] == list(range(stop // 4))
    assert [i["index"] for r in records for i in r["images"]] == list(range(stop // 4 * 4))
    Counting.calls = 0
    kc.explain_dataset({"gradcam": Counting(model)},
                       tf.data.Dataset.from_tensor_slices((images, labels)).batch(size),
                       batch_size=4, out_dir=interrupted, verbose=0)
    assert Counting.calls == 6 - stop // 4  # 6 shards of 4 over 23 images
    kc.explain_dataset({"gradcam": Counting(model)}, (images, labels), batch_size=4,
                       out_dir=whole, verbose=0)
    assert read_shards(interrupted) == read_shards(whole)
    assert (interrupted / "manifest.json").read_text() == (whole / "manifest.json").read_text()
    with np.load(whole / "shard-000002.npz") as shard:
        np.testing.assert_allclose(
            shard["maps/gradcam"], kc.GradCAM(model)(images[8:12]), atol=1e-6
        )


def any_size_model() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


def two_sizes(count: int = 3):
    rng = np.random.default_rng(5)
    return (
        rng.uniform(0, 1, (count, HEIGHT, WIDTH, 3)).astype(np.float32),
        rng.uniform(0, 1, (count, 17, 31, 3)).astype(np.float32),
    )


def test_batches_of_one_size_each_are_explained_at_their_size():
    model = any_size_model()
    first, second = two_sizes()
    dataset = tf.data.Dataset.from_generator(
        lambda: iter([first, second]),
        output_signature=tf.TensorSpec((None, None, None, 3), tf.float32),
    )
    batches = list(kc.explain_dataset("gradcam", dataset, model, batch_size=3, verbose=0))
    assert [b.maps["gradcam"].shape for b in batches] == [(3, HEIGHT, WIDTH), (3, 17, 31)]
    for batch, images in zip(batches, (first, second)):
        np.testing.assert_allclose(batch.maps["gradcam"], kc.GradCAM(model)(images), atol=1e-6)


SIZES_REFUSED = r"images of different sizes.*batch_size"


@pytest.mark.parametrize("kind", ["batched", "unbatched", "python_iterable"])
def test_images_of_two_sizes_in_one_shard_are_refused_clearly(kind):
    model = any_size_model()
    first, second = two_sizes()
    spec = tf.TensorSpec((None, None, None, 3), tf.float32)
    dataset = {
        "batched": lambda: tf.data.Dataset.from_generator(
            lambda: iter([first, second]), output_signature=spec
        ),
        "unbatched": lambda: tf.data.Dataset.from_generator(
            lambda: iter([*first, *second]), output_signature=tf.TensorSpec(spec.shape[1:])
        ),
        "python_iterable": lambda: iter([first, second]),
    }[kind]()
    with pytest.raises(ValueError, match=SIZES_REFUSED):
        list(kc.explain_dataset("gradcam", dataset, model, batch_size=4, verbose=0))


def test_a_nan_image_of_a_dataset_is_named_by_its_index_in_the_dataset(stream_data):
    model, images, labels, probabilities, reference = stream_data
    bad = images.copy()
    bad[11, 2, 2, 0] = np.nan
    dataset = tf.data.Dataset.from_tensor_slices(bad).batch(4)
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first in image 11\)"):
        list(kc.explain_dataset("gradcam", dataset, model, batch_size=7, verbose=0))


# ---------------------------------------------- a fixed-size model's geometry as constants
def chain_model(shape, body, data_format="channels_last", name="chain") -> keras.Model:
    """input -> `body` (ending in a layer named "last") -> global average pooling -> a linear
    Dense head (its output is the logit Grad-CAM differentiates)."""
    pooling = {2: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling2D,
               4: keras.layers.GlobalAveragePooling3D}[len(shape)]
    inputs = keras.Input(shape)
    x = pooling(data_format=data_format)(body(inputs))
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(x), name=name)


def slow_raw_gradcam(model, images, layer="last", channels_first=False) -> np.ndarray:
    """Raw Grad-CAM maps `(B, *cells)` image by image: the top-1 logit differentiated w.r.t.
    `layer`'s output through the layers after it (a chain), mean gradients, ReLU."""
    layers = model.layers
    cut = [layer_.name for layer_ in layers].index(layer)
    features_model = keras.Model(model.inputs[0], layers[cut].output)
    channel = 0 if channels_first else -1
    out = []
    for image in images:
        features = tf.constant(features_model(image[None]))
        with tf.GradientTape() as tape:
            tape.watch(features)
            x = features
            for later in layers[cut + 1 :]:
                x = later(x)
            score = tf.reduce_max(x[0])
        grads = np.moveaxis(tape.gradient(score, features).numpy()[0], channel, -1)
        values = np.moveaxis(features.numpy()[0], channel, -1)
        weights = grads.reshape(-1, grads.shape[-1]).mean(axis=0)
        out.append(np.maximum(values @ weights, 0.0))
    return np.stack(out)


def same_conv_axis(pixels: int, kernel: int, stride: int, before: int = 0):
    """The placement of a "same"-padded conv's cells on one axis, by hand: TensorFlow pads
    `total = max((ceil(n / s) - 1) * s + k - n, 0)`, `total // 2` before; cell `j`'s receptive
    field is centred at `s * j + k / 2 - pad` (continuous), so it covers
    `[offset + s * j, offset + s * (j + 1))` with `offset = k / 2 - s / 2 - pad`; `before`
    pixels cropped in front shift it."""
    cells = -(-pixels // stride)
    pad = max((cells - 1) * stride + kernel - pixels, 0) // 2
    return (kernel / 2 - stride / 2 - pad + before, float(stride))


L = keras.layers
GEOMETRIES = {
    # Cropping ((2, 3), (4, 1)) then a valid 3x3 conv: cell j centred at 2 + j + 1.5.
    "crop": ((HEIGHT, WIDTH, 3), lambda i: L.Conv2D(5, 3, name="last")(
        L.Cropping2D(((2, 3), (4, 1)))(i)), "channels_last",
        [(3.0, 1.0, 2.0, 21.0), (5.0, 1.0, 4.0, 39.0)]),
    # Padding ((1, 2), (3, 0)) then a valid 3x3 conv of stride 2: centre 2j + 1.5 - pad.
    "pad_stride": ((HEIGHT, WIDTH, 3), lambda i: L.Conv2D(5, 3, strides=2, name="last")(
        L.ZeroPadding2D(((1, 2), (3, 0)))(i)), "channels_last",
        [(-0.5, 2.0, 0.0, HEIGHT), (-2.5, 2.0, 0.0, WIDTH)]),
    "strides_2_3": ((HEIGHT, WIDTH, 3), lambda i: L.Conv2D(
        5, 3, strides=(2, 3), padding="same", name="last")(i), "channels_last",
        [(*same_conv_axis(HEIGHT, 3, 2), 0.0, HEIGHT), (*same_conv_axis(WIDTH, 3, 3), 0.0, WIDTH)]),
    # Resizing to 12x30: scales 2 and 4/3, no offset.
    "resize": ((HEIGHT, WIDTH, 3), lambda i: L.Conv2D(5, 3, padding="same", name="last")(
        L.Resizing(12, 30)(i)), "channels_last",
        [(0.0, 2.0, 0.0, HEIGHT), (0.0, WIDTH / 30, 0.0, WIDTH)]),
    "channels_first": ((3, HEIGHT, WIDTH), lambda i: L.Conv2D(
        5, 3, strides=2, padding="same", name="last", data_format="channels_first")(i),
        "channels_first",
        [(*same_conv_axis(HEIGHT, 3, 2), 0.0, HEIGHT), (*same_conv_axis(WIDTH, 3, 2), 0.0, WIDTH)]),
    # A valid conv of stride 2 on 40 steps: centre 2j + 1.5.
    "conv1d": ((WIDTH, 2), lambda i: L.Conv1D(5, 3, strides=2, name="last")(i), "channels_last",
               [(0.5, 2.0, 0.0, WIDTH)]),
    # Cropping (1, 2, 3) of 6x12x20 then a same conv of strides (1, 2, 2) on 4x8x14.
    "conv3d": ((6, 12, 20, 2), lambda i: L.Conv3D(5, 3, strides=(1, 2, 2), padding="same",
               name="last")(L.Cropping3D((1, 2, 3))(i)), "channels_last",
               [(*same_conv_axis(4, 3, 1, 1), 1.0, 5.0), (*same_conv_axis(8, 3, 2, 2), 2.0, 10.0),
                (*same_conv_axis(14, 3, 2, 3), 3.0, 17.0)]),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_a_fixed_size_model_places_its_maps_as_the_slow_reference(name):
    shape, body, data_format, placement = GEOMETRIES[name]
    model = chain_model(shape, body, data_format)
    channels_first = data_format == "channels_first"
    rng = np.random.default_rng(7)
    images = rng.uniform(0, 1, (5, *shape)).astype(np.float32)
    size = shape[1:] if channels_first else shape[:-1]
    raw = slow_raw_gradcam(model, images, channels_first=channels_first)
    cam = kc.GradCAM(model, layer="last")
    placed = np.stack([min_max(place_reference(r, size, placement)) for r in raw])
    np.testing.assert_allclose(cam(images), placed, atol=1e-4)
    np.testing.assert_allclose(cam(images, upsample=False), np.stack([min_max(r) for r in raw]),
                               atol=1e-4)
    batch_scaled = np.stack([place_reference(r, size, placement) for r in raw])
    np.testing.assert_allclose(cam(images, normalize="batch"),
                               batch_scaled / batch_scaled.max(), atol=1e-4)


def test_an_any_size_model_follows_each_size_in_turn():
    """One explainer of a model with None sizes, called at sizes that come and go: each map is
    placed on its own size (a strided "same" conv: the padding changes with the size)."""
    body = GEOMETRIES["strides_2_3"][1]
    model = chain_model((None, None, 3), body)
    cam = kc.GradCAM(model, layer="last")
    rng = np.random.default_rng(8)
    for height, width in [(HEIGHT, WIDTH), (17, 31), (HEIGHT, WIDTH), (WIDTH, HEIGHT), (9, 5)]:
        images = rng.uniform(0, 1, (3, height, width, 3)).astype(np.float32)
        placement = [(*same_conv_axis(height, 3, 2), 0.0, height),
                     (*same_conv_axis(width, 3, 3), 0.0, width)]
        want = np.stack([min_max(place_reference(r, (height, width), placement))
                         for r in slow_raw_gradcam(model, images)])
        np.testing.assert_allclose(cam(images), want, atol=1e-4, err_msg=f"{height}x{width}")


def test_an_explainer_of_another_layer_of_the_same_model_has_its_own_geometry():
    """Crop ((2, 3), (4, 1)), "first" (same 3x3, stride 1), "last" (same 3x3, strides (2, 3))
    on the 19x35 crop: "last" explained first, then "first", then "last" again."""
    def body(inputs):
        x = L.Cropping2D(((2, 3), (4, 1)))(inputs)
        x = L.Conv2D(4, 3, padding="same", activation="relu", name="first")(x)
        return L.Conv2D(5, 3, strides=(2, 3), padding="same", name="last")(x)

    model = chain_model((HEIGHT, WIDTH, 3), body)
    images = np.random.default_rng(9).uniform(0, 1, (4, HEIGHT, WIDTH, 3)).astype(np.float32)
    placements = {
        "first": [(*same_conv_axis(19, 3, 1, 2), 2.0, 21.0),
                  (*same_conv_axis(35, 3, 1, 4), 4.0, 39.0)],
        "last": [(*same_conv_axis(19, 3, 2, 2), 2.0, 21.0),
                 (*same_conv_axis(35, 3, 3, 4), 4.0, 39.0)],
    }
    for layer in ("last", "first", "last"):
        want = np.stack([min_max(place_reference(r, (HEIGHT, WIDTH), placements[layer]))
                         for r in slow_raw_gradcam(model, images, layer)])
        np.testing.assert_allclose(kc.GradCAM(model, layer=layer)(images), want, atol=1e-4,
                                   err_msg=layer)


# ----------------------------------------------------- evaluate and the callback, streamed
def test_streamed_evaluate_of_rebatched_data_equals_in_memory_evaluate(stream_data):
    model, images, labels, probabilities, reference = stream_data
    boxes = np.tile(np.array([[3, 2, 30, 20]]), (23, 1))
    kwargs = {"methods": ["gradcam"], "verbose": 0, "batch_size": 8, "metrics": [
        "average_drop", "increase_in_confidence", "pointing_game", "energy_pointing_game",
        "box_iou", "deletion"]}
    memory = kc.evaluate(model, images, labels, boxes=boxes, **kwargs)
    dataset = tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float64), labels.astype(np.int32), boxes.astype(np.int32))
    ).batch(5)
    streamed = kc.evaluate(model, dataset, **kwargs)
    assert streamed.accuracy == pytest.approx(np.mean(probabilities.argmax(-1) == labels))
    assert set(streamed.results["gradcam"]) == set(memory.results["gradcam"])
    for metric, result in memory.results["gradcam"].items():
        assert streamed.results["gradcam"][metric].mean == pytest.approx(
            result.mean, abs=1e-4
        ), metric


def test_evaluate_and_the_callback_name_the_non_finite_image(stream_data, tmp_path):
    model, images, labels, probabilities, reference = stream_data
    bad = images[:6].copy()
    bad[BAD, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=NAMED):
        kc.evaluate(model, bad, labels[:6], methods=["gradcam"], verbose=0)
    with pytest.raises(ValueError, match=NAMED):
        kc.HeatmapCallback(bad, methods=("gradcam",), log_dir=str(tmp_path))
    streamed = tf.data.Dataset.from_tensor_slices((np.concatenate([images[:8], bad]),
                                                   np.concatenate([labels[:8], labels[:6]])))
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first in image 12\)"):
        kc.evaluate(model, streamed.batch(3), methods=["gradcam", "scorecam"], verbose=0,
                    batch_size=8, metrics=["average_drop"])


@pytest.mark.parametrize("given, message", [
    (lambda y: y + 0.5, r"label of image 0 is 0.5, not a class index"),
    (lambda y: np.where(np.arange(len(y)) == 9, np.nan, y), r"label of image 9 is nan"),
    (lambda y: np.eye(CLASSES, dtype=np.float32)[y], r"labels of images 0-7 have shape \(8, 3\)"),
])
def test_labels_that_are_not_class_indices_are_refused_not_truncated(stream_data, given, message):
    model, images, labels, probabilities, reference = stream_data
    labels = np.zeros_like(labels)
    dataset = tf.data.Dataset.from_tensor_slices((images, given(labels))).batch(5)
    for targets in ("labels", None):
        with pytest.raises(ValueError, match=message):
            list(kc.explain_dataset("gradcam", dataset, model, targets=targets, batch_size=8,
                                    verbose=0))


def test_whole_float_labels_are_class_indices(stream_data):
    model, images, labels, probabilities, reference = stream_data
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.float32)[:, None]))
    batches = list(kc.explain_dataset("gradcam", dataset.batch(6), model, targets="labels",
                                      batch_size=8, verbose=0))
    assert all(b.labels.dtype == np.int64 and b.labels.ndim == 1 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.classes for b in batches]), labels)
    np.testing.assert_allclose(np.concatenate([b.maps["gradcam"] for b in batches]), reference,
                               atol=1e-4)


MIRRORED_CHILD = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import keras_cam as kc

    model = keras.models.load_model(sys.argv[1])
    data = np.load(sys.argv[2])
    images, labels = data["images"], data["labels"]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset = tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float64), labels.astype(np.int32))).batch(3)
    batches = list(kc.explain_dataset("gradcam", dataset, model, targets="labels",
                                      batch_size=7, strategy=strategy, verbose=0))
    out = {key: np.concatenate([getattr(b, key) for b in batches])
           for key in ("index", "classes", "predicted", "scores")}
    out["maps"] = np.concatenate([b.maps["gradcam"] for b in batches])
    np.savez(sys.argv[3], **out)
    bad = images.copy()
    bad[11, 2, 2, 0] = np.nan
    try:
        list(kc.explain_dataset("gradcam", tf.data.Dataset.from_tensor_slices(bad).batch(4),
                                model, batch_size=7, strategy=strategy, verbose=0))
    except ValueError as error:
        print("REFUSED", error)
    print("REPLICAS", strategy.num_replicas_in_sync)
""")


@pytest.mark.slow
def test_mirrored_strategy_over_rebatched_tensors_and_a_nan_image(stream_data, tmp_path):
    """Two logical CPUs, a float64/int32 dataset in batches of 3 rebatched into shards of 7
    (odd slices per replica): the slow reference's maps and `predict`'s records; a NaN image
    named by its index in the dataset, not in a replica's slice."""
    model, images, labels, probabilities, reference = stream_data
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", images=images[:17], labels=labels[:17])
    root = pathlib.Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", MIRRORED_CHILD, str(tmp_path / "model.keras"),
         str(tmp_path / "data.npz"), str(tmp_path / "out.npz")],
        env={**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3",
             "KERAS_BACKEND": "tensorflow"},
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "REPLICAS 2" in run.stdout
    assert "NaN or infinite values (first in image 11)" in run.stdout
    got = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(got["index"], np.arange(17))
    np.testing.assert_array_equal(got["classes"], labels[:17])
    np.testing.assert_array_equal(got["predicted"], probabilities[:17].argmax(-1))
    np.testing.assert_allclose(got["scores"], probabilities[:17].max(-1), atol=1e-6)
    np.testing.assert_allclose(got["maps"], reference[:17], atol=1e-4)


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_every_method_names_a_non_finite_image_of_a_later_chunk(name):
    """Image 4 of 6 (the third chunk of 2), as a float64 tensor, batch normalization and one
    class per image: refused by every method, naming the image, never a map."""
    model = rgb_model(size=(6, 10))
    cam = kc.get_method(name)(model, verbose=0)
    cam.images_per_pass = 2
    for value in (np.nan, -np.inf):
        images = tf.constant(bad_images(value, size=(6, 10)), tf.float64)
        with pytest.raises(ValueError, match=NAMED):
            cam(images, targets=[0, 1, 2, 0, 1, 2], normalize="batch")
        with pytest.raises(ValueError, match=NAMED):
            cam.explain(images)


@pytest.mark.parametrize("part, message", [
    ("images", r"`dataset images` must hold real numbers.*complex64"),
    ("labels", r"`dataset labels` must hold real numbers.*string"),
])
def test_dataset_parts_that_are_not_real_numbers_are_refused_like_in_memory(part, message):
    """In memory complex images are refused; the dataset's cast must not drop the imaginary
    part silently (nor fail in tf.data on string labels)."""
    images = bad_images(0.5, size=(6, 10))
    labels = np.array(["cat"] * 6) if part == "labels" else np.zeros(6, np.int64)
    if part == "images":
        images = images.astype(np.complex64) * (1 + 1j)
    with pytest.raises(TypeError, match=message):
        kc.explain_dataset("gradcam", (images, labels), rgb_model(size=(6, 10)), verbose=0)


def test_float_boxes_are_refused_in_a_dataset_as_in_memory():
    images = bad_images(0.5, size=(6, 10))
    labels, boxes = np.zeros(6, np.int64), np.tile([[1.5, 1.0, 8.7, 5.0]], (6, 1))
    model = rgb_model(size=(6, 10))
    with pytest.raises(TypeError, match=r"`boxes` must hold integer pixel coordinates"):
        kc.evaluate(model, images, labels, boxes=boxes, methods=["gradcam"], verbose=0,
                    metrics=["pointing_game"])
    dataset = tf.data.Dataset.from_tensor_slices((images, labels, boxes)).batch(4)
    with pytest.raises(TypeError, match=r"`dataset` boxes must hold integer pixel coordinates"):
        kc.evaluate(model, dataset, methods=["gradcam"], verbose=0, metrics=["pointing_game"])
