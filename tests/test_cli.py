"""Tests of the `keras-cam` command line: each verb on small saved models, and its errors.

Most tests call `main([...])` in-process (capsys reads its output); two run the installed
entry point in a subprocess, where TensorFlow's native start-up log lines are filtered out of
stderr before counting the error lines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
from tiny_models import gap_model, tta_gradcam_reference, tta_model

from keras_cam import cli, datasets, io, metrics, visualize
from keras_cam.methods import METHODS

SIZE = 32
CLASSES = 4
# What TensorFlow's C++ runtime prints on stderr at import, before Python runs any of our code.
_TF_NATIVE_LOG = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl|To enable the following instructions)"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Saved models and images: a GAP model, a Flatten-head model, a Lambda model, PNGs."""
    folder = tmp_path_factory.mktemp("cli")
    keras.backend.clear_session()  # fresh layer-name counters: "conv2d", whatever ran before
    keras.utils.set_random_seed(0)
    gap_model(size=SIZE, classes=CLASSES).save(folder / "gap.keras")

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="only_conv")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs, name="flat_head").save(folder / "flat.keras")

    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Lambda(lambda t: 2.0 * t)(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs, name="with_lambda").save(folder / "lambda.keras")

    rng = np.random.default_rng(0)
    images = folder / "images"
    images.mkdir()
    for name, shape in (("a.png", (40, 50, 3)), ("b.jpg", (SIZE, SIZE, 3))):
        assert cv2.imwrite(str(images / name), rng.integers(0, 256, shape, dtype=np.uint8))
    (folder / "not_an_image.png").write_text("plain text")
    (folder / "not_a_model.keras").write_text("plain text")
    (folder / "model.txt").write_text("plain text")
    return folder


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line and not _TF_NATIVE_LOG.match(line)]


def _read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------- explain
def test_explain_writes_one_overlay_per_image_and_method(files, tmp_path, capsys):
    out = tmp_path / "out"
    images = [files / "images" / "a.png", files / "images" / "b.jpg"]
    status = cli.main([
        "explain", str(files / "gap.keras"), *map(str, images),
        "--method", "gradcam,gradcam++", "--method", "cam", "--out", str(out), "--verbose", "0",
    ])
    assert status == 0
    written = sorted(path.name for path in out.iterdir())
    assert len(written) == 6
    for stem in ("a", "b"):
        for method in ("gradcam", "gradcampp", "cam"):
            [name] = [n for n in written if re.fullmatch(rf"{stem}_{method}_class\d\.png", n)]
            own_size = (40, 50, 3) if stem == "a" else (SIZE, SIZE, 3)
            assert _read_rgb(out / name).shape == own_size  # the image's own size, not the model's
    printed = capsys.readouterr().out
    assert printed.count("top classes") == 2
    assert str(images[0]) in printed


