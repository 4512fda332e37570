"""Faults found by trying the merged work of issues 12-16 as an adversary (one test per fault).

Every expected value is computed here, independently of keras_cam: a Grad-CAM map written out
from `tf.GradientTape` on the model's own tokens, or the message a refusal must carry.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, ops

import keras_cam as kc

HEIGHT, WIDTH, PATCH, DIM = 24, 40, 4, 8
GRID = (HEIGHT // PATCH, WIDTH // PATCH)


class ExtraTokens(layers.Layer):
    """Adds `count` learned tokens before (`at_end=False`) or after the tokens it is given."""

    def __init__(self, count: int, at_end: bool, **kwargs):
        super().__init__(**kwargs)
        self.count, self.at_end = count, at_end

    def build(self, input_shape):
        self.tokens = self.add_weight(
            shape=(1, self.count, input_shape[-1]), initializer="random_normal"
        )

    def call(self, tokens):
        extra = ops.tile(self.tokens, [ops.shape(tokens)[0], 1, 1])
        return ops.concatenate([tokens, extra] if self.at_end else [extra, tokens], axis=1)


def _token_vit(leading: int, trailing: int) -> keras.Model:
    """A tiny ViT on 24x40 images (6x10 patches) with `leading` extra tokens before the patch
    tokens and `trailing` after; the head reads the last token."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(DIM, PATCH, strides=PATCH, name="patches")(inputs)
    x = layers.Reshape((GRID[0] * GRID[1], DIM))(x)
    if trailing:
        x = ExtraTokens(trailing, at_end=True)(x)
    if leading:
        x = ExtraTokens(leading, at_end=False)(x)
    y = layers.LayerNormalization(name="norm1")(x)
    y = layers.MultiHeadAttention(2, DIM // 2, name="attention")(y, y)
    x = layers.Add()([x, y])
    x = layers.LayerNormalization(name="final_norm")(x)
    outputs = layers.Dense(4, name="head")(x[:, -1])
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("leading, trailing", [(0, 1), (1, 2), (2, 0)])
def test_extra_tokens_before_and_after_the_patches_are_left_out(leading, trailing):
    """Extra tokens after the patch tokens (alone, or with others before them): the map is
    that of the patch tokens, not one shifted by the extra token count (it was, silently)."""
    model = _token_vit(leading, trailing)
    images = np.random.default_rng(0).normal(size=(2, HEIGHT, WIDTH, 3)).astype("float32")
    classes = [1, 2]
    got = kc.GradCAM(model, layer="norm1")(images, classes, upsample=False, normalize=False)

    probe = keras.Model(model.input, [model.get_layer("norm1").output, model.output])
    with tf.GradientTape() as tape:
        tokens, outputs = probe(tf.constant(images))
        score = tf.reduce_sum(tf.gather(outputs, classes, batch_dims=1))
    patches = slice(leading, leading + GRID[0] * GRID[1])
    grads = tape.gradient(score, tokens).numpy()[:, patches]
    weights = grads.mean(axis=1)
    cells = tokens.numpy()[:, patches]
    expected = np.maximum((cells * weights[:, None]).sum(-1), 0).reshape(2, *GRID)
    assert expected.max() > 0
    np.testing.assert_allclose(got, expected, atol=1e-5 * expected.max())


def _signal_model() -> keras.Model:
    inputs = keras.Input((30, 2))
    x = layers.Conv1D(5, 3, padding="same", activation="relu")(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x))


def test_image_only_tools_refuse_a_batch_of_signals_by_name():
    """`evaluate` and the sanity check take images only; a batch of signals was told to add a
    batch axis (a wrong fix). The refusal now names signals as not supported."""
    model = _signal_model()
    signals = np.random.default_rng(0).normal(size=(4, 30, 2)).astype("float32")
    with pytest.raises(ValueError, match=r"signals \(B, T, C\), they are not supported here"):
        kc.sanity.model_parameter_randomisation(model, signals, "gradcam")
    with pytest.raises(ValueError, match=r"signals \(B, T, C\), they are not supported here"):
        kc.evaluate(model, signals, methods=("gradcam",), metrics=("deletion",), baselines=False)
    volumes = np.zeros((2, 4, 6, 8, 2), "float32")
    with pytest.raises(ValueError, match=r"volumes \(B, D, H, W, C\), they are not supported"):
        kc.evaluate(model, volumes, methods=("gradcam",), metrics=("deletion",), baselines=False)


def _gini(values: np.ndarray) -> float:
    """Gini index of |values|, written out from its definition (sorted ascending)."""
    a = np.sort(np.abs(values.ravel()))
    n = len(a)
    return sum((2 * (k + 1) - n - 1) * a[k] for k in range(n)) / (n * a.sum())


