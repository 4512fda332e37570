"""Explainers serve their consumers: the CLI, the callback and `evaluate` trace the user's model
once per method (through `keras_cam.surgery.build_cam_model`) and build no sub-model of their
own; `--layer` reaches every verb; a method registered once appears in every tool; the library
IO the CLI uses (`keras_cam.io`) works on its own. (Module boundaries: tests/test_architecture.py
on main, from the surgery part of issue 11.)
"""

from __future__ import annotations

import json
import pathlib
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from references import HEIGHT, WIDTH, corner_images, corner_model, upsample_and_normalize

import keras_cam as kc
from keras_cam import cli, io, surgery
from keras_cam.methods import BaseCAM, method_name, resolve_methods


# ------------------------------------------------------------------------------ helpers
@pytest.fixture
def traces(monkeypatch):
    """Counts the calls of `surgery.build_cam_model`, wherever a keras_cam module holds it."""
    original = surgery.build_cam_model
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0].name)
        return original(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("keras_cam"):
            for attribute, value in list(vars(module).items()):
                if value is original:
                    monkeypatch.setattr(module, attribute, counting)
    return calls


def _save_png(path: pathlib.Path, rgb: np.ndarray) -> pathlib.Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _jet(heatmap: np.ndarray) -> np.ndarray:
    """What `--alpha 1` writes: the jet colouring of the map, BGR as OpenCV reads the file."""
    return cv2.applyColorMap(np.rint(heatmap * 255).astype(np.uint8), cv2.COLORMAP_JET)


@pytest.fixture(scope="module")
def corner(tmp_path_factory):
    """A 24x40 GAP model saved as .keras, and three of its images saved as PNG."""
    root = tmp_path_factory.mktemp("consumers")
    model = corner_model(positive=True)
    model.save(root / "model.keras")
    pixels = np.rint(corner_images(3, seed=15) * 255).astype(np.uint8)
    (root / "images").mkdir()
    for index, image in enumerate(pixels):
        _save_png(root / "images" / f"{index}.png", image)
    return {"root": root, "model": model, "images": pixels.astype(np.float32) / 255.0}


# ------------------------------------------------------------- one trace per method
def test_explain_traces_the_model_once_per_method(corner, tmp_path, traces):
    status = cli.main([
        "explain", str(corner["root"] / "model.keras"), str(corner["root"] / "images" / "0.png"),
        str(corner["root"] / "images" / "1.png"), "--method", "gradcam,gradcam++,cam",
        "--top", "2", "--out", str(tmp_path), "--verbose", "0",
    ])
    assert status == 0
    assert len(traces) == 3  # not 1 + 3: the explainers also predict the top classes
    assert len(list(tmp_path.glob("*.png"))) == 2 * 3 * 2


def test_the_callback_traces_the_model_once_per_method_across_fits(corner, tmp_path, traces):
    model = corner_model(positive=False, seed=3)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    images, labels = corner["images"], np.array([0, 1, 2])
    heatmaps = kc.HeatmapCallback(images, methods=("gradcam", "scorecam"), out_dir=tmp_path)
    model.fit(images, labels, epochs=2, verbose=0, callbacks=[heatmaps])
    model.fit(images, labels, epochs=1, verbose=0, callbacks=[heatmaps])
    assert traces == [model.name, model.name]
    # The second fit numbers its epoch on: epoch_003, not a second epoch_001.
    assert sorted(p.name for p in tmp_path.glob("epoch_*.png")) == [
        "epoch_001.png", "epoch_002.png", "epoch_003.png"
    ]


def test_evaluate_traces_the_model_once_per_method(corner, traces):
    model = corner["model"]
    kc.evaluate(model, corner["images"], np.array([0, 0, 0]), methods=("gradcam", "xgradcam"),
                metrics="average_drop", baselines=False)  # RandomCAM, a baseline, traces too
    assert traces == [model.name, model.name]


def test_the_explainers_predict_what_the_model_outputs(corner):
    model, images = corner["model"], corner["images"]
    cam = kc.GradCAM(model)
    np.testing.assert_allclose(cam.predict(images), np.asarray(model(images)), atol=1e-6)
    assert cam.predict(images[0]).shape == (3,)
    assert cam.input_shape == cam.image_shape == (HEIGHT, WIDTH, 3)
    assert cam.data_format == "channels_last"
    with pytest.raises(ValueError, match="the model expects 40"):
        cam.predict(images[:, :, :24])


def test_predict_reads_a_single_sigmoid_unit_as_two_classes():
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, x)
    images = corner_images(2, seed=4)
    positive = np.asarray(model(images))[:, 0]
    expected = np.stack([1.0 - positive, positive], axis=1)
    np.testing.assert_allclose(kc.GradCAM(model).predict(images), expected, atol=1e-6)


