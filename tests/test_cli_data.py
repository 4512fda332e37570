"""The CLI's data reaches the numbers: a labels CSV's classes and boxes give the metric values
computed here from those classes and boxes, on a non-square (24x40) model; `.h5` and 1-channel
models and every `--preprocess` choice run; an interrupted run exits with status 130."""

from __future__ import annotations

import json

import cv2
import keras
import numpy as np
import pytest
from references import BLOB, HEIGHT, WIDTH, corner_images, corner_model, reference_maps

import keras_cam as kc
from keras_cam import cli, io, visualize

# The model's class 0 sees the blob; classes 1 and 2 have zero weights (an all-zero map that
# points nowhere). Image 1 is explained for class 2, so its hit depends on reading the label.
LABELS = np.array([0, 2, 0])
# Boxes in the 24x40 model input: the blob (twice), and a wider one around it.
BOXES = np.array([(30, 2, 38, 8), (30, 2, 38, 8), (24, 0, 40, 12)])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A 24x40 model (.keras and .h5), and its images saved at 48x40 with each row twice, so
    the CLI's resize to 24x40 gives the images back exactly (only the height is scaled)."""
    root = tmp_path_factory.mktemp("cli_data")
    model = corner_model(positive=True)
    model.save(root / "model.keras")
    model.save(root / "model.h5")
    pixels = np.rint(corner_images(3, seed=15) * 255).astype(np.uint8)
    (root / "images").mkdir()
    for index, image in enumerate(pixels):
        tall = np.repeat(image, 2, axis=0)  # 48x40
        bgr = cv2.cvtColor(tall, cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(root / "images" / f"{index}.png"), bgr)
    rows = [
        f"{index}.png,{label},{x0},{2 * y0},{x1},{2 * y1}"  # boxes in the 48x40 files' pixels
        for index, (label, (x0, y0, x1, y1)) in enumerate(zip(LABELS, BOXES))
    ]
    (root / "labels.csv").write_text("# file,label,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    return {"root": root, "model": model, "images": pixels.astype(np.float32) / 255.0}


def _hand_metrics(model, images, maps, classes, boxes) -> dict[str, float]:
    """Pointing game and average drop from their definitions; box IoU from the metric."""
    hits = []
    for heatmap, (x0, y0, x1, y1) in zip(maps, boxes):
        row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
        hits.append(x0 <= col < x1 and y0 <= row < y1)
    rows = np.arange(len(images))
    full = np.asarray(model(images), np.float64)[rows, classes]
    masked = np.asarray(model(images * maps[..., None].astype(np.float32)), np.float64)
    drop = 100.0 * np.maximum(0.0, full - masked[rows, classes]) / full
    return {
        "pointing_game": float(np.mean(hits)),
        "average_drop": float(drop.mean()),
        "box_iou": kc.metrics.box_iou(maps, boxes).mean,
    }


def test_labels_csv_classes_and_boxes_reach_the_metric_values(folder, tmp_path):
    model, images = folder["model"], folder["images"]
    assert (np.asarray(model(images)).argmax(axis=1) == 0).all()  # so label 2 matters
    table = tmp_path / "table.json"
    status = cli.main([
        "evaluate", str(folder["root"] / "model.keras"), str(folder["root"] / "images"),
        "--labels", str(folder["root"] / "labels.csv"), "--methods", "gradcam",
        "--metrics", "pointing_game,box_iou,average_drop", "--json", str(table),
        "--verbose", "0",
    ])
    assert status == 0
    [row] = json.loads(table.read_text())["rows"]
    maps = reference_maps("gradcam", model, images, LABELS).astype(np.float32)
    expected = _hand_metrics(model, images, maps, LABELS, BOXES)
    assert expected["pointing_game"] == pytest.approx(2 / 3)  # image 1 misses: class 2
    assert row["pointing_game"] == pytest.approx(expected["pointing_game"])
    assert row["box_iou"] == pytest.approx(expected["box_iou"], abs=1e-3)
    assert row["average_drop"] == pytest.approx(expected["average_drop"], abs=1e-2)


def _overlay_matches_the_reference(path, heatmap, size=(2 * HEIGHT, WIDTH)) -> None:
    """With `--alpha 1` the overlay is the jet colouring of the map stretched back (bilinearly)
    to the file's own size, by default the 48x40 files of `folder`: compare in BGR."""
    written = cv2.imread(str(path))
    assert written.shape == (*size, 3)
    stretched = cv2.resize(heatmap, size[::-1], interpolation=cv2.INTER_LINEAR)
    expected = cv2.applyColorMap(np.rint(stretched * 255).astype(np.uint8), cv2.COLORMAP_JET)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 8


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_explain_writes_the_reference_map_for_keras_and_h5_models(suffix, folder, tmp_path):
    out = tmp_path / "out"
    status = cli.main([
        "explain", str(folder["root"] / f"model{suffix}"), str(folder["root"] / "images" / "0.png"),
        "--method", "gradcam", "--class", "2", "--alpha", "1", "--no-caption", "--out", str(out),
        "--verbose", "0",
    ])
    assert status == 0
    [written] = out.iterdir()
    assert written.name == "0_gradcam_class2.png"
    heatmap = reference_maps("gradcam", folder["model"], folder["images"][:1], np.array([2]))[0]
    _overlay_matches_the_reference(written, heatmap)


@pytest.mark.parametrize("preprocess", ["scale01", "none"])
def test_one_channel_model(preprocess, tmp_path):
    model = corner_model(channels=1, positive=True)
    model.save(tmp_path / "gray.keras")
    gray = np.rint(corner_images(1, channels=1)[0] * 255).astype(np.uint8)
    assert cv2.imwrite(str(tmp_path / "gray.png"), gray[..., 0])
    out = tmp_path / "out"
    status = cli.main([
        "explain", str(tmp_path / "gray.keras"), str(tmp_path / "gray.png"), "--class", "0",
        "--method", "gradcam,scorecam", "--preprocess", preprocess, "--alpha", "1",
        "--no-caption", "--out", str(out), "--verbose", "0",
    ])
    assert status == 0
    image = gray[np.newaxis].astype(np.float32) / (255.0 if preprocess == "scale01" else 1.0)
    for name in ("gradcam", "scorecam"):
        heatmap = reference_maps(name, model, image, np.array([0]))[0]
        _overlay_matches_the_reference(out / f"gray_{name}_class0.png", heatmap, (HEIGHT, WIDTH))
        row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
        assert BLOB[0].start - 2 <= row < BLOB[0].stop + 2
        assert BLOB[1].start - 2 <= col < BLOB[1].stop + 2


@pytest.mark.parametrize("preprocess", sorted(cli.PREPROCESSING))
def test_every_preprocess_choice_feeds_the_model_its_own_input(preprocess, folder, tmp_path):
    out = tmp_path / "out"
    status = cli.main([
        "explain", str(folder["root"] / "model.keras"), str(folder["root"] / "images" / "1.png"),
        "--method", "gradcam", "--class", "1", "--preprocess", preprocess, "--alpha", "1",
        "--no-caption", "--out", str(out), "--verbose", "0",
    ])
    assert status == 0
    pixels = np.rint(folder["images"][1:2] * 255).astype(np.float32)
    if preprocess == "scale01":
        model_input = pixels / 255.0
    elif preprocess == "none":
        model_input = pixels
    else:
        model_input = getattr(keras.applications, preprocess).preprocess_input(pixels.copy())
    heatmap = reference_maps("gradcam", folder["model"], model_input, np.array([1]))[0]
    _overlay_matches_the_reference(out / "1_gradcam_class1.png", heatmap)


def test_an_interrupted_run_exits_with_status_130(folder, tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(visualize, "save_overlay", interrupt)  # the verb imports it when run
    status = cli.main([
        "explain", str(folder["root"] / "model.keras"), str(folder["root"] / "images" / "0.png"),
        "--method", "gradcam", "--out", str(tmp_path / "out"), "--verbose", "0",
    ])
    assert status == 130
    assert capsys.readouterr().err.strip().splitlines() == ["keras-cam: interrupted"]


# ------------------------------------------------------------------------- class names
def test_the_imagenet_class_names_ship_with_the_package_in_keras_order():
    names = kc.imagenet_class_names()
    assert len(names) == 1000
    # Keras' decode_predictions order (imagenet_class_index.json): checked by hand.
    assert (names[0], names[1], names[281], names[285], names[999]) == (
        "tench", "goldfish", "tabby", "Egyptian cat", "toilet tissue"
    )
    assert io.read_class_names("imagenet") == io.read_class_names("ImageNet") == names


def test_class_names_from_a_file_or_a_comma_list(tmp_path):
    (tmp_path / "names.txt").write_text("circle\nsquare \n triangle\n\n")
    assert io.read_class_names(str(tmp_path / "names.txt")) == ("circle", "square", "triangle")
    assert io.read_class_names("cat, dog") == ("cat", "dog")
    written = io.write_class_names(tmp_path / "out" / io.CLASS_NAMES_FILE, ["a b", "c"])
    assert written.read_text() == "a b\nc\n"
    assert io.model_class_names(tmp_path / "out" / "model.keras") == ("a b", "c")
    assert io.model_class_names(tmp_path / "model.keras") is None


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("cat", r"class names 'cat': no such file; give a text file .*, or 'imagenet'"),
        ("cat,,dog", r"class names: 'cat,,dog', name 2 is empty"),
        ("{tmp}/gap.txt", r"gap.txt, line 2 is empty; give one name per class"),
        ("{tmp}/empty.txt", r"empty.txt lists no names"),
    ],
)
def test_unusable_class_names_are_refused_naming_the_place(tmp_path, spec, match):
    (tmp_path / "gap.txt").write_text("a\n\nb\n")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match=match):
        io.read_class_names(spec.format(tmp=tmp_path))


def test_explain_imagenet_names_on_a_1000_class_model(folder, tmp_path, capsys):
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    dense = keras.layers.Dense(1000, activation="softmax")
    model = keras.Model(inputs, dense(pooled))
    weights = np.zeros((2, 1000), np.float32)
    weights[:, 281] = 1.0  # every image: class 281 first
    dense.set_weights([weights, np.zeros(1000, np.float32)])
    model.save(tmp_path / "imagenet.keras")
    status = cli.main([
        "explain", str(tmp_path / "imagenet.keras"), str(folder["root"] / "images" / "0.png"),
        "--class-names", "imagenet", "--method", "gradcam", "--out", str(tmp_path / "out"),
        "--verbose", "0",
    ])
    assert status == 0
    assert "top classes 281 tabby (" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["0_gradcam_class281_tabby.png"]