def test_energy_pointing_game_and_sparseness_on_signals_and_volumes():
    """They were refused on (B, T) and (B, D, H, W) maps although both are defined there: the
    energy share inside the interval / 3-D box, and the Gini index of all the values."""
    rng = np.random.default_rng(0)
    signals = rng.uniform(0, 1, (2, 30))
    intervals = np.array([[3, 10], [0, 30]])
    got = kc.metrics.energy_pointing_game(signals, intervals).per_image
    np.testing.assert_allclose(got, [signals[0, 3:10].sum() / signals[0].sum(), 1.0])
    volumes = rng.uniform(0, 1, (2, 4, 6, 8))
    boxes = np.array([[1, 2, 0, 5, 3, 2], [7, 5, 3, 8, 6, 4]])  # (x0, y0, z0, x1, y1, z1)
    got = kc.metrics.energy_pointing_game(volumes, boxes).per_image
    expected = [volumes[0, 0:2, 2:3, 1:5].sum() / volumes[0].sum(),
                volumes[1, 3, 5, 7] / volumes[1].sum()]
    np.testing.assert_allclose(got, expected)
    for maps in (signals, volumes):
        np.testing.assert_allclose(kc.metrics.sparseness(maps).per_image, [_gini(m) for m in maps])


def test_box_iou_cam_refuses_signals_and_volumes_naming_box_iou():
    with pytest.raises(ValueError, match=r"box_iou_cam.*shape \(2, 30\).*use `box_iou`"):
        kc.metrics.box_iou_cam(np.ones((2, 30)), np.array([[0, 5], [1, 4]]))


def _two_headed() -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    a = layers.Dense(3, name="a")(layers.GlobalAveragePooling2D()(x))
    y = layers.Conv2D(5, 3, padding="same", activation="relu")(x)
    b = layers.Dense(2, name="b")(layers.GlobalAveragePooling2D()(y))
    return keras.Model(inputs, {"a": a, "b": b})


def test_fullgrad_takes_output_and_input_like_every_method():
    """FullGrad's signature lacked `output=`/`input=`: a model with several outputs was
    refused with "choose output=" that FullGrad then rejected with a bare TypeError. The map
    of output "b" is FullGrad's map of the model built from that head alone."""
    model = _two_headed()
    alone = keras.Model(model.input, model.get_layer("b").output)
    images = np.random.default_rng(0).uniform(0, 1, (2, HEIGHT, WIDTH, 3)).astype("float32")
    got = kc.FullGrad(model, output="b")(images, [0, 1])
    np.testing.assert_allclose(got, kc.FullGrad(alone)(images, [0, 1]), atol=1e-6)

    image = keras.Input((HEIGHT, WIDTH, 3), name="image")
    meta = keras.Input((2,), name="meta")
    pooled = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, padding="same")(image))
    two_inputs = keras.Model([image, meta], layers.Dense(3)(layers.Concatenate()([pooled, meta])))
    with pytest.raises(ValueError, match="FullGrad explains single-input image models"):
        kc.FullGrad(two_inputs, input="image")


class _ConstantColumns(layers.Layer):
    """Appends fixed columns (one metadata row held as a constant) to every row."""

    def __init__(self, values, **kwargs):
        super().__init__(**kwargs)
        self.values = np.asarray(values, "float32")[np.newaxis]

    def call(self, rows):
        fixed = ops.tile(ops.convert_to_tensor(self.values), [ops.shape(rows)[0], 1])
        return ops.concatenate([rows, fixed], axis=1)


def test_road_takes_output_and_input_like_the_other_metrics():
    """`road` lacked `output=`/`input=` (deletion and the others have them). Only the image is
    imputed: each image scores what it scores on the image-only model with its metadata
    built in as a constant; output "b" scores what the model of that head alone scores."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (2, HEIGHT, WIDTH, 3)).astype("float32")
    maps = rng.uniform(0, 1, (2, HEIGHT, WIDTH)).astype("float32")
    options = {"percentiles": (20, 60)}

    model = _two_headed()
    alone = keras.Model(model.input, model.get_layer("b").output)
    np.testing.assert_allclose(
        kc.metrics.road(model, images, maps, [0, 1], output="b", **options).per_image,
        kc.metrics.road(alone, images, maps, [0, 1], **options).per_image,
    )

    image = keras.Input((HEIGHT, WIDTH, 3), name="image")
    meta = keras.Input((2,), name="meta")
    conv = layers.Conv2D(4, 3, padding="same", activation="relu")
    head = layers.Dense(3, activation="softmax")
    pooled = layers.GlobalAveragePooling2D()(conv(image))
    two_inputs = keras.Model([image, meta], head(layers.Concatenate()([pooled, meta])))
    metadata = rng.normal(0, 3, (2, 2)).astype("float32")
    got = kc.metrics.road(
        two_inputs, {"image": images, "meta": metadata}, maps, [0, 2], input="image", **options
    ).per_image
    for index, target in enumerate([0, 2]):
        alone_input = keras.Input((HEIGHT, WIDTH, 3))
        pooled = layers.GlobalAveragePooling2D()(conv(alone_input))
        built_in = keras.Model(alone_input, head(_ConstantColumns(metadata[index])(pooled)))
        expected = kc.metrics.road(
            built_in, images[index : index + 1], maps[index : index + 1], [target], **options
        ).per_image
        np.testing.assert_allclose(got[index], expected[0], atol=1e-6)


def test_explain_dataset_refuses_a_model_with_several_inputs_by_name():
    """It was told to pass `input=` (which explain_dataset does not take), or, with
    `method_options`, failed reading the dataset's dict keys as images."""
    image = keras.Input((HEIGHT, WIDTH, 3), name="image")
    meta = keras.Input((2,), name="meta")
    pooled = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, padding="same")(image))
    model = keras.Model([image, meta], layers.Dense(3)(layers.Concatenate()([pooled, meta])))
    batch = {"image": np.zeros((2, HEIGHT, WIDTH, 3), "float32"), "meta": np.zeros((2, 2))}
    for options in (None, {"gradcam": {"input": "image"}}):
        with pytest.raises(ValueError, match=r"reads one image input.*'image'.*'meta'"):
            list(kc.explain_dataset("gradcam", [batch], model, method_options=options))
    with pytest.raises(ValueError, match=r"reads one image input"):
        list(kc.explain_dataset([kc.GradCAM(model, input="image")], [batch]))