def test_a_channels_first_model_reports_its_layout():
    inputs = keras.Input((3, HEIGHT, WIDTH))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    cam = kc.GradCAM(model)
    assert cam.input_shape == (3, HEIGHT, WIDTH)
    assert cam.image_shape == (HEIGHT, WIDTH, 3)
    assert cam.data_format == "channels_first"
    assert io.input_layout(model) == ((HEIGHT, WIDTH, 3), "channels_first")


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_every_method_takes_verbose(corner, name):
    cam = kc.get_method(name)(corner["model"], verbose=0)
    assert cam.verbose == 0
    with pytest.raises(ValueError, match=r"`verbose` must be 0, 1 or 2; received 5"):
        kc.get_method(name)(corner["model"], verbose=5)


# ------------------------------------------------------- --layer when automatic fails
@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory):
    """A model with no convolution: a per-pixel Dense "pixels" (24x40x4), Flatten, Dense.

    Its Grad-CAM at "pixels" has a closed form: the gradient of logit c w.r.t. the features
    is the classifier's column c, so the weights are its mean over positions per channel.
    """
    root = tmp_path_factory.mktemp("pixels")
    keras.utils.set_random_seed(5)
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Dense(4, activation="relu", name="pixels")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="classifier")(x))
    model.save(root / "pixels.keras")
    pixels = np.random.default_rng(6).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    _save_png(root / "image.png", pixels)
    return {"root": root, "model": model, "image": pixels.astype(np.float32) / 255.0}


def _pixel_gradcam(model: keras.Model, image: np.ndarray, cls: int) -> np.ndarray:
    kernel, bias = model.get_layer("pixels").get_weights()
    features = np.maximum(image.astype(np.float64) @ kernel + bias, 0.0)  # (24, 40, 4)
    column = model.get_layer("classifier").get_weights()[0][:, cls].reshape(features.shape)
    weights = column.mean(axis=(0, 1))
    cam = np.maximum((features * weights).sum(axis=-1), 0.0)
    return (cam - cam.min()) / (cam.max() - cam.min())


def test_explain_layer_works_where_the_automatic_choice_fails(pixel_model, tmp_path):
    with pytest.raises(ValueError, match="no convolutional layer with a spatial output"):
        kc.find_conv_layer(pixel_model["model"])
    status = cli.main([
        "explain", str(pixel_model["root"] / "pixels.keras"),
        str(pixel_model["root"] / "image.png"),
        "--layer", "pixels", "--method", "gradcam", "--class", "1", "--alpha", "1",
        "--no-caption",
        "--out", str(tmp_path), "--verbose", "0",
    ])
    assert status == 0
    written = cv2.imread(str(tmp_path / "image_gradcam_class1.png"))
    expected = _jet(_pixel_gradcam(pixel_model["model"], pixel_model["image"], 1))
    assert written.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 8


def test_evaluate_and_info_layer_work_where_the_automatic_choice_fails(
    pixel_model, tmp_path, capsys
):
    model_path = str(pixel_model["root"] / "pixels.keras")
    status = cli.main([
        "evaluate", model_path, str(pixel_model["root"]), "--layer", "pixels",
        "--methods", "gradcam", "--metrics", "average_drop", "--json", str(tmp_path / "t.json"),
        "--verbose", "0",
    ])
    assert status == 0, capsys.readouterr().err
    [row] = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert row["method"] == "gradcam" and row["error"] is None

    assert cli.main(["info", model_path]) == 0
    assert "explained    none: `model` (" in capsys.readouterr().out
    assert cli.main(["info", model_path, "--layer", "pixels"]) == 0
    assert "explained    pixels (--layer)" in capsys.readouterr().out


# ------------------------------------------------------ one class, one registry line
class ActivationSum(BaseCAM):
    """A toy method: every channel weighs 1, so the map is ReLU(sum_k A^k)."""

    requires_gradients = False
    display_name = "Activation sum"

    def compute_weights(self, features, grads, class_idx):
        return tf.ones_like(features[:, 0, 0, :])  # (B, C)


