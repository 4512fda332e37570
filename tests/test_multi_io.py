"""Tests of several outputs (`output=`) and several inputs (`input=`), issue 12 items 1 and 2.

The expected maps come from models built here from the same layer objects (shared weights):
a single-output model of one head, and a single-input wrapper that fixes the metadata, plus
the slow references of `references.py` (their own tapes and loops).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc
from references import (
    HEIGHT,
    WIDTH,
    feature_model,
    gap_head,
    reference_gradient_maps,
    reference_score_maps,
    upsample_and_normalize,
)


def _two_head_model() -> tuple[keras.Model, dict[str, keras.Model]]:
    """A trunk with a main head and an auxiliary head that branches off earlier.

    Returns:
        `(model, singles)`: the two-output model, and for each head a single-output model
        built from the same layer objects on a new input.
    """
    conv1 = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")
    pool = layers.AveragePooling2D(2, name="pool")
    last = layers.Conv2D(12, 3, padding="same", activation="relu", name="last_conv")
    aux_conv = layers.Conv2D(8, 3, padding="same", activation="relu", name="aux_conv")
    gap, aux_gap = layers.GlobalAveragePooling2D(), layers.GlobalAveragePooling2D()
    main = layers.Dense(3, activation="softmax", name="main")
    aux = layers.Dense(2, activation="softmax", name="aux")

    def heads(inputs):
        trunk = pool(conv1(inputs))
        return {"main": main(gap(last(trunk))), "aux": aux(aux_gap(aux_conv(trunk)))}

    inputs = keras.Input((HEIGHT, WIDTH, 3))
    outputs = heads(inputs)
    model = keras.Model(inputs, [outputs["main"], outputs["aux"]], name="two_heads")
    singles = {}
    for name in ("main", "aux"):
        fresh = keras.Input((HEIGHT, WIDTH, 3))
        singles[name] = keras.Model(fresh, heads(fresh)[name], name=f"only_{name}")
    return model, singles


FEATURES = {"main": "last_conv", "aux": "aux_conv"}


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_the_map_of_output_k_is_that_of_a_model_with_only_head_k(method):
    """For both heads and one gradient method and Score-CAM: `output=` (name and index) gives
    the maps of the single-head model, which match the slow reference of that head; the
    automatic layer follows the chosen head (the auxiliary head's own conv)."""
    model, singles = _two_head_model()
    images = np.random.default_rng(0).random((3, HEIGHT, WIDTH, 3)).astype(np.float32)
    options = {"verbose": 0} if method == "scorecam" else {}
    for index, name in enumerate(("main", "aux")):
        single = singles[name]
        classes = np.asarray(single(images)).argmax(axis=1)
        by_name = kc.get_method(method)(model, output=name, **options)
        assert by_name.layer.name == FEATURES[name]
        maps = by_name(images)
        by_index = kc.get_method(method)(model, output=index, **options)(images)
        expected = kc.get_method(method)(single, **options)(images)
        np.testing.assert_allclose(maps, expected, atol=1e-5)
        np.testing.assert_allclose(by_index, expected, atol=1e-5)
        fresh = keras.Input((HEIGHT, WIDTH, 3))
        trunk = single.get_layer("pool")(single.get_layer("conv1")(fresh))
        features_of = keras.Model(fresh, single.get_layer(FEATURES[name])(trunk))
        if method == "gradcam":
            logits = gap_head(single.get_layer(name))
            reference = reference_gradient_maps(features_of, logits, images, classes)
        else:
            features = np.asarray(features_of(images), np.float32)
            reference = reference_score_maps(single, features, images, classes)
        np.testing.assert_allclose(maps, reference, atol=2e-4)


def test_cam_reads_the_gap_head_of_the_chosen_output():
    """CAM on each head is the Dense kernel's column of that head (hand-computed)."""
    model, singles = _two_head_model()
    images = np.random.default_rng(5).random((2, HEIGHT, WIDTH, 3)).astype(np.float32)
    for name in ("main", "aux"):
        single = singles[name]
        fresh = keras.Input((HEIGHT, WIDTH, 3))
        trunk = single.get_layer("pool")(single.get_layer("conv1")(fresh))
        features = keras.Model(fresh, single.get_layer(FEATURES[name])(trunk))(images).numpy()
        kernel = single.get_layer(name).kernel.numpy().astype(np.float64)
        raw = np.maximum(np.einsum("bhwk,kb->bhw", features, kernel[:, [0, 1]]), 0.0)
        expected = upsample_and_normalize(raw, (HEIGHT, WIDTH))
        assert expected.max() > 0
        maps = kc.CAM(model, output=name)(images, targets=[0, 1])
        np.testing.assert_allclose(maps, expected, atol=1e-5)


def test_several_outputs_without_output_or_a_wrong_one_are_refused_with_the_list():
    model, _ = _two_head_model()
    listing = r"0: 'main' \(None, 3\), 1: 'aux' \(None, 2\)"
    with pytest.raises(ValueError, match=rf"has 2 outputs \({listing}\).*`output=`"):
        kc.GradCAM(model)
    with pytest.raises(ValueError, match=rf"`output`='head' is not an output.*{listing}"):
        kc.ScoreCAM(model, output="head")
    with pytest.raises(ValueError, match=r"`output`=2 is not an output"):
        kc.GradCAMPlusPlus(model, output=2)
    with pytest.raises(ValueError, match=r"`output`=True is not an output"):
        kc.GradCAM(model, output=True)


# ----------------------------------------------------------------------------- several inputs
META = 4
CHANNELS = 12


def _image_and_metadata_model() -> keras.Model:
    """Image features gated per channel by the metadata, then GAP -> Dense softmax.

    The explained layer ("last_conv") sits before the gate, so its gradient depends on the
    metadata: a map that ignored the metadata (or changed it) would differ.
    """
    image = keras.Input((HEIGHT, WIDTH, 3), name="image")
    meta = keras.Input((META,), name="meta")
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(image)
    x = layers.AveragePooling2D(2, name="pool")(x)
    x = layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="last_conv")(x)
    gate = layers.Dense(CHANNELS, activation="sigmoid", name="gate")(meta)
    gate = layers.Reshape((1, 1, CHANNELS))(gate)
    x = layers.Multiply(name="gated")([x, gate])
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax", name="classifier")(x)
    return keras.Model({"image": image, "meta": meta}, outputs, name="image_meta")


