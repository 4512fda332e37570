"""What `HeatmapCallback` writes, checked by value on 24x40 images: the box scalars equal the
metrics recomputed from the logged maps, the grids keep the images' colours (RGB order), write
and build failures warn once while training goes on, and a second model is explained as itself."""

from __future__ import annotations

import collections
import errno
import io
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import BLOB, BLOB_BOX, HEIGHT, WIDTH, corner_images, corner_model, reference_maps

import keras_cam as kc
from keras_cam import _files

BAND = 18  # title and caption bands of the grid
SCALE = math.ceil(128 / max(HEIGHT, WIDTH))  # small images are enlarged to >= 128 px
CELL_HEIGHT = HEIGHT * SCALE
METHODS = ("gradcam", "scorecam")
TARGETS = np.array([0, 0, 0, 0])
BOXES = np.array([BLOB_BOX, (0, 12, 20, 24), (28, 0, 40, 10), (20, 0, 36, 6)])
COLOURS = {0: (255, 0, 0), 1: (0, 0, 255)}  # the blob of image 0 is red, of image 1 blue


def _images() -> np.ndarray:
    images = corner_images(4, seed=12)
    images[0, BLOB[0], BLOB[1]] = (1.0, 0.0, 0.0)
    images[1, BLOB[0], BLOB[1]] = (0.0, 0.0, 1.0)
    return images


def _compiled(model: keras.Model) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def _summaries(run_dir) -> dict:
    """`{tag: {step: value}}` from the event files of a TensorBoard run directory."""
    found: dict = collections.defaultdict(dict)
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[value.tag][event.step] = value
    return found