def _activation_sum(model: keras.Model, images: np.ndarray) -> np.ndarray:
    features = keras.Model(model.inputs[0], model.get_layer("last_conv").output)(images)
    raw = np.maximum(np.asarray(features, np.float64).sum(axis=-1), 0.0)
    return upsample_and_normalize(raw, images.shape[1:3])


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(kc.METHODS, "activationsum", ActivationSum)


def test_a_registered_method_appears_in_the_cli(toy_registered, corner, tmp_path, capsys):
    assert cli.main(["explain", "--help"]) == 0
    assert "activationsum" in capsys.readouterr().out
    status = cli.main([
        "explain", str(corner["root"] / "model.keras"), str(corner["root"] / "images" / "2.png"),
        "--method", "Activation-Sum", "--class", "0", "--alpha", "1", "--no-caption",
        "--out", str(tmp_path),
        "--verbose", "0",
    ])
    assert status == 0
    written = cv2.imread(str(tmp_path / "2_activationsum_class0.png"))
    expected = _jet(_activation_sum(corner["model"], corner["images"][2:3])[0])
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 8


def test_a_registered_method_appears_in_evaluate(toy_registered, corner):
    table = kc.evaluate(corner["model"], corner["images"], np.array([0, 1, 2]),
                        methods=("activationsum", "gradcam"), metrics="average_drop")
    assert [row["method"] for row in table.rows] == ["activationsum", "gradcam"]
    assert table.rows[0]["display_name"] == "Activation sum"


def test_a_registered_method_appears_in_the_callback(toy_registered, corner, tmp_path):
    model = corner["model"]
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    images = corner["images"]
    heatmaps = kc.HeatmapCallback(images, methods="activationsum", out_dir=tmp_path)
    model.fit(images, np.array([0, 1, 2]), epochs=1, verbose=0, callbacks=[heatmaps])
    np.testing.assert_allclose(
        heatmaps.last_maps["activationsum"], _activation_sum(model, images), atol=1e-5
    )


def test_resolve_methods_names_every_method_one_way():
    class Unregistered(ActivationSum):
        pass

    resolved = resolve_methods(["Grad-CAM++", Unregistered, kc.ScoreCAM])
    assert list(resolved) == ["gradcam++", "Unregistered", "scorecam"]
    assert method_name(Unregistered) == "Unregistered"
    assert resolve_methods("all") == kc.METHODS
    with pytest.raises(ValueError, match=r"`--method` lists 'gradcam' more than once"):
        resolve_methods(["gradcam", "grad_cam"], "--method")
    with pytest.raises(ValueError, match=r"`methods` is empty; name at least one method"):
        resolve_methods([])
    with pytest.raises(TypeError, match=r"`methods` must be a method name"):
        resolve_methods(3)


# ------------------------------------------------------------------------------ keras_cam.io
def test_read_labels_errors_name_the_file_and_the_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("# file,label\na.png,1\n\nb.png,x\n")
    with pytest.raises(ValueError, match=rf"{labels}, line 4: LABEL and the box must be integers"):
        io.read_labels(labels, tmp_path)
    labels.write_text("a.png,1\nb.png,2,3\n")
    with pytest.raises(ValueError, match=rf"{labels}, line 2: expected FILE,LABEL or "):
        io.read_labels(labels, tmp_path)
    labels.write_text("a.png,1,0,0,4,4\nb.png,2\n")
    with pytest.raises(ValueError, match=r"give a box on every row or on none \(1 of 2"):
        io.read_labels(labels, tmp_path)
    labels.write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no images"):
        io.read_labels(labels, tmp_path)
    with pytest.raises(FileNotFoundError, match="labels file not found"):
        io.read_labels(tmp_path / "missing.csv", tmp_path)
    labels.write_text("a.png,1,0,2,4,6\nsub/b.png,2,1,1,3,3\n")
    assert io.read_labels(labels, tmp_path) == [
        (tmp_path / "a.png", 1, (0, 2, 4, 6)), (tmp_path / "sub" / "b.png", 2, (1, 1, 3, 3))
    ]