def test_explain_top_k_explains_the_k_most_probable_classes(files, tmp_path, capsys):
    model = keras.models.load_model(files / "gap.keras")
    pixels = cv2.cvtColor(cv2.imread(str(files / "images" / "a.png")), cv2.COLOR_BGR2RGB)
    resized = cv2.resize(pixels, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    probabilities = model.predict(resized[None].astype(np.float32) / 255.0, verbose=0)[0]
    expected = set(np.argsort(-probabilities)[:2].tolist())

    status = cli.main([
        "explain", str(files / "gap.keras"), str(files / "images" / "a.png"), "--top", "2",
        "--out", str(tmp_path),
    ])
    assert status == 0
    classes = {int(re.search(r"class(\d)", p.name).group(1)) for p in tmp_path.glob("a_*.png")}
    assert classes == expected
    assert len(list(tmp_path.glob("a_gradcampp_class*.png"))) == 2  # the default method


def test_explain_overlays_the_original_rgb_image_not_the_preprocessed_one(files, tmp_path):
    status = cli.main([
        "explain", str(files / "gap.keras"), str(files / "images" / "a.png"), "--class", "1",
        "--preprocess", "vgg16", "--alpha", "0", "--no-caption", "--out", str(tmp_path),
    ])
    assert status == 0
    pixels = cv2.cvtColor(cv2.imread(str(files / "images" / "a.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(_read_rgb(tmp_path / "a_gradcampp_class1.png"), pixels)


def test_images_are_read_as_rgb(tmp_path):
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 2] = 255  # OpenCV writes BGR: this file is pure red
    cv2.imwrite(str(tmp_path / "red.png"), red)
    image, original_size = io.read_image(tmp_path / "red.png", (4, 4, 3))
    assert original_size == (8, 8)
    assert image.shape == (4, 4, 3)
    assert (image[..., 0] == 255).all() and (image[..., 1:] == 0).all()


def test_unsafe_loads_a_lambda_model_with_a_warning(files, tmp_path, capsys):
    status = cli.main([
        "explain", str(files / "lambda.keras"), str(files / "images" / "b.jpg"), "--unsafe",
        "--method", "gradcam", "--out", str(tmp_path),
    ])
    assert status == 0
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith("keras-cam: warning: --unsafe")
    assert len(list(tmp_path.glob("*.png"))) == 1


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["explain", "{missing}/m.keras", "{images}/a.png"], "model file not found"),
        (["explain", "{files}/gap.keras", "{missing}/x.png"], "image file not found"),
        (["explain", "{files}/gap.keras", "{files}/not_an_image.png"], "cannot read image"),
        (["explain", "{files}/not_a_model.keras", "{images}/a.png"], "is not a Keras model"),
        (["explain", "{files}/model.txt", "{images}/a.png"], "is not a Keras model file"),
        (["explain", "{images}/a.png", "{images}/a.png"], "is not a Keras model file"),
        (["explain", "{files}/lambda.keras", "{images}/a.png"], "see --unsafe"),
        (["explain", "{files}/gap.keras", "{images}/a.png", "--method", "nope"],
         "Unknown CAM method 'nope'"),
        (["explain", "{files}/gap.keras", "{images}/a.png", "--layer", "nope"],
         "is not a layer of model"),
        (["explain", "{files}/gap.keras", "{images}/a.png", "--class", "4"],
         "--class 4 is out of range: the model has 4 classes"),
        (["explain", "{files}/gap.keras", "{images}/a.png", "--top", "5"],
         "exceeds the model's 4 classes"),
        (["explain", "{files}/flat.keras", "{images}/a.png", "--method", "cam"],
         "retrofit_gap"),
        (["info", "{missing}/m.keras"], "model file not found"),
        (["evaluate", "{files}/gap.keras", "{missing}"], "image folder not found"),
        (["evaluate", "{files}/gap.keras"], "give MODEL and IMAGES_DIR, or --builtin"),
        (["evaluate", "{files}/gap.keras", "{images}", "--metrics", "box_iou"],
         "--metrics box_iou compare the maps with ground-truth boxes: give --labels FILE whose "
         "rows are FILE,LABEL,X0,Y0,X1,Y1"),
        (["evaluate", "{files}/gap.keras", "{images}", "--labels", "{missing}/l.csv"],
         "labels file not found"),
        # One folder alone is streamed (explain_dataset); among image files it is a mistake.
        (["explain", "{files}/gap.keras", "{images}", "{images}"],
         "is a folder, not an image file: give the image files in it"),
        (["explain", "{files}/gap.keras", "{images}/a.png", "--class-names", "{missing}"],
         "--class-names: class names '"),
        (["explain", "{files}/gap.keras", "{images}/a.png", "--method", "cam", "--layer",
          "conv2d"], "received --layer conv2d. Pass no --layer, or use --method gradcam"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_a_nonzero_status(
    files, tmp_path, capsys, arguments, message
):
    paths = {"files": files, "images": files / "images", "missing": tmp_path / "missing"}
    # Under the test's folder: a case that wrongly succeeds must not write into the cwd.
    out = ["--out", str(tmp_path / "out")] if arguments[0] == "explain" else []
    status = cli.main([argument.format(**paths) for argument in arguments] + out)
    captured = capsys.readouterr()
    assert status == 1
    [line] = captured.err.splitlines()
    assert line.startswith("keras-cam: error: ")
    assert message in line
    assert "Traceback" not in captured.err + captured.out


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["explain"],
        ["explain", "m.keras", "a.png", "--top", "0"],
        ["explain", "m.keras", "a.png", "--class", "1", "--top", "2"],
        ["explain", "m.keras", "a.png", "--alpha", "1.5"],
        ["explain", "m.keras", "a.png", "--colormap", "nope"],
        ["explain", "m.keras", "a.png", "--preprocess", "vgg99"],
        ["nope"],
    ],
)
def test_malformed_command_lines_are_one_line_with_the_bad_input_status(capsys, arguments):
    assert cli.main(arguments) == cli.EXIT_BAD_INPUT == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "error:" in line and "--help" in line


@pytest.mark.parametrize("verb", ["demo", "explain", "info", "evaluate"])
def test_every_verb_has_help(capsys, verb):
    assert cli.main([verb, "--help"]) == 0
    assert f"usage: keras-cam {verb}" in capsys.readouterr().out


# -------------------------------------------------------------------------------- info
def test_info_lists_the_layers_the_automatic_choice_and_the_head(files, capsys):
    assert cli.main(["info", str(files / "gap.keras")]) == 0
    printed = capsys.readouterr().out
    assert "input shape  (32, 32, 3)" in printed
    assert "classes      4 (softmax output)" in printed
    assert "CAM applies" in printed
    layers = printed.split("--layer NAME")[1].splitlines()[1:]
    # The first conv's name is Keras' automatic one (conv2d, conv2d_1, ...: it depends on how
    # many layers the process built before), so it is read from the saved model.
    first_conv = keras.models.load_model(files / "gap.keras").layers[1].name
    assert [line.split()[0] for line in layers] == [first_conv, "last_conv"]
    assert layers[-1].endswith("<- automatic choice")
    assert "(None, 32, 32, 8)" in layers[-1]


def test_info_says_when_cam_does_not_apply(files, capsys):
    assert cli.main(["info", str(files / "flat.keras")]) == 0
    printed = capsys.readouterr().out
    assert "CAM does not apply" in printed
    assert re.search(r"only_conv\s+\(None, 30, 30, 4\)\s+<- automatic choice", printed)


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_a_folder_with_labels_and_boxes(files, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("# file,label,x0,y0,x1,y1\na.png,1,0,0,25,20\nb.jpg,2,8,8,24,24\n")
    table = tmp_path / "table.json"
    status = cli.main([
        "evaluate", str(files / "gap.keras"), str(files / "images"), "--labels", str(labels),
        "--methods", "gradcam,cam", "--steps", "4", "--json", str(table), "--verbose", "0",
    ])
    assert status == 0
    result = json.loads(table.read_text())
    assert result["num_images"] == 2
    assert [row["method"] for row in result["rows"]] == ["gradcam", "cam"]
    assert {"box_iou", "pointing_game", "deletion"} <= set(result["metrics"])
    assert "| Grad-CAM |" in capsys.readouterr().out


def test_evaluate_chooses_the_call_of_a_tta_model(tmp_path, capsys):
    model = tta_model()
    model.save(tmp_path / "tta.keras")
    folder = tmp_path / "images"
    folder.mkdir()
    rgb = np.random.default_rng(2).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    for index, pixels in enumerate(rgb):
        assert cv2.imwrite(str(folder / f"{index}.png"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    arguments = ["evaluate", str(tmp_path / "tta.keras"), str(folder), "--methods", "gradcam",
                 "--metrics", "average_drop", "--verbose", "0"]
    assert cli.main(arguments) == 1
    refusal = capsys.readouterr().err
    assert "with --layer-call (an index from 0 to 1)" in refusal and "layer_call" not in refusal
    assert cli.main([*arguments, "--layer-call", "1"]) == 0
    # Call 1 is the branch on the image (the refusal lists the calls): its map, by hand.
    images = rgb / np.float32(255)  # the default preprocessing, scale01
    classes = np.argmax(model.predict(images, verbose=0), axis=-1)
    expected, other = (
        metrics.average_drop(
            model, images, tta_gradcam_reference(model, images, classes, flipped), classes
        ).mean
        for flipped in (False, True)
    )
    assert f"{expected:.1f}" != f"{other:.1f}"  # the table tells the two calls apart
    assert f"| Grad-CAM | {expected:.1f} |" in capsys.readouterr().out


def test_boxes_are_scaled_to_the_model_input():
    assert io.scale_box((0, 0, 25, 20), (40, 50), (32, 32), "a.png") == (0, 0, 16, 16)
    with pytest.raises(ValueError, match="is not inside the 50x40 image"):
        io.scale_box((0, 0, 60, 20), (40, 50), (32, 32), "a.png")


def test_evaluate_builtin_with_a_saved_model(files, tmp_path, capsys):
    table = tmp_path / "table.json"
    status = cli.main([
        "evaluate", str(files / "gap.keras"), "--builtin", "--n", "4", "--methods", "gradcam",
        "--metrics", "deletion,box_iou", "--steps", "2", "--json", str(table), "--verbose", "0",
    ])
    assert status == 0
    result = json.loads(table.read_text())
    assert result["num_images"] == 4
    assert list(result["metrics"]) == ["deletion", "box_iou"]


def test_evaluate_builtin_trains_the_demo_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no demo_output/model.keras here
    status = cli.main([
        "evaluate", "--builtin", "--epochs", "1", "--n-train", "32", "--n", "4",
        "--methods", "gradcam", "--metrics", "pointing_game",
    ])
    assert status == 0
    printed = capsys.readouterr().out
    assert "No MODEL and no demo_output/model.keras: training the demo CNN" in printed
    assert "Model: the demo CNN trained now; accuracy" in printed
    assert "| Grad-CAM |" in printed


# --------------------------------------------------------------------------- benchmark
def test_there_is_no_benchmark_verb_the_benchmarks_stay_in_the_source_tree(capsys):
    # `make bench` runs benchmarks/speed.py; the installed package does not ship it.
    assert cli.main(["benchmark", "--quick"]) == cli.EXIT_BAD_INPUT
    assert "invalid choice: 'benchmark'" in capsys.readouterr().err


# -------------------------------------------------------------------- the entry point
def _entry_point() -> list[str]:
    """The installed `keras-cam` script next to this interpreter, else `python -m keras_cam`."""
    script = shutil.which("keras-cam", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "keras_cam"]


def _run(arguments: list[str]) -> subprocess.CompletedProcess:
    # The code under test, whichever tree or installed copy the venv's entry point points at.
    root = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}
    return subprocess.run(
        arguments, capture_output=True, text=True, env=environment, timeout=300, check=False
    )


def test_installed_entry_point_explains(files, tmp_path):
    done = _run([
        *_entry_point(), "explain", str(files / "gap.keras"), str(files / "images" / "a.png"),
        "--method", "gradcam", "--out", str(tmp_path),
    ])
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("a_gradcam_class*.png"))) == 1


def test_module_entry_point_fails_with_one_line(files):
    done = _run([sys.executable, "-m", "keras_cam", "info", str(files / "not_an_image.png")])
    assert done.returncode == 1
    assert _error_lines(done.stderr) == [
        f"keras-cam: error: {files / 'not_an_image.png'} is not a Keras model file: expected a "
        ".keras file, or a legacy .h5 / .hdf5 file, as written by keras.Model.save."
    ]


# -------------------------------------------------------------------------------- demo
@pytest.mark.slow
def test_demo_writes_gallery_table_model_and_epoch_heatmaps(tmp_path, capsys):
    out = tmp_path / "demo"
    status = cli.main([
        "demo", "--out", str(out), "--epochs", "2", "--n-train", "32", "--n-eval", "4",
        "--n-gallery", "2", "--steps", "2", "--verbose", "0",
    ])
    assert status == 0
    gallery = _read_rgb(out / "gallery.png")
    assert gallery.shape[1] > gallery.shape[0]  # 1 + 8 columns, 2 rows
    table = json.loads((out / "evaluation.json").read_text())
    # Every registered method but those that run many passes per image (--all-methods).
    assert [row["method"] for row in table["rows"]] == [
        name for name, cls in METHODS.items() if not cls.expensive
    ]
    assert all(row["error"] is None for row in table["rows"])
    markdown = (out / "evaluation.md").read_text()
    assert "- images: 4\n" in markdown and "- accuracy on them: " in markdown
    assert "- explained class: each image's label (its true class)" in markdown
    assert "- s/image: seconds per image" in markdown
    assert "(baseline)" in markdown and "recommended" in markdown.lower()
    assert (out / "class_names.txt").read_text().split() == list(datasets.SHAPE_NAMES)
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert list((out / "logs" / "cam").glob("events.out.tfevents.*"))
    assert len(list((out / "samples").glob("sample_*.png"))) == 2
    assert keras.models.load_model(out / "model.keras").output_shape == (None, 4)
    printed = capsys.readouterr().out
    assert str(out / "gallery.png") in printed and "| Score-CAM |" in printed



# ------------------------------------------------- overlays at the image's own size, names
def _redness_model() -> keras.Model:
    """An analytic 24x40 classifier: a 1x1 conv reads `R - G - B` (ReLU), so only red pixels
    are active; class 0's logit is 5 x their mean. Grad-CAM of class 0 is the redness map."""
    inputs = keras.Input((24, 40, 3))
    redness = keras.layers.Conv2D(
        1, 1, activation="relu", name="redness",
        kernel_initializer=keras.initializers.Constant([[[[1.0], [-1.0], [-1.0]]]]),
    )(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(redness)
    outputs = keras.layers.Dense(
        2, activation="softmax", kernel_initializer=keras.initializers.Constant([[5.0, -5.0]]),
    )(pooled)
    return keras.Model(inputs, outputs, name="redness")


# A 400x300 photo (width x height), grey, with a red disk centred at (x, y) = (300, 200).
DISK_CENTRE, DISK_RADIUS = (300, 200), 35


@pytest.fixture
def red_disk(tmp_path):
    _redness_model().save(tmp_path / "redness.keras")
    bgr = np.full((300, 400, 3), 128, np.uint8)
    cv2.circle(bgr, DISK_CENTRE, DISK_RADIUS, (0, 0, 255), thickness=-1)  # BGR red
    cv2.imwrite(str(tmp_path / "photo.png"), bgr)
    return tmp_path


def test_explain_maps_the_heatmap_back_onto_the_original_image(red_disk, capsys):
    out = red_disk / "out"
    status = cli.main([
        "explain", str(red_disk / "redness.keras"), str(red_disk / "photo.png"), "--class", "0",
        "--method", "gradcam", "--alpha", "1", "--no-caption", "--out", str(out), "--verbose", "0",
    ])
    assert status == 0
    overlay = _read_rgb(out / "photo_gradcam_class0.png")
    assert overlay.shape == (300, 400, 3)  # the photo's own size and aspect, not 24x40
    # Read the map back: with --alpha 1 each pixel is a colour of OpenCV's jet table.
    jet = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    codes = (jet.astype(np.int64) << [16, 8, 0]).sum(-1)
    order = np.argsort(codes)
    pixel_codes = (overlay.astype(np.int64) << [16, 8, 0]).sum(-1)
    found = np.clip(np.searchsorted(codes[order], pixel_codes), 0, 255)
    assert (codes[order][found] == pixel_codes).all()
    hot = order[found] >= 128  # the upper half of the map
    rows, cols = np.nonzero(hot)
    assert hot.sum() > 0.5 * np.pi * DISK_RADIUS**2
    assert abs(cols.mean() - DISK_CENTRE[0]) < 8 and abs(rows.mean() - DISK_CENTRE[1]) < 8
    distance = np.hypot(cols - DISK_CENTRE[0], rows - DISK_CENTRE[1])
    assert np.mean(distance < DISK_RADIUS + 20) > 0.95  # on the disk, nowhere else
    assert "stretched from 400x300 to the model's 40x24 (aspect ratio changed)" in (
        capsys.readouterr().out
    )


def test_captions_name_the_class_its_probability_and_the_method(red_disk, monkeypatch, capsys):
    captions = []
    save_overlay = visualize.save_overlay

    def spy(path, image, heatmap, **options):
        captions.append(options["caption"])
        return save_overlay(path, image, heatmap, **options)

    monkeypatch.setattr(visualize, "save_overlay", spy)
    arguments = [
        "explain", str(red_disk / "redness.keras"), str(red_disk / "photo.png"),
        "--method", "gradcam", "--class-names", "red disk,other", "--verbose", "0",
    ]
    assert cli.main([*arguments, "--out", str(red_disk / "captioned")]) == 0
    assert cli.main([*arguments, "--no-caption", "--out", str(red_disk / "plain")]) == 0
    [caption, none] = captions
    assert none is None
    assert re.fullmatch(r"0 red disk 0\.\d{3} - Grad-CAM", caption)
    assert "photo.png: top classes 0 red disk (0." in capsys.readouterr().out
    name = "photo_gradcam_class0_red_disk.png"  # the class name, slugged
    captioned = _read_rgb(red_disk / "captioned" / name)
    plain = _read_rgb(red_disk / "plain" / name)
    assert captioned.shape == plain.shape == (300, 400, 3)
    differs = np.any(captioned != plain, axis=(1, 2))
    assert differs[:10].all() and not differs[40:].any()  # a band along the top, nothing else


def test_every_verb_finds_class_names_next_to_the_model(files, tmp_path, capsys):
    shutil.copy(files / "gap.keras", tmp_path / "model.keras")
    (tmp_path / "class_names.txt").write_text("circle\nsquare\ntriangle\nEgyptian cat\n")
    assert cli.main(["info", str(tmp_path / "model.keras")]) == 0
    assert "class names  0 circle, 1 square, 2 triangle, 3 Egyptian cat\n" in (
        capsys.readouterr().out
    )
    out = tmp_path / "out"
    assert cli.main([
        "explain", str(tmp_path / "model.keras"), str(files / "images" / "b.jpg"), "--class", "3",
        "--method", "gradcam", "--out", str(out), "--verbose", "0",
    ]) == 0
    assert [path.name for path in out.iterdir()] == ["b_gradcam_class3_egyptian_cat.png"]
    (tmp_path / "class_names.txt").write_text("circle\nsquare\n")
    assert cli.main(["info", str(tmp_path / "model.keras")]) == 1
    assert (
        f"{tmp_path / 'class_names.txt'} gives 2 class names, but the model has 4 classes"
    ) in capsys.readouterr().err


def test_a_grayscale_file_is_converted_with_a_notice(files, tmp_path, capsys):
    gray = np.random.default_rng(3).integers(0, 256, (32, 32), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    assert cli.main([
        "explain", str(files / "gap.keras"), str(tmp_path / "gray.png"), "--method", "gradcam",
        "--out", str(tmp_path / "out"), "--verbose", "0",
    ]) == 0
    printed = capsys.readouterr().out
    assert "gray.png: a grayscale image, converted to RGB for the model" in printed
    assert "aspect ratio" not in printed  # 32x32 to 32x32