def _fixed_metadata_wrapper(model: keras.Model, row: np.ndarray) -> keras.Model:
    """A single-input model: the image, with the metadata fixed to `row`."""
    image = keras.Input((HEIGHT, WIDTH, 3))
    constant = tf.constant(row[np.newaxis], tf.float32)
    meta = layers.Lambda(
        lambda x: tf.tile(constant, [tf.shape(x)[0], 1]), output_shape=(META,)
    )(image)
    return keras.Model(image, model({"image": image, "meta": meta}), name="fixed_meta")


def _inputs(n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.random((n, HEIGHT, WIDTH, 3)).astype(np.float32)
    meta = rng.normal(0.0, 3.0, (n, META)).astype(np.float32)
    return images, meta


@pytest.mark.parametrize(
    "method, options",
    [
        ("gradcam", {}),
        ("scorecam", {"verbose": 0}),
        ("scorecam", {"verbose": 0, "weighting": "softmax"}),  # the blank-input baseline too
    ],
    ids=["gradcam", "scorecam", "scorecam-softmax"],
)
def test_the_map_of_the_image_input_is_that_of_a_wrapper_fixing_the_metadata(method, options):
    """Each image's map, with its own metadata row, equals the map of a single-input wrapper
    with that row fixed; the list and the dict structures give the same maps; `predict`
    matches the model; the maps have the image's size."""
    model = _image_and_metadata_model()
    kernel, bias = model.get_layer("last_conv").get_weights()
    kernel[..., 0], bias[0] = 0.0, 0.0  # a constant channel: Score-CAM's baseline is used
    model.get_layer("last_conv").set_weights([kernel, bias])
    images, meta = _inputs()
    assert kc.GradCAM(model, input="image").layer.name == "gated"  # the automatic choice
    cam = kc.get_method(method)(model, layer="last_conv", input="image", **options)
    maps = cam([images, meta], targets=[0, 2])
    assert maps.shape == (2, HEIGHT, WIDTH)
    if options.get("weighting") == "softmax":
        assert cam.last_stats.baseline_passes == 2  # the blank, once with each metadata row
    np.testing.assert_array_equal(cam({"meta": meta, "image": images}, targets=[0, 2]), maps)
    np.testing.assert_allclose(
        cam.predict([images, meta]), model({"image": images, "meta": meta}), atol=1e-6
    )
    for i, target in enumerate((0, 2)):
        wrapper = _fixed_metadata_wrapper(model, meta[i])
        expected = kc.get_method(method)(wrapper, layer="last_conv", **options)(
            images[i], targets=target
        )
        np.testing.assert_allclose(maps[i], expected, atol=1e-5)
        single = cam([images[i], meta[i]], targets=target)  # one image: no batch axis
        np.testing.assert_allclose(single, expected, atol=1e-5)
    if method == "gradcam":  # the metadata matters to the map (Score-CAM's, barely)
        other = kc.GradCAM(model, "last_conv", input=0)([images, meta[::-1]], [0, 2])
        assert np.abs(other - maps).max() > 1e-2


class _MetadataSpy(layers.Layer):
    """Passes the metadata through and counts the rows equal to each of `table`'s rows, and
    the rows equal to none (a masked or mixed-up metadata row)."""

    def __init__(self, table: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.table = tf.constant(table, tf.float32)
        self.seen = self.add_weight(shape=(len(table),), initializer="zeros", trainable=False)
        self.strays = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, meta):
        equal = tf.reduce_all(tf.equal(meta[:, tf.newaxis, :], self.table[tf.newaxis]), axis=-1)
        self.seen.assign_add(tf.reduce_sum(tf.cast(equal, tf.float32), axis=0))
        self.strays.assign_add(tf.reduce_sum(tf.cast(~tf.reduce_any(equal, axis=1), tf.float32)))
        return meta

    def compute_output_shape(self, input_shape):
        return input_shape


def test_score_cam_masks_only_the_image_and_each_copy_keeps_its_own_metadata():
    """Every model call of Score-CAM gets each image's metadata row unchanged: one row for the
    first pass plus one per non-constant channel of that image (the masked copies), and no
    other row; the masked-image maps still follow the slow reference with the metadata."""
    images, meta = _inputs(3)
    base = _image_and_metadata_model()
    spy = _MetadataSpy(meta, name="spy")
    image = keras.Input((HEIGHT, WIDTH, 3), name="image")
    meta_in = keras.Input((META,), name="meta")
    model = keras.Model([image, meta_in], base({"image": image, "meta": spy(meta_in)}))
    cam = kc.ScoreCAM(model, input="image", layer="last_conv", verbose=0)
    spy.seen.assign(tf.zeros(3))
    maps = cam([images, meta], targets=1)
    features = np.asarray(feature_model(base)(images))
    flat = features.reshape(3, -1, CHANNELS)
    channels_used = (flat.max(axis=1) > flat.min(axis=1)).sum(axis=1)
    np.testing.assert_array_equal(spy.seen.numpy(), channels_used + 1)
    assert float(spy.strays.numpy()) == 0.0

    class _WithMeta:  # the model with each image's metadata, for the reference loop
        def __init__(self, row):
            self.row = row[np.newaxis]

        def __call__(self, x, training=False):
            return model([x, np.repeat(self.row, len(x), axis=0)], training=training)

    for i in range(3):
        reference = reference_score_maps(_WithMeta(meta[i]), features[i : i + 1],
                                         images[i : i + 1], np.array([1]))
        np.testing.assert_allclose(maps[i], reference[0], atol=2e-4)


def test_several_inputs_errors_name_the_inputs_and_their_shapes():
    model = _image_and_metadata_model()
    images, meta = _inputs()
    listing = r"0: 'image' \(None, 24, 40, 3\), 1: 'meta' \(None, 4\)"
    with pytest.raises(ValueError, match=rf"has 2 inputs \({listing}\).*`input=`"):
        kc.GradCAM(model)
    with pytest.raises(ValueError, match=rf"`input`='pixels' is not an input.*{listing}"):
        kc.GradCAM(model, input="pixels")
    with pytest.raises(ValueError, match=r"its input 'meta' has shape \(None, 4\)"):
        kc.GradCAM(model, input="meta")
    cam = kc.GradCAM(model, input="image")
    with pytest.raises(ValueError, match=r"takes 2 inputs \('image' \(None, 24, 40, 3\), "
                                         r"'meta' \(None, 4\)\).*Received ndarray"):
        cam(images)
    with pytest.raises(ValueError, match=r"Received \['image'\]"):
        cam({"image": images})
    with pytest.raises(ValueError, match=r"Input 'meta' has shape \(3, 4\).*one row per "
                                         r"explained image \(2\)"):
        cam([images, np.zeros((3, META))])
    with pytest.raises(ValueError, match=r"Input 'meta' has shape \(2, 5\)"):
        cam([images, np.zeros((2, 5))])
    with pytest.raises(ValueError, match=r"Input 'meta' contains NaN"):
        cam([images, np.full((2, META), np.nan)])


# --------------------------------------------------------------- output= in the other tools
def test_evaluate_metrics_and_the_callback_explain_and_score_the_chosen_output(tmp_path):
    """`evaluate`, a metric and `HeatmapCallback` with `output="aux"` give what they give on
    the single-head model; the metric's value is also computed here by hand."""
    model, singles = _two_head_model()
    single = singles["aux"]
    images = np.random.default_rng(3).random((2, HEIGHT, WIDTH, 3)).astype(np.float32)
    maps = np.random.default_rng(4).random((2, HEIGHT, WIDTH)).astype(np.float32)
    p = np.asarray(single(images))
    top = p.argmax(axis=1)
    q = np.asarray(single(images * maps[..., None]))[np.arange(2), top]
    y = p[np.arange(2), top]
    expected = 100.0 * np.maximum(0.0, y - q) / y
    result = kc.metrics.average_drop(model, images, maps, output="aux")
    np.testing.assert_allclose(result.per_image, expected, rtol=1e-4)
    table = kc.evaluate(model, images, methods="gradcam", metrics="average_drop", output=1)
    alone = kc.evaluate(single, images, methods="gradcam", metrics="average_drop")
    np.testing.assert_allclose(
        table.results["gradcam"]["average_drop"].per_image,
        alone.results["gradcam"]["average_drop"].per_image,
        atol=1e-6,
    )
    callback = kc.HeatmapCallback(images, out_dir=tmp_path, output="aux")
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0)
    np.testing.assert_allclose(
        callback.last_maps["gradcam"], kc.GradCAM(single)(images, targets=top), atol=1e-5
    )
    wrong = kc.HeatmapCallback(images, out_dir=tmp_path, output="head")
    wrong.set_model(model)
    with pytest.raises(ValueError, match=r"`output`='head' is not an output"):
        wrong.on_train_begin()
    with pytest.raises(ValueError, match=r"`output`=5 is not an output"):
        kc.evaluate(model, images, methods="gradcam", output=5)