def test_read_image_folder_resizes_images_and_scales_boxes(tmp_path):
    # 48x40 files, each row twice: resized to 24x40 they give the images back exactly.
    images = np.rint(corner_images(2, seed=9) * 255).astype(np.uint8)
    for index, image in enumerate(images):
        _save_png(tmp_path / f"{index}.png", np.repeat(image, 2, axis=0))
    (tmp_path / "labels.csv").write_text("1.png,2,4,6,12,30\n0.png,0,0,0,40,48\n")
    read, labels, boxes = io.read_image_folder(
        tmp_path, (HEIGHT, WIDTH, 3), tmp_path / "labels.csv", "none"
    )
    np.testing.assert_array_equal(read, images[[1, 0]].astype(np.float32))
    np.testing.assert_array_equal(labels, [2, 0])
    np.testing.assert_array_equal(boxes, [(4, 3, 12, 15), (0, 0, 40, 24)])
    scaled, _, _ = io.read_image_folder(tmp_path, (HEIGHT, WIDTH, 3))
    np.testing.assert_allclose(scaled, images.astype(np.float32) / 255.0)
    with pytest.raises(ValueError, match="takes images of any size"):
        io.read_image_folder(tmp_path, (None, None, 3))


def test_load_model_preprocess_and_layout(corner, tmp_path):
    model = io.load_model(corner["root"] / "model.keras")
    np.testing.assert_allclose(model(corner["images"]), corner["model"](corner["images"]))
    with pytest.raises(FileNotFoundError, match="model file not found"):
        io.load_model(tmp_path / "missing.keras")
    (tmp_path / "fake.keras").write_text("text")
    with pytest.raises(ValueError, match="a .keras file is a zip archive"):
        io.load_model(tmp_path / "fake.keras")
    pixels = np.full((1, 2, 3, 3), 255, np.uint8)
    np.testing.assert_array_equal(io.preprocess(pixels, "scale01"), np.ones((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="Unknown preprocessing 'vgg99'"):
        io.preprocess(pixels, "vgg99")
    with pytest.raises(ValueError, match="'vgg16' needs RGB images"):
        io.preprocess(pixels[..., :1], "vgg16")
    batch = np.arange(24, dtype=np.float32).reshape(1, 2, 4, 3)
    assert io.to_data_format(batch, "channels_last") is batch
    channels_first = io.to_data_format(batch, "channels_first")
    np.testing.assert_array_equal(channels_first[0, 2], batch[0, ..., 2])


def test_to_data_format_moves_the_channel_axis_of_one_image_or_a_batch_and_refuses_the_rest():
    """Channel `c` of pixel `(y, x)` lands at `[c, y, x]`, for one image as for a batch; a
    misspelt layout or a wrong rank is refused instead of passing the images through."""
    batch = np.random.default_rng(0).random((2, HEIGHT, WIDTH, 3)).astype(np.float32)
    channels_first = io.to_data_format(batch, "channels_first")
    assert channels_first.shape == (2, 3, HEIGHT, WIDTH)
    for c in range(3):
        np.testing.assert_array_equal(channels_first[:, c], batch[..., c])
    one = io.to_data_format(batch[1], "channels_first")
    assert one.shape == (3, HEIGHT, WIDTH)
    np.testing.assert_array_equal(one, channels_first[1])
    np.testing.assert_array_equal(io.to_data_format(batch[1], "channels_last"), batch[1])
    for layout in ("channels_frst", "NCHW", "channels-first", None):
        with pytest.raises(ValueError, match=r"`data_format` must be one of .*received"):
            io.to_data_format(batch, layout)
    with pytest.raises(ValueError, match=r"one channels-last image \(H, W, C\) or a batch"):
        io.to_data_format(batch[0, 0], "channels_first")


@pytest.mark.parametrize(
    "image_shape", [(3, HEIGHT, WIDTH), (HEIGHT, WIDTH, 4), (HEIGHT, WIDTH)],
    ids=["channels-first input_shape", "4 channels", "no channels"],
)
def test_read_image_refuses_a_shape_that_is_not_height_width_channels(tmp_path, image_shape):
    """`cam.input_shape` of a channels-first model is (C, H, W): the message says to pass
    `image_shape`, instead of claiming the model takes 40-channel images."""
    _save_png(tmp_path / "a.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    match = r"`image_shape` must be \(height, width, channels\) with 1 \(gray\) or 3 \(RGB\)"
    with pytest.raises(ValueError, match=match + r".*not its `input_shape`.*received"):
        io.read_image(tmp_path / "a.png", image_shape)
