"""Models whose input is not float32 (issue 10, kind 3): uint8 pixels followed by `Rescaling`,
other integer dtypes, bool, float16 and bfloat16 inputs. Every method explains them exactly
like the float32-input twin of the same model (same weights), and values such an input cannot
hold are refused."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cam as kc
from keras_cam.methods import METHODS
from tiny_models import gap_cam_reference, rescaling_gap_model

SHAPE = (24, 40, 3)  # non-square: a swapped axis fails
CLASSES = np.array([2, 0, 1])
ANALYTIC = ("cam", "gradcam", "hirescam")  # equal to `gap_cam_reference` on this head
REFERENCE_TOLERANCE = 1e-4  # float32 gradients against a float64 reference


def _twins(dtype: str) -> tuple[keras.Model, keras.Model]:
    """A model with a `dtype` input and its float32-input twin, sharing the same weights."""
    model = rescaling_gap_model(dtype, SHAPE)
    twin = rescaling_gap_model("float32", SHAPE)
    twin.set_weights(model.get_weights())
    return model, twin


def _pixels(high: int = 255) -> np.ndarray:
    return np.random.default_rng(0).integers(0, high + 1, (len(CLASSES), *SHAPE))


INTEGER_DTYPES = ("uint8", "int8", "int32", "uint16")


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_integer_input_maps_equal_the_float_twin(dtype, method):
    model, twin = _twins(dtype)
    pixels = _pixels(127 if dtype == "int8" else 255)
    explainer = kc.get_method(method)
    kwargs = {"verbose": 0} if "scorecam" in method else {}
    got = explainer(model, **kwargs)(pixels.astype(dtype), CLASSES)
    expected = explainer(twin, **kwargs)(pixels.astype(np.float32), CLASSES)
    assert got.shape == (len(CLASSES), *SHAPE[:2])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    if method in ANALYTIC:
        reference = gap_cam_reference(twin, pixels.astype(np.float32), CLASSES)
        np.testing.assert_allclose(got, reference, atol=REFERENCE_TOLERANCE)


@pytest.mark.parametrize("given", ["uint8 array", "float32 array", "tensor", "single image"])
def test_uint8_model_takes_images_in_any_integer_valued_form(given):
    model, twin = _twins("uint8")
    pixels = _pixels()
    reference = gap_cam_reference(twin, pixels.astype(np.float32), CLASSES)
    cam = kc.GradCAM(model)
    if given == "single image":
        reference = gap_cam_reference(twin, pixels[1:2].astype(np.float32), np.array([0]))[0]
        got = cam(pixels[1].astype(np.uint8), 0)
        np.testing.assert_allclose(got, reference, atol=REFERENCE_TOLERANCE)
        return
    images = {
        "uint8 array": pixels.astype(np.uint8),
        "float32 array": pixels.astype(np.float32),
        "tensor": tf.constant(pixels, tf.uint8),
    }[given]
    np.testing.assert_allclose(cam(images, CLASSES), reference, atol=REFERENCE_TOLERANCE)


def test_bool_input_maps_equal_the_float_twin():
    layers = (
        keras.layers.Rescaling(1.0),  # casts the bool mask to float
        keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax", name="classifier"),
    )

    def build(dtype: str) -> keras.Model:
        inputs = x = keras.Input(SHAPE, dtype=dtype)
        for layer in layers:
            x = layer(x)
        return keras.Model(inputs, x)

    model, twin = build("bool"), build("float32")  # the same layers: the same weights
    masks = _pixels() > 127
    for method in ("gradcam", "gradcam++", "scorecam"):
        kwargs = {"verbose": 0} if method == "scorecam" else {}
        got = kc.get_method(method)(model, **kwargs)(masks, CLASSES)
        expected = kc.get_method(method)(twin, **kwargs)(masks.astype(np.float32), CLASSES)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(
        kc.GradCAM(model)(masks, CLASSES),
        gap_cam_reference(model, masks, CLASSES),  # the layers' first call: the bool model
        atol=REFERENCE_TOLERANCE,
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_input_maps_equal_the_float_twin(dtype):
    model, twin = _twins(dtype)
    pixels = _pixels().astype(np.float32)  # integers up to 255 are exact in both dtypes
    for method in ("gradcam", "gradcam++", "scorecam"):
        kwargs = {"verbose": 0} if method == "scorecam" else {}
        got = kc.get_method(method)(model, **kwargs)(pixels, CLASSES)
        expected = kc.get_method(method)(twin, **kwargs)(pixels, CLASSES)
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "images", "match"),
    [
        ("uint8", _pixels() / 255.0, r"non-integer values in \[0, 1\].*uint8 images.*\[0, 255\]"),
        ("uint8", _pixels() + 100.0, r"values in \[100, 355\].*\[0, 255\]"),
        ("uint8", _pixels() - 1.0, r"values in \[-1, 254\]"),
        ("int8", _pixels(), r"values in \[0, 255\].*int8 images.*\[-128, 127\]"),
        ("int32", _pixels() + 0.5, "non-integer values"),
    ],
)
def test_values_an_integer_input_cannot_hold_are_refused(dtype, images, match):
    model, _ = _twins(dtype)
    with pytest.raises(ValueError, match=match):
        kc.GradCAM(model)(images.astype(np.float32))
    with pytest.raises(ValueError, match=match):
        kc.metrics.average_drop(model, images.astype(np.float32), np.ones(images.shape[:3]))


def test_metrics_round_the_masked_images_of_an_integer_input_model():
    model, twin = _twins("uint8")
    pixels = _pixels().astype(np.float32)
    maps = np.random.default_rng(1).random(pixels.shape[:3]).astype(np.float32)
    # By hand: Y on the image, O on `round(image * map)`, the nearest image a uint8 input holds.
    y = twin.predict(pixels, verbose=0)[np.arange(3), CLASSES]
    o = twin.predict(np.round(pixels * maps[..., None]), verbose=0)[np.arange(3), CLASSES]
    expected = 100.0 * np.maximum(0.0, y - o) / y
    got = kc.metrics.average_drop(model, pixels.astype(np.uint8), maps, CLASSES)
    np.testing.assert_allclose(got.per_image, expected, rtol=1e-4)
    # Truncation (what the model's own cast would do) gives a different answer here.
    o_truncated = twin.predict(np.floor(pixels * maps[..., None]), verbose=0)[np.arange(3), CLASSES]
    assert not np.allclose(o, o_truncated, rtol=1e-6, atol=0)


def test_evaluate_runs_every_method_on_a_uint8_model():
    model, twin = _twins("uint8")
    pixels = _pixels()
    table = kc.evaluate(model, pixels.astype(np.uint8), CLASSES, metrics="average_drop",
                        methods=("gradcam", "gradcam++", "scorecam"), method_options={})
    assert [row["error"] for row in table.rows] == [None, None, None]
    twin_table = kc.evaluate(twin, pixels.astype(np.float32), CLASSES, metrics="average_drop",
                             methods=("gradcam",))
    assert table.rows[0]["average_drop"] == pytest.approx(
        twin_table.rows[0]["average_drop"], abs=1.0
    )


def test_cli_explain_on_a_uint8_model_needs_no_preprocess_flag(tmp_path, capsys):
    import cv2

    from keras_cam import cli

    model, _ = _twins("uint8")
    model_path = tmp_path / "uint8.keras"
    model.save(model_path)
    image_path = tmp_path / "image.png"
    cv2.imwrite(str(image_path), _pixels()[0].astype(np.uint8)[..., ::-1])
    status = cli.main(["explain", str(model_path), str(image_path), "--method", "gradcam",
                       "--out", str(tmp_path / "out"), "--verbose", "0"])
    captured = capsys.readouterr()
    # Right: the pixels reach the model as it takes them, or a refusal that names the fix
    # before any prediction is printed.
    assert status == 0 or (
        "--preprocess none" in captured.err and "top classes" not in captured.out
    ), captured.out + captured.err


# ------------------------------------------------------------------- the command line
def _save(dtype: str, tmp_path, shape=SHAPE) -> tuple[str, keras.Model]:
    """Saves a `dtype`-input `rescaling_gap_model`; returns its path and its float32 twin."""
    model = rescaling_gap_model(dtype, shape)
    twin = rescaling_gap_model("float32", shape)
    twin.set_weights(model.get_weights())
    path = tmp_path / f"{dtype}.keras"
    model.save(path)
    return str(path), twin


def _write_png(path, rgb: np.ndarray) -> str:
    import cv2

    assert cv2.imwrite(str(path), rgb.astype(np.uint8)[..., ::-1])
    return str(path)


def _average_drop_by_hand(twin: keras.Model, pixels: np.ndarray, classes: np.ndarray) -> float:
    """Average drop (%) of the GAP reference maps: O on `round(pixels * map)`, Y on `pixels`."""
    maps = gap_cam_reference(twin, pixels, classes)
    rows = np.arange(len(classes))
    y = twin.predict(pixels, verbose=0)[rows, classes]
    o = twin.predict(np.round(pixels * maps[..., None]), verbose=0)[rows, classes]
    return float(np.mean(100.0 * np.maximum(0.0, y - o) / y))


def test_cli_explain_gives_a_uint8_model_its_resized_raw_pixels(tmp_path, capsys):
    import cv2

    from keras_cam import cli

    model_path, twin = _save("uint8", tmp_path)
    # Twice the model's size: the CLI resizes it (OpenCV area interpolation, rounded to uint8).
    large = np.random.default_rng(3).integers(0, 256, (2 * SHAPE[0], 2 * SHAPE[1], 3))
    image_path = _write_png(tmp_path / "large.png", large)
    status = cli.main(["explain", model_path, image_path, "--method", "gradcam", "--alpha", "1",
                       "--no-caption", "--out", str(tmp_path / "out"), "--verbose", "0"])
    assert status == 0
    pixels = cv2.resize(large.astype(np.uint8), SHAPE[1::-1], interpolation=cv2.INTER_AREA)
    pixels = pixels[np.newaxis].astype(np.float32)  # 0-255: the model rescales them itself
    probabilities = twin.predict(pixels, verbose=0)[0]
    top = int(np.argmax(probabilities))
    printed = capsys.readouterr().out
    assert f"top classes {top} ({probabilities[top]:.3f})" in printed
    heatmap = gap_cam_reference(twin, pixels, np.array([top]))[0]
    written = cv2.imread(str(tmp_path / "out" / f"large_gradcam_class{top}.png"))
    # The overlay is at the file's own size: the map stretched back (bilinear) onto it.
    stretched = cv2.resize(heatmap, (2 * SHAPE[1], 2 * SHAPE[0]), interpolation=cv2.INTER_LINEAR)
    expected = cv2.applyColorMap(np.rint(stretched * 255).astype(np.uint8), cv2.COLORMAP_JET)
    assert written.shape == (2 * SHAPE[0], 2 * SHAPE[1], 3)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 8


def test_cli_evaluate_on_a_uint8_model_needs_no_preprocess_flag(tmp_path, capsys):
    import json

    from keras_cam import cli

    model_path, twin = _save("uint8", tmp_path)
    pixels = _pixels()
    folder = tmp_path / "images"
    folder.mkdir()
    for index, image in enumerate(pixels):
        _write_png(folder / f"{index}.png", image)
    (tmp_path / "labels.csv").write_text(
        "".join(f"{index}.png,{label}\n" for index, label in enumerate(CLASSES))
    )
    table = tmp_path / "table.json"
    labels = str(tmp_path / "labels.csv")
    status = cli.main(["evaluate", model_path, str(folder), "--labels", labels, "--methods",
                       "gradcam", "--metrics", "average_drop", "--json", str(table),
                       "--verbose", "0"])
    assert status == 0, capsys.readouterr().err
    [row] = json.loads(table.read_text())["rows"]
    expected = _average_drop_by_hand(twin, pixels.astype(np.float32), CLASSES)
    assert expected > 1.0  # a drop that scaled pixels (all cast to 0) would not give
    assert row["average_drop"] == pytest.approx(expected, abs=0.5)


def test_cli_evaluate_builtin_gives_a_uint8_model_the_shapes_as_8_bit_pixels(tmp_path):
    import json

    from keras_cam import cli, datasets

    model_path, twin = _save("uint8", tmp_path, (32, 32, 3))
    table = tmp_path / "table.json"
    status = cli.main(["evaluate", model_path, "--builtin", "--n", "3", "--methods", "gradcam",
                       "--metrics", "average_drop", "--json", str(table), "--verbose", "0"])
    assert status == 0
    images, labels, _ = datasets.shapes(3, 32, seed=1, num_classes=3)  # the CLI's seed + 1
    pixels = np.round(images * 255.0).astype(np.float32)
    [row] = json.loads(table.read_text())["rows"]
    assert row["average_drop"] == pytest.approx(
        _average_drop_by_hand(twin, pixels, labels), abs=0.5
    )


@pytest.mark.parametrize(
    ("verb", "preprocess"),
    [("explain", "scale01"), ("explain", "vgg16"), ("explain", "mobilenet_v2"),
     ("evaluate", "scale01"), ("evaluate", "resnet50"), ("builtin", "scale01")],
)
def test_cli_refuses_a_preprocess_that_changes_an_integer_models_pixels(
    verb, preprocess, tmp_path, capsys
):
    from keras_cam import cli

    model_path, _ = _save("uint8", tmp_path, (32, 32, 3))
    image_path = _write_png(tmp_path / "image.png", _pixels()[0])
    out = tmp_path / "out"
    arguments = {
        "explain": ["explain", model_path, image_path, "--out", str(out)],
        "evaluate": ["evaluate", model_path, str(tmp_path), "--json", str(out / "t.json")],
        "builtin": ["evaluate", model_path, "--builtin", "--n", "2", "--json", str(out / "t.json")],
    }[verb]
    status = cli.main([*arguments, "--preprocess", preprocess, "--verbose", "0"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""  # nothing predicted, nothing printed
    assert not out.exists()
    [line] = captured.err.strip().splitlines()
    assert re.search(
        rf"^keras-cam: error: --preprocess {preprocess} changes the pixels, but model "
        r"'rescaling_gap_uint8' takes uint8 images.*Pass --preprocess none", line
    )


@pytest.mark.parametrize(("dtype", "match"), [("int8", r"\[-128, 127\]"), ("bool", r"\[0, 1\]")])
def test_cli_refuses_every_image_an_integer_model_cannot_hold_before_any_prediction(
    dtype, match, tmp_path, capsys
):
    from keras_cam import cli

    model_path, _ = _save(dtype, tmp_path)
    fits = _write_png(tmp_path / "dark.png", np.zeros(SHAPE))  # 0: every dtype holds it
    too_large = _write_png(tmp_path / "bright.png", _pixels()[0])
    out = tmp_path / "out"
    status = cli.main(["explain", model_path, fits, too_large, "--method", "gradcam",
                       "--out", str(out), "--verbose", "0"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == "" and not out.exists()  # not even the image it could take
    [line] = captured.err.strip().splitlines()
    assert re.search(rf"error: {re.escape(too_large)}: .*{dtype} images.*{match}", line)
    assert "--preprocess none" in line


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [*((dtype, "none") for dtype in (*INTEGER_DTYPES, "bool")),
     *((dtype, "scale01") for dtype in ("float32", "float16", "bfloat16"))],
)
def test_default_preprocessing_keeps_the_raw_pixels_of_an_integer_input(dtype, expected):
    from keras_cam import io

    assert io.default_preprocessing(rescaling_gap_model(dtype, SHAPE)) == expected