def test_the_cli_explains_the_output_it_is_told(tmp_path, capsys):
    from keras_cam import cli

    model, _ = _two_head_model()
    path = tmp_path / "two_heads.keras"
    model.save(path)
    assert cli.main(["info", str(path), "--output", "aux"]) == 0
    assert "aux_conv (automatic)" in capsys.readouterr().out
    assert cli.main(["info", str(path), "--output", "0"]) == 0
    assert "last_conv (automatic)" in capsys.readouterr().out
    assert cli.main(["info", str(path)]) != 0
    assert "has 2 outputs (0: 'main' (None, 3), 1: 'aux' (None, 2))" in capsys.readouterr().err


def test_metrics_mask_only_the_explained_input_and_keep_the_metadata():
    """Average drop and deletion on the image + metadata model: the image is masked, the
    metadata reaches the model unchanged (scores computed here with the model itself)."""
    model = _image_and_metadata_model()
    images, meta = _inputs(3)
    maps = np.random.default_rng(6).random((3, HEIGHT, WIDTH)).astype(np.float32)
    p = np.asarray(model({"image": images, "meta": meta}))
    top = p.argmax(axis=1)
    rows = np.arange(3)
    y = p[rows, top]
    o = np.asarray(model({"image": images * maps[..., None], "meta": meta}))[rows, top]
    expected = 100.0 * np.maximum(0.0, y - o) / y
    result = kc.metrics.average_drop(model, [images, meta], maps, input="image")
    np.testing.assert_allclose(result.per_image, expected, rtol=1e-4)
    by_name = kc.metrics.average_drop(model, {"meta": meta, "image": images}, maps, input=0)
    np.testing.assert_allclose(by_name.per_image, expected, rtol=1e-4)
    curve = kc.metrics.deletion(model, [images, meta], maps, targets=1, steps=2, input="image")
    blank = np.asarray(model({"image": np.zeros_like(images), "meta": meta}))[:, 1]
    np.testing.assert_allclose(curve.curve[:, 0], p[:, 1], rtol=1e-4)
    np.testing.assert_allclose(curve.curve[:, -1], blank, rtol=1e-4)
    with pytest.raises(ValueError, match=r"has 2 inputs \(0: 'image'.*`input=`"):
        kc.metrics.average_drop(model, [images, meta], maps)
    with pytest.raises(ValueError, match=r"takes 2 inputs .*pass `images` as all of them"):
        kc.metrics.average_drop(model, images, maps, input="image")