def test_sanity_check_on_a_model_with_several_outputs():
    """`model_parameter_randomisation` read the classes from `model.predict` of every output
    and failed inside NumPy; it now explains the output of `method_options["output"]` (its
    first step, the output's own Dense shuffled, matches the model of that head alone) and
    refuses a missing one with the list of outputs."""
    model = _two_headed()
    alone = keras.Model(model.input, model.get_layer("b").output)
    images = np.random.default_rng(0).uniform(0, 1, (3, HEIGHT, WIDTH, 3)).astype("float32")
    got = kc.sanity.model_parameter_randomisation(
        model, images, "gradcam", method_options={"output": "b"}
    )
    expected = kc.sanity.model_parameter_randomisation(alone, images, "gradcam")
    assert got.layers[0] == expected.layers[0] == "b"
    np.testing.assert_allclose(got.spearman[0], expected.spearman[0], atol=1e-6)
    with pytest.raises(ValueError, match=r"2 outputs .*'a'.*'b'.*output="):
        kc.sanity.model_parameter_randomisation(model, images, "gradcam")


def test_cli_explain_refuses_an_image_file_for_a_signal_model(tmp_path, capsys):
    """An image file given to a Conv1D model stopped with "not enough values to unpack"; the
    one stderr line now names the model's input and the .npy way in."""
    import cv2

    from keras_cam import cli

    _signal_model().save(tmp_path / "signal.keras")
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((30, 40, 3), np.uint8))
    status = cli.main(["explain", str(tmp_path / "signal.keras"), str(tmp_path / "photo.png")])
    assert status == 1
    error = capsys.readouterr().err
    assert "is an image file, but the model takes signals of shape (30, 2)" in error
    assert ".npy" in error and error.count("\n") == 1


def _relu_net(relu) -> keras.Model:
    """conv -> ReLU (spelled by `relu`, or fused when None) -> conv -> ReLU -> GAP -> Dense."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = inputs
    for units, name in ((6, "c1"), (5, "c2")):
        x = layers.Conv2D(units, 3, padding="same", name=name,
                          activation="relu" if relu is None else None)(x)
        x = x if relu is None else relu(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x)))


def _guided_reference(model: keras.Model, images: np.ndarray, classes: list[int]) -> np.ndarray:
    """Guided Backprop by hand: the network re-run with each ReLU's gradient replaced by
    [z > 0] * ReLU(upstream); max over channels of |d score / d x|, min-max per map."""

    @tf.custom_gradient
    def guided_relu(z):
        return tf.nn.relu(z), lambda upstream: tf.cast(z > 0, z.dtype) * tf.nn.relu(upstream)

    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x
        for name in ("c1", "c2"):
            conv = model.get_layer(name)
            y = guided_relu(tf.nn.bias_add(tf.nn.conv2d(y, conv.kernel, 1, "SAME"), conv.bias))
        logits = model.get_layer("head")(tf.reduce_mean(y, axis=(1, 2)))
        score = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
    saliency = tf.reduce_max(tf.abs(tape.gradient(score, x)), axis=-1).numpy()
    low = saliency.min(axis=(1, 2), keepdims=True)
    return (saliency - low) / (saliency.max(axis=(1, 2), keepdims=True) - low)


@pytest.mark.parametrize("spelling", ["ops", "lambda"])
def test_guided_backprop_guides_relu_spelled_as_an_op_or_a_lambda(spelling):
    """`keras.ops.relu(x)` in a Functional model and `Lambda(tf.nn.relu)` were not seen as
    ReLUs: the map was the plain input gradient (with a warning only when no ReLU at all was
    found, silently when the model mixed spellings)."""
    relu = (lambda t: keras.ops.relu(t)) if spelling == "ops" else layers.Lambda(tf.nn.relu)
    model = _relu_net(relu)
    images = np.random.default_rng(0).normal(size=(2, HEIGHT, WIDTH, 3)).astype("float32")
    expected = _guided_reference(model, images, [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = kc.GuidedBackprop(model)(images, [0, 1])
    np.testing.assert_allclose(got, expected, atol=1e-5)
