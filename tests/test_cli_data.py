"""The CLI's data reaches the numbers: a labels CSV's classes and boxes give the metric values
computed here from those classes and boxes, on a non-square (24x40) model; `.h5` and 1-channel
models and every `--preprocess` choice run; an interrupted run exits with status 130."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest
from references import BLOB, HEIGHT, WIDTH, corner_images, corner_model, reference_maps

import keras_cam as kc
from keras_cam import cli, io, visualize

ROOT = pathlib.Path(__file__).resolve().parent.parent

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


# --------------------------------------------------------------- evaluate streams a folder
STREAMED = 7  # images in the streamed folder: batches of 3, 3 and 1 with --batch-size 3


@pytest.fixture(scope="module")
def stream_folder(tmp_path_factory):
    """A 24x40 model with random weights, 7 PNGs at the model's size (read back exactly),
    and a labels CSV with a class and a box per file."""
    root = tmp_path_factory.mktemp("cli_stream")
    model = corner_model(positive=False, seed=3)
    model.save(root / "model.keras")
    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 256, (STREAMED, HEIGHT, WIDTH, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, STREAMED)
    corner = np.stack([rng.integers(0, WIDTH - 12, STREAMED),
                       rng.integers(0, HEIGHT - 8, STREAMED)], axis=1)
    boxes = np.concatenate([corner, corner + [12, 8]], axis=1)
    (root / "images").mkdir()
    for index, image in enumerate(pixels):
        assert cv2.imwrite(str(root / "images" / f"{index}.png"),
                           cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (root / "labels.csv").write_text("".join(
        f"{index}.png,{label},{x0},{y0},{x1},{y1}\n"
        for index, (label, (x0, y0, x1, y1)) in enumerate(zip(labels, boxes))
    ))
    return {"root": root, "model": model, "images": pixels.astype(np.float32) / 255.0,
            "labels": labels, "boxes": boxes}


STREAM_METRICS = "average_drop,deletion,insertion,pointing_game,box_iou,sparseness"


def _evaluate_folder(stream_folder, tmp_path, *extra: str) -> list[str]:
    root = stream_folder["root"]
    return [
        "evaluate", str(root / "model.keras"), str(root / "images"), "--labels",
        str(root / "labels.csv"), "--methods", "gradcam", "--metrics", STREAM_METRICS,
        "--steps", "5", "--batch-size", "3", "--json", str(tmp_path / "table.json"), *extra,
    ]


def _without_times(report: str) -> list[str]:
    """Report lines without the timing notes and the `s/image` cells (the last column)."""
    return [
        line.rsplit("|", 2)[0] if line.startswith("|") else line
        for line in report.splitlines()
        if not line.startswith(("- time:", "- s/image:"))
    ]


def test_streamed_cli_evaluate_equals_the_in_memory_python_evaluate(
    stream_folder, tmp_path, capsys
):
    """The CLI streams the folder (3 batches); Python `evaluate` holds the same arrays: every
    metric of every row and baseline to 1e-5, the same JSON fields, the same report lines
    but the timings, and the accuracy the share of top-1 predictions equal to the labels."""
    status = cli.main(_evaluate_folder(stream_folder, tmp_path, "--verbose", "0"))
    assert status == 0
    printed = capsys.readouterr().out
    streamed = json.loads((tmp_path / "table.json").read_text())
    model, images = stream_folder["model"], stream_folder["images"]
    held = kc.evaluate(
        model, images, stream_folder["labels"], stream_folder["boxes"],
        methods=["gradcam"], metrics=STREAM_METRICS.split(","), batch_size=3,
        metric_options={"deletion": {"steps": 5}, "insertion": {"steps": 5}},  # as --steps 5
    )
    expected = held.to_dict()
    assert {k: v for k, v in streamed.items() if k != "rows"} == {
        k: v for k, v in expected.items() if k != "rows"}
    accuracy = np.mean(np.argmax(model.predict(images, verbose=0), -1) == stream_folder["labels"])
    assert streamed["num_images"] == STREAMED and streamed["accuracy"] == pytest.approx(accuracy)
    for row, held_row in zip(streamed["rows"], expected["rows"], strict=True):
        assert row["method"] == held_row["method"] and row["error"] is None
        for metric in expected["metrics"]:
            np.testing.assert_allclose(row[metric], held_row[metric], rtol=1e-5, atol=1e-7,
                                       err_msg=f"{row['method']} {metric}")
    source = str(stream_folder["root"] / "model.keras")
    # Printed: the report, a blank line, the verdict (which ranks the baselines too).
    report = printed.split("\n\n" + held.summary(), 1)[0]
    assert "\n\n" + held.summary() + "\nwrote " in printed
    assert _without_times(report) == _without_times(held.to_report(source))


def test_evaluate_hands_the_evaluator_batches_never_the_whole_folder(
    stream_folder, tmp_path, monkeypatch, capsys
):
    """Memory stays bounded because no array of every image exists: the old reader of a whole
    folder is never called, `evaluate` gets a stream, and the largest batch of images it
    receives from `explain_dataset` holds --batch-size images (a cheaper equivalent of a peak
    RSS measure, which tests/test_streaming.py makes for `explain_dataset` itself)."""
    from keras_cam import evaluation, streaming

    def whole_folder(*args, **kwargs):
        raise AssertionError("the whole folder was read at once")

    sizes, given = [], []
    original_evaluate, original_explain = evaluation.evaluate, streaming.explain_dataset

    def recording_evaluate(model, images, *args, **kwargs):
        given.append(images)
        return original_evaluate(model, images, *args, **kwargs)

    def recording_explain(*args, **kwargs):
        for batch in original_explain(*args, **kwargs):
            sizes.append(len(batch.images))
            yield batch

    monkeypatch.setattr(io, "read_image_folder", whole_folder)
    monkeypatch.setattr(evaluation, "evaluate", recording_evaluate)
    monkeypatch.setattr(evaluation, "explain_dataset", recording_explain)
    arguments = _evaluate_folder(stream_folder, tmp_path)
    arguments[arguments.index("--metrics") + 1] = "sparseness"
    assert cli.main([*arguments, "--verbose", "1"]) == 0
    [images] = given
    assert not isinstance(images, np.ndarray) and evaluation.is_dataset(images)
    assert sizes == [3, 3, 1]
    out = capsys.readouterr().out
    assert "7/Unknown" in out and "images/s" in out  # the progress bar, with --verbose 1
    assert cli.main([*arguments, "--verbose", "0"]) == 0
    assert "images/s" not in capsys.readouterr().out


def test_evaluate_streams_the_files_a_quoted_glob_matches(stream_folder, tmp_path):
    root = stream_folder["root"]
    status = cli.main([
        "evaluate", str(root / "model.keras"), str(root / "images" / "[0-4].png"),
        "--methods", "gradcam", "--metrics", "sparseness", "--batch-size", "2",
        "--json", str(tmp_path / "table.json"), "--verbose", "0",
    ])
    assert status == 0
    table = json.loads((tmp_path / "table.json").read_text())
    assert (table["num_images"], table["accuracy"]) == (5, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels.csv": "0.png,1\n1.png,9\n"},
         "labels.csv, line 2: class 9 is out of range for a model of 3 classes (0 to 2)."),
        ({"labels.csv": "0.png,1\n1.png,2\n", "--metrics": "box_iou"},
         "--metrics box_iou compare the maps with ground-truth boxes: give --labels FILE whose "
         "rows are FILE,LABEL,X0,Y0,X1,Y1"),
        ({"IMAGES_DIR": "images/0.png"},
         "images/0.png is a file, not a folder: give the folder of images (IMAGES_DIR)"),
        ({"IMAGES_DIR": "images/*.png"},
         "--labels lists files relative to IMAGES_DIR, a folder; "),
        ({"labels.csv": "0.png,1\nnope.png,2\nnone.png,0\n"},
         "image file not found: {root}/images/nope.png, listed in {labels} (1 more listed "
         "files are missing)"),
    ],
)
def test_streamed_evaluate_refuses_bad_input_in_one_line_before_any_batch(
    stream_folder, tmp_path, capsys, monkeypatch, change, message
):
    from keras_cam import evaluation

    def never(*args, **kwargs):
        raise AssertionError("evaluated despite bad input")

    monkeypatch.setattr(evaluation, "evaluate", never)
    root = stream_folder["root"]
    labels = tmp_path / "labels.csv"
    labels.write_text(change.get("labels.csv", (root / "labels.csv").read_text()))
    status = cli.main([
        "evaluate", str(root / "model.keras"), str(root / change.get("IMAGES_DIR", "images")),
        "--labels", str(labels), "--metrics", change.get("--metrics", "sparseness"),
        "--verbose", "0",
    ])
    assert status == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("keras-cam: error: ")
    assert message.format(root=root, labels=labels) in line


RSS_CHILD = textwrap.dedent("""
    import resource, sys
    from keras_cam import cli
    status = cli.main(["evaluate", sys.argv[1], sys.argv[2], "--methods", "gradcam",
                       "--metrics", "sparseness", "--batch-size", "32", "--verbose", "0"])
    print("PEAK", status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


@pytest.mark.slow
def test_evaluate_peak_memory_does_not_grow_with_the_folder(tmp_path):
    """A folder 4x larger (400 -> 1600 PNGs of 96x96: 44 -> 177 MB of float32 images, 15 ->
    59 MB of maps): the peak RSS of `keras-cam evaluate` grows by less than 48 MB, less than
    holding the extra images alone would cost (133 MB)."""
    model = corner_model(height=96, width=96, positive=False)
    model.save(tmp_path / "model.keras")
    rng = np.random.default_rng(0)
    for count in (400, 1600):
        folder = tmp_path / f"images_{count}"
        folder.mkdir()
        for index in range(count):
            pixels = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
            assert cv2.imwrite(str(folder / f"{index}.png"), pixels)

    def peak(count: int) -> int:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        run = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, str(tmp_path / "model.keras"),
             str(tmp_path / f"images_{count}")],
            env=env, capture_output=True, text=True, timeout=600, check=True,
        )
        status, kib = run.stdout.split("PEAK")[-1].split()
        assert status == "0", run.stdout + run.stderr
        return int(kib) // 1024  # KiB -> MiB on Linux

    small, large = peak(400), peak(1600)
    assert large - small < 48, (small, large)


def test_an_unreadable_image_in_a_later_batch_is_one_line_naming_the_file(
    stream_folder, tmp_path, capsys
):
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(4):  # 0-3.png fine, 4.png corrupt: read in the third batch of 2
        (folder / f"{index}.png").write_bytes((stream_folder["root"] / "images" / "0.png")
                                              .read_bytes())
    (folder / "4.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    status = cli.main([
        "evaluate", str(stream_folder["root"] / "model.keras"), str(folder), "--methods",
        "gradcam", "--metrics", "sparseness", "--batch-size", "2", "--verbose", "0",
    ])
    assert status == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"keras-cam: error: cannot read image {folder / '4.png'}: OpenCV cannot decode it."