class _Recorder(keras.callbacks.Callback):
    """Runs after the heatmap callback and keeps a copy of its maps at each epoch."""

    def __init__(self, heatmaps: kc.HeatmapCallback) -> None:
        super().__init__()
        self.heatmaps = heatmaps
        self.maps: dict[int, dict[str, np.ndarray]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.maps[epoch] = {tag: m.copy() for tag, m in self.heatmaps.last_maps.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    images = _images()
    heatmaps = kc.HeatmapCallback(
        images, targets=TARGETS, methods=METHODS, log_dir=root / "logs", out_dir=root / "png",
        boxes=BOXES,
    )
    recorder = _Recorder(heatmaps)
    model = _compiled(corner_model(positive=True))
    model.fit(images, TARGETS, epochs=2, verbose=0, callbacks=[heatmaps, recorder])
    return {"root": root, "images": images, "recorder": recorder}


def _pointing(maps: np.ndarray, boxes: np.ndarray) -> float:
    """Hit rate of each map's (first) maximum inside its (x0, y0, x1, y1) box, by hand."""
    hits = []
    for heatmap, (x0, y0, x1, y1) in zip(maps, boxes):
        row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
        hits.append(heatmap.max() > heatmap.min() and x0 <= col < x1 and y0 <= row < y1)
    return float(np.mean(hits))


def test_box_scalars_equal_the_metrics_of_the_logged_maps(run):
    summaries = _summaries(run["root"] / "logs" / "cam")
    for epoch, maps in run["recorder"].maps.items():
        for method in METHODS:
            logged = {
                metric: float(tf.make_ndarray(summaries[f"cam/{method}/{metric}"][epoch].tensor))
                for metric in ("box_iou", "pointing_game")
            }
            assert logged["pointing_game"] == pytest.approx(_pointing(maps[method], BOXES))
            iou = kc.metrics.box_iou(maps[method], BOXES).mean
            assert logged["box_iou"] == pytest.approx(iou, abs=1e-6)
    # The blob images hit their blob box and miss the bottom-left one, so the score is
    # neither 0 nor 1: a box read in another order changes it.
    assert 0.0 < _pointing(maps["gradcam"], BOXES) < 1.0


def _blob_pixel(grid: np.ndarray, image_index: int) -> np.ndarray:
    """The grid pixel at the centre of image `image_index`'s blob, in the image column."""
    row = BAND + image_index * (CELL_HEIGHT + BAND) + (BLOB[0].start + 2) * SCALE + SCALE // 2
    col = (BLOB[1].start + 3) * SCALE + SCALE // 2
    return grid[row, col]


def test_png_grid_keeps_the_images_colours(run):
    for path in sorted((run["root"] / "png").glob("epoch_*.png")):
        grid = tf.io.decode_png(path.read_bytes()).numpy()  # RGB
        for index, colour in COLOURS.items():
            np.testing.assert_array_equal(_blob_pixel(grid, index), colour)


def test_tensorboard_grid_keeps_the_images_colours(run):
    summaries = _summaries(run["root"] / "logs" / "cam")
    for method in METHODS:
        for value in summaries[f"cam/{method}"].values():
            width, height, png = value.tensor.string_val[:3]
            grid = tf.io.decode_png(png).numpy()
            assert grid.shape == (int(height), int(width), 3)
            for index, colour in COLOURS.items():
                np.testing.assert_array_equal(_blob_pixel(grid, index), colour)


def test_the_logged_maps_are_oriented_like_the_images(run):
    for maps in run["recorder"].maps.values():
        for method in METHODS:
            assert maps[method].shape == (4, HEIGHT, WIDTH)
            for heatmap in maps[method]:
                row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
                assert BLOB[0].start - 2 <= row < BLOB[0].stop + 2
                assert BLOB[1].start - 2 <= col < BLOB[1].stop + 2


# ------------------------------------------------------------------------ write failures
class _FullDisk(io.RawIOBase):
    """A file whose every write fails as on a full disk."""

    def writable(self):
        return True

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def _read_only(path, mode="r", *args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied", str(path))


def _full_disk(path, mode="r", *args, **kwargs):
    if "w" in mode or "x" in mode:
        open(path, mode).close()  # the temporary file exists, then the disk is full
        return _FullDisk()
    return open(path, mode, *args, **kwargs)


@pytest.mark.parametrize(
    ("fake_open", "error"), [(_read_only, "PermissionError"), (_full_disk, "OSError")]
)
def test_a_failing_png_write_warns_once_and_training_goes_on(
    fake_open, error, tmp_path, monkeypatch
):
    monkeypatch.setattr(_files, "open", fake_open, raising=False)  # where files are written
    images = _images()
    heatmaps = kc.HeatmapCallback(
        images, methods="gradcam", log_dir=tmp_path / "logs", out_dir=tmp_path / "png"
    )
    recorder = _Recorder(heatmaps)
    with pytest.warns(RuntimeWarning, match=f"writing the PNG file failed after epoch 1: {error}"
                      ) as record:
        history = _compiled(corner_model()).fit(
            images, TARGETS, epochs=3, verbose=0, callbacks=[heatmaps, recorder]
        )
    assert len([w for w in record if "HeatmapCallback" in str(w.message)]) == 1
    assert len(history.history["loss"]) == 3
    assert sorted(recorder.maps) == [0, 1, 2] and heatmaps.last_epoch == 2
    assert list((tmp_path / "png").iterdir()) == []  # no partial or temporary file left
    assert sorted(_summaries(tmp_path / "logs" / "cam")["cam/gradcam"]) == [0, 1, 2]


def test_a_failing_tensorboard_write_warns_once_and_the_pngs_go_on(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "cam").write_text("a file where the run directory should be")
    images = _images()
    heatmaps = kc.HeatmapCallback(
        images, methods="gradcam", log_dir=tmp_path / "logs", out_dir=tmp_path / "png"
    )
    expected = "writing to TensorBoard failed after epoch 1"
    with pytest.warns(RuntimeWarning, match=expected) as record:
        history = _compiled(corner_model()).fit(
            images, TARGETS, epochs=3, verbose=0, callbacks=[heatmaps]
        )
    assert len([w for w in record if "HeatmapCallback" in str(w.message)]) == 1
    assert len(history.history["loss"]) == 3
    assert len(list((tmp_path / "png").glob("epoch_*.png"))) == 3


def test_a_method_that_cannot_be_built_warns_once_and_the_others_go_on(tmp_path):
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="last_conv")(inputs)
    x = keras.layers.Flatten()(x)  # no GAP head: CAM does not apply
    model = _compiled(keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)))
    images = _images()
    heatmaps = kc.HeatmapCallback(images, methods=("cam", "gradcam"), out_dir=tmp_path)
    recorder = _Recorder(heatmaps)
    with pytest.warns(RuntimeWarning, match=r"building CAM \('cam'\) failed") as record:
        history = model.fit(images, TARGETS, epochs=2, verbose=0, callbacks=[heatmaps, recorder])
    assert len([w for w in record if "HeatmapCallback" in str(w.message)]) == 1
    assert len(history.history["loss"]) == 2
    assert [set(maps) for maps in recorder.maps.values()] == [{"gradcam"}, {"gradcam"}]
    assert len(list(tmp_path.glob("epoch_*.png"))) == 2


def test_a_later_fit_on_another_model_is_explained_as_that_model(tmp_path):
    images = _images()
    targets = np.array([0, 1, 2, 1])
    heatmaps = kc.HeatmapCallback(images, targets=targets, methods=METHODS, out_dir=tmp_path)
    first = _compiled(corner_model(positive=True))
    first.fit(images, targets, epochs=1, verbose=0, callbacks=[heatmaps])
    second = _compiled(corner_model(positive=False, filters=8, seed=13))
    optimizer_free = keras.optimizers.SGD(0.0)  # weights stay as built: the reference's
    second.compile(optimizer=optimizer_free, loss="sparse_categorical_crossentropy")
    second.fit(images, targets, epochs=1, verbose=0, callbacks=[heatmaps])
    for method in METHODS:
        np.testing.assert_allclose(
            heatmaps.last_maps[method], reference_maps(method, second, images, targets),
            atol=2e-4,
        )
