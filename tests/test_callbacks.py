"""Tests of `HeatmapCallback`: real `fit` runs on a tiny model, read back from files and from
a TensorBoard server."""

from __future__ import annotations

import collections
import json
import urllib.parse
import urllib.request
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from drawing_reference import reference_overlay
from tensorboard import program

from keras_cam import metrics
from keras_cam.callbacks import HeatmapCallback
from keras_cam.datasets import SHAPE_NAMES, shapes
from keras_cam.targets import ClassTarget
from keras_cam.methods import METHODS, GradCAM, get_method
from references import (
    corner_images,
    corner_model,
    feature_model,
    gap_head,
    reference_gradient_maps,
)
from tiny_models import TTA_CALLS, gap_model, tta_gradcam_reference, tta_model

SIZE = 32  # the smallest size `shapes` draws
SHOWN = 4  # images the callback explains
CELL = 128  # 32 px images are enlarged 4x in the grid
BAND = 18  # caption and title bands
GAP = 2  # between columns
GRID_HEIGHT = BAND + SHOWN * (CELL + BAND)
METHOD_NAMES = ("gradcam", "gradcam++")


def _data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return shapes(n, image_size=SIZE, seed=seed)


def _model() -> keras.Model:
    model = gap_model(size=SIZE, classes=len(SHAPE_NAMES))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model


def _summaries(run_dir) -> dict[str, dict[int, list[tf.compat.v1.Summary.Value]]]:
    """`{tag: {step: [values]}}` from every event file of a TensorBoard run directory."""
    found: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[value.tag][event.step].append(value)
    return found


def _decode_image_summary(value) -> np.ndarray:
    """The image of a `tf.summary.image` value (its tensor is `[width, height, png...]`)."""
    width, height, png = value.tensor.string_val[:3]
    image = tf.io.decode_png(png).numpy()
    assert image.shape == (int(height), int(width), 3)
    return image


class _Probe(keras.callbacks.Callback):
    """Runs after the heatmap callback: records its maps next to a direct Grad-CAM call."""

    def __init__(self, heatmaps: HeatmapCallback) -> None:
        super().__init__()
        self.heatmaps = heatmaps
        self.logged: dict[int, np.ndarray] = {}
        self.direct: dict[int, np.ndarray] = {}
        self.explainers: list[dict] = []

    def on_train_begin(self, logs=None):
        self.explainers.append(dict(self.heatmaps._explainers))

    def on_epoch_end(self, epoch, logs=None):
        assert self.heatmaps.last_epoch == epoch
        self.logged[epoch] = self.heatmaps.last_maps["gradcam"]
        self.direct[epoch] = GradCAM(self.model)(self.heatmaps.images)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two `fit` calls (epochs 0-1, then 2) with validation data and Keras' own TensorBoard
    callback on the same `log_dir`, both methods, boxes and class names."""
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("heatmaps")
    images, labels, boxes = _data()
    val_images, val_labels, _ = _data(16, seed=1)
    model = _model()
    heatmaps = HeatmapCallback(
        images,
        methods=METHOD_NAMES,
        log_dir=root / "logs",
        out_dir=root / "png",
        class_names=SHAPE_NAMES,
        boxes=boxes,
        max_images=SHOWN,
    )
    probe = _Probe(heatmaps)
    history = []
    for initial_epoch, epochs in ((0, 2), (2, 3)):
        callbacks = [heatmaps, probe, keras.callbacks.TensorBoard(root / "logs")]
        history.append(
            model.fit(
                images, labels, batch_size=16, epochs=epochs, initial_epoch=initial_epoch,
                validation_data=(val_images, val_labels), callbacks=callbacks, verbose=0,
            )
        )
    return {"root": root, "model": model, "heatmaps": heatmaps, "probe": probe, "history": history}


# ------------------------------------------------------------------------- a real fit
@pytest.mark.slow
def test_event_files_hold_one_image_per_method_per_epoch(run):
    summaries = _summaries(run["root"] / "logs" / "cam")
    images = {tag: steps for tag, steps in summaries.items() if "/" not in tag[len("cam/") :]}
    assert set(images) == {f"cam/{name}" for name in METHOD_NAMES}
    for steps in images.values():
        assert sorted(steps) == [0, 1, 2]
        for (value,) in steps.values():
            assert value.metadata.plugin_data.plugin_name == "images"
            assert _decode_image_summary(value).shape == (GRID_HEIGHT, 2 * CELL + GAP, 3)


@pytest.mark.slow
def test_box_scalars_per_method_per_epoch(run):
    boxes = _data()[2][:SHOWN]
    summaries = _summaries(run["root"] / "logs" / "cam")
    for name in METHOD_NAMES:
        for metric in ("box_iou", "pointing_game"):
            steps = summaries[f"cam/{name}/{metric}"]
            assert sorted(steps) == [0, 1, 2]
            values = {
                step: float(tf.make_ndarray(value.tensor)) for step, (value,) in steps.items()
            }
            metric_fn = getattr(metrics, metric)
            # The logged value is the metric of the maps logged at that epoch and the boxes.
            if name == "gradcam":
                for step, value in values.items():
                    expected = metric_fn(run["probe"].logged[step], boxes).mean
                    assert value == pytest.approx(expected, abs=1e-6)
            expected = metric_fn(run["heatmaps"].last_maps[name], boxes).mean
            assert values[2] == pytest.approx(expected, abs=1e-6)
    assert set(run["heatmaps"].last_scores) == {
        f"cam/{name}/{metric}" for name in METHOD_NAMES for metric in ("box_iou", "pointing_game")
    }


@pytest.mark.slow
def test_png_per_epoch_written_atomically(run):
    out_dir = run["root"] / "png"
    assert sorted(path.name for path in out_dir.iterdir()) == [
        "epoch_001.png", "epoch_002.png", "epoch_003.png"
    ]  # no temporary files left behind
    for path in out_dir.iterdir():
        image = tf.io.decode_png(path.read_bytes()).numpy()
        assert image.shape == (GRID_HEIGHT, 3 * CELL + 2 * GAP, 3)


@pytest.mark.slow
def test_maps_follow_the_current_weights(run):
    probe = run["probe"]
    assert sorted(probe.logged) == [0, 1, 2]
    for epoch, maps in probe.logged.items():
        assert maps.shape == (SHOWN, SIZE, SIZE) and maps.dtype == np.float32
        np.testing.assert_allclose(maps, probe.direct[epoch], atol=1e-6)
    assert np.abs(probe.logged[0] - probe.logged[2]).max() > 1e-2
    summaries = _summaries(run["root"] / "logs" / "cam")["cam/gradcam"]
    first, last = (_decode_image_summary(summaries[step][0]) for step in (0, 2))
    assert not np.array_equal(first, last)


@pytest.mark.slow
def test_built_once_and_never_retraced_across_fits(run):
    first, second = run["probe"].explainers
    assert set(first) == set(METHOD_NAMES)
    assert all(first[name] is second[name] for name in METHOD_NAMES)
    for explainer in first.values():
        assert len(explainer._passes) == 1  # concrete functions: they cannot retrace


@pytest.mark.slow
def test_coexists_with_keras_tensorboard_and_validation_data(run):
    logs = run["root"] / "logs"
    assert {path.name for path in logs.iterdir()} == {"train", "validation", "cam"}
    assert "epoch_loss" in _summaries(logs / "train")
    assert "epoch_loss" in _summaries(logs / "validation")
    assert [len(history.history["val_loss"]) for history in run["history"]] == [2, 1]


@pytest.mark.slow
def test_tensorboard_serves_the_images(run):
    servers = []

    def make_server(wsgi_app, flags):
        servers.append(program.WerkzeugServer(wsgi_app, flags))
        return servers[-1]

    board = program.TensorBoard(server_class=make_server)
    board.configure(
        argv=[
            None, "--logdir", str(run["root"] / "logs"), "--host", "127.0.0.1", "--port", "0",
            "--load_fast", "false", "--reload_interval", "0", "--reload_task", "blocking",
        ]
    )
    url = board.launch()  # loads the logs once, then serves on loopback in a daemon thread
    try:
        assert url.startswith("http://127.0.0.1:")

        def get(path: str, **query) -> bytes:
            address = f"{url.rstrip('/')}/data/plugin/images/{path}?{urllib.parse.urlencode(query)}"
            with urllib.request.urlopen(address, timeout=20) as response:
                return response.read()

        tags = json.loads(get("tags"))
        assert set(tags["cam"]) == {f"cam/{name}" for name in METHOD_NAMES}
        entries = json.loads(get("images", run="cam", tag="cam/gradcam", sample=0))
        assert sorted(entry["step"] for entry in entries) == [0, 1, 2]
        query = urllib.parse.parse_qs(entries[-1]["query"])
        png = get("individualImage", **{key: values[0] for key, values in query.items()})
        assert tf.io.decode_png(png).numpy().shape == (GRID_HEIGHT, 2 * CELL + GAP, 3)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


# ---------------------------------------------------------------------- other schedules
@pytest.mark.slow
def test_every_n_epochs_logs_the_first_then_every_nth_epoch(tmp_path):
    images, labels, _ = _data(32)
    shifted = images * 2.0 - 1.0  # a [-1, 1] "preprocessing": rescaled for display only
    heatmaps = HeatmapCallback(
        shifted[:2], log_dir=tmp_path / "logs", out_dir=tmp_path / "png", every_n_epochs=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _model().fit(shifted, labels, batch_size=16, epochs=5, callbacks=[heatmaps], verbose=0)
    assert sorted(_summaries(tmp_path / "logs" / "cam")["cam/gradcam"]) == [0, 2, 4]
    assert sorted(path.name for path in (tmp_path / "png").iterdir()) == [
        "epoch_001.png", "epoch_003.png", "epoch_005.png"
    ]


# ---------------------------------------------------------------------- non-square images
def test_grid_of_non_square_images_keeps_height_and_width(tmp_path):
    # 24x40 images are enlarged 4x (the smallest factor that reaches 128 px on the long side)
    # to 96x160 cells; the overlay cell is the enlarged image under the map resized to it.
    height, width, scale = 24, 40, 4
    inputs = keras.Input((height, width, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, x)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(3).random((2, height, width, 3)).astype(np.float32)
    heatmaps = HeatmapCallback(images, out_dir=tmp_path, raise_errors=True)
    model.fit(images, np.array([0, 1]), epochs=1, callbacks=[heatmaps], verbose=0)

    grid = tf.io.decode_png((tmp_path / "epoch_001.png").read_bytes()).numpy().astype(int)
    cell_height, cell_width = scale * height, scale * width
    assert grid.shape == (BAND + 2 * (cell_height + BAND), 2 * cell_width + GAP, 3)
    maps = heatmaps.last_maps["gradcam"]
    assert maps.shape == (2, height, width) and maps.max() == 1.0
    for row in range(2):
        top = BAND + row * (cell_height + BAND)
        rgb = np.uint8(np.rint(images[row] * 255))
        shown = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
        np.testing.assert_array_equal(grid[top : top + cell_height, :cell_width], shown)
        drawn = grid[top : top + cell_height, cell_width + GAP :]
        assert np.abs(drawn - reference_overlay(shown, maps[row], 0.4)).max() <= 1


class _BrokenCAM(GradCAM):
    display_name = "Broken-CAM"

    def compute_weights(self, features, grads, class_idx):
        raise RuntimeError("injected failure")


@pytest.fixture
def broken_method(monkeypatch):
    monkeypatch.setitem(METHODS, "broken", _BrokenCAM)


@pytest.mark.slow
def test_a_failing_method_warns_once_and_training_goes_on(tmp_path, broken_method):
    images, labels, _ = _data(32)
    heatmaps = HeatmapCallback(images[:2], methods=("broken", "gradcam"), out_dir=tmp_path)
    expected = r"(?s)computing Broken-CAM \('broken'\) failed after epoch 1: .*injected failure"
    with pytest.warns(RuntimeWarning, match=expected) as record:
        history = _model().fit(images, labels, batch_size=16, epochs=3, callbacks=[heatmaps],
                               verbose=0)
    assert len([warning for warning in record if "Broken" in str(warning.message)]) == 1
    assert len(history.history["loss"]) == 3
    assert len(list(tmp_path.glob("epoch_*.png"))) == 3
    assert set(heatmaps.last_maps) == {"gradcam"}


@pytest.mark.slow
def test_raise_errors_stops_training(tmp_path, broken_method):
    images, labels, _ = _data(32)
    heatmaps = HeatmapCallback(images[:2], methods="broken", out_dir=tmp_path, raise_errors=True)
    with pytest.raises(RuntimeError, match="injected failure"):
        _model().fit(images, labels, epochs=2, callbacks=[heatmaps], verbose=0)


# ----------------------------------------------------------------------- bad arguments
IMAGES = np.zeros((3, SIZE, SIZE, 3), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images": None}, ValueError, "`images` is required"),
        ({"images": IMAGES[:0]}, ValueError, "empty batch"),
        ({"images": IMAGES[..., 0, 0]}, ValueError, r"received shape \(3, 32\)"),
        ({"images": np.full_like(IMAGES, np.nan)}, ValueError, "NaN"),
        ({"images": np.array(["a"])}, TypeError, "numeric"),
        ({"out_dir": None}, ValueError, "Pass `log_dir`"),
        ({"methods": "gradcam+++"}, ValueError, "Unknown CAM method 'gradcam\\+\\+\\+'"),
        ({"methods": ()}, ValueError, "`methods` is empty"),
        ({"methods": ("gradcam", "Grad-CAM")}, ValueError, "'gradcam' more than once"),
        ({"methods": None}, TypeError, "`methods` must be"),
        ({"every_n_epochs": 0}, ValueError, "`every_n_epochs` must be at least 1"),
        ({"every_n_epochs": 1.5}, TypeError, "`every_n_epochs` must be an int"),
        ({"max_images": 0}, ValueError, "`max_images` must be at least 1"),
        ({"boxes": np.zeros((2, 4), int)}, ValueError, r"`boxes` must have shape \(B, 4\)"),
        ({"boxes": np.tile([0, 0, 40, 8], (3, 1))}, ValueError, r"`boxes\[0\]`"),
        ({"targets": [0, 1]}, ValueError, "one class per image"),
        ({"class_names": "circle"}, TypeError, "`class_names` must be a sequence"),
    ],
)
def test_bad_arguments_fail_at_construction(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        HeatmapCallback(**{"images": IMAGES, "out_dir": tmp_path, **kwargs})


class _EpochCounter(keras.callbacks.Callback):
    epochs = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs += 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": np.zeros((2, 16, 16, 3), np.float32)}, r"shape \(16, 16, 3\) per image"),
        ({"images": np.zeros((2, SIZE, SIZE, 1), np.float32)}, r"takes images of shape"),
        ({"targets": 7}, "class index 7, out of range"),
        ({"class_names": ("a", "b")}, "`class_names` has 2 names"),
    ],
)
def test_arguments_that_do_not_fit_the_model_fail_before_the_first_epoch(tmp_path, kwargs, match):
    heatmaps = HeatmapCallback(**{"images": IMAGES, "out_dir": tmp_path, **kwargs})
    counter = _EpochCounter()
    with pytest.raises(ValueError, match=match):
        _model().fit(IMAGES, np.zeros(3), epochs=1, callbacks=[heatmaps, counter], verbose=0)
    assert counter.epochs == 0


def test_method_names_go_through_the_registry():
    heatmaps = HeatmapCallback(IMAGES, methods=("Grad-CAM++", "gradcam"), out_dir="unused")
    assert heatmaps.methods == {"gradcam++": get_method("gradcam++"), "gradcam": GradCAM}


# ------------------------------------------- models built by fit; targets of any type
def _lazy_sequential() -> keras.Model:
    """A Sequential without `keras.Input`: `fit` builds it in its first training step."""
    model = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _non_square_data(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    images = np.random.default_rng(3).random((n, 24, 40, 3)).astype(np.float32)
    return images, np.arange(n) % 3


def test_lazily_built_sequential_gets_heatmaps_from_the_first_epoch(tmp_path):
    images, labels = _non_square_data()
    model = _lazy_sequential()
    heatmaps = HeatmapCallback(images[:4], out_dir=tmp_path, methods=("gradcam", "scorecam"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        history = model.fit(images, labels, epochs=2, callbacks=[heatmaps], verbose=0)
    assert len(history.history["loss"]) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert heatmaps.last_epoch == 1 and set(heatmaps.last_maps) == {"gradcam", "scorecam"}
    # The maps of the last epoch are those of the trained model, at the input's (24, 40) grid.
    np.testing.assert_allclose(
        heatmaps.last_maps["gradcam"], GradCAM(model)(images[:4]), atol=1e-6
    )
    assert heatmaps.last_maps["gradcam"].shape == (4, 24, 40)


def test_lazily_built_model_with_mismatched_images_warns_and_trains_on(tmp_path):
    images, labels = _non_square_data()
    heatmaps = HeatmapCallback(images[:2, :, :24], out_dir=tmp_path)  # 24x24, model sees 24x40
    with pytest.warns(RuntimeWarning, match=r"building the explainers failed after epoch 1.*"
                      r"shape \(24, 24, 3\) per image"):
        history = _lazy_sequential().fit(images, labels, epochs=2, callbacks=[heatmaps],
                                         verbose=0)
    assert len(history.history["loss"]) == 2
    assert heatmaps.last_maps == {} and list(tmp_path.iterdir()) == []


class SubclassedNet(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(3, activation="softmax")

    def call(self, inputs):
        return self.dense(self.pool(self.conv(inputs)))


def test_subclassed_model_warns_and_trains_on(tmp_path):
    images, labels = _non_square_data()
    model = SubclassedNet()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    heatmaps = HeatmapCallback(images[:2], out_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="building the explainers failed.*subclassed") as record:
        history = model.fit(images, labels, epochs=3, callbacks=[heatmaps], verbose=0)
    assert len(history.history["loss"]) == 3
    assert len([w for w in record if "building the explainers" in str(w.message)]) == 1


@pytest.mark.parametrize(
    "make_targets",
    [
        lambda labels: tf.constant(labels),
        lambda labels: tf.Variable(labels.astype(np.int64)),
        lambda labels: labels.astype(np.uint8),
        lambda labels: pytest.importorskip("pandas").Series(labels),
        lambda labels: [ClassTarget(int(label)) for label in labels],
    ],
    ids=["tensor", "variable", "uint8", "pandas", "class-target-objects"],
)
def test_targets_of_any_integer_array_type(tmp_path, make_targets):
    images, labels = _non_square_data(6)
    labels = np.array([2, 0, 1, 1, 2, 0])
    model = _lazy_sequential()
    model.build((None, 24, 40, 3))
    heatmaps = HeatmapCallback(images, targets=make_targets(labels), out_dir=tmp_path,
                               max_images=4)
    model.fit(images, labels, epochs=1, callbacks=[heatmaps], verbose=0)
    np.testing.assert_array_equal(heatmaps._explained_classes, labels[:4])
    expected = GradCAM(model)(images[:4], [2, 0, 1, 1])
    np.testing.assert_allclose(heatmaps.last_maps["gradcam"], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        (np.array([0.0, 1.0, 2.0]), TypeError, "integer class indices; received dtype float64"),
        (tf.constant([True, False, True]), TypeError, "received booleans"),
        (tf.constant([0, 1]), ValueError, "3 images were passed"),
        (np.eye(3, dtype=int), ValueError, r"one-hot.*np.argmax"),
        ("cat", TypeError, "`targets` must be None"),
    ],
)
def test_targets_that_are_not_class_indices_fail_at_construction(tmp_path, targets, error, match):
    with pytest.raises(error, match=match):
        HeatmapCallback(IMAGES, targets=targets, out_dir=tmp_path)


def _compiled_tta() -> keras.Model:
    model = tta_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


TTA_IMAGES = np.random.default_rng(0).uniform(0, 1, (4, 24, 40, 3)).astype("float32")
TTA_LABELS = np.array([0, 1, 2, 0])


@pytest.mark.parametrize(
    ("layer", "layer_call", "flipped", "explained"),
    [(None, 1, False, "shared"), ("backbone", 0, True, "backbone")],
    ids=["automatic-image", "backbone-flip"],
)
def test_callback_on_a_tta_model_explains_the_chosen_call(
    tmp_path, layer, layer_call, flipped, explained
):
    model = _compiled_tta()
    targets = np.array([2, 0])
    callback = HeatmapCallback(TTA_IMAGES[:2], targets=targets, methods=("gradcam",),
                               out_dir=tmp_path, layer=layer, layer_call=layer_call)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no step of the callback failed
        model.fit(TTA_IMAGES, TTA_LABELS, epochs=1, verbose=0, callbacks=[callback])
    assert (tmp_path / "epoch_001.png").is_file()
    assert callback._explainers["gradcam"].layer.name == explained
    # The chosen branch's map, by hand, on the image's pixels (the flip's map flipped back).
    expected = tta_gradcam_reference(model, TTA_IMAGES[:2], targets, flipped)
    np.testing.assert_allclose(callback.last_maps["gradcam"], expected, atol=1e-4)
    other = tta_gradcam_reference(model, TTA_IMAGES[:2], targets, not flipped)
    assert np.abs(callback.last_maps["gradcam"] - other).max() > 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, rf"called 2 times.*{TTA_CALLS}.*Choose which call to explain with `layer_call=`"),
        ({"layer_call": 2}, r"`layer_call` must be None or an int from 0 to 1"),
        ({"layer": "backbone", "layer_call": -1}, r"`layer_call` must be None or an int from 0"),
        ({"layer": "nope", "layer_call": 0}, r"`layer`='nope' is not a layer of model 'tta'"),
    ],
    ids=["no-layer-call", "out-of-range", "negative", "unknown-layer"],
)
def test_a_layer_or_call_that_does_not_fit_the_model_fails_before_the_first_epoch(
    tmp_path, kwargs, match
):
    # No method can be built: warning and training on would train without any heatmap, and
    # `raise_errors=False` cannot make the arguments fit, so the error stops `fit` at once.
    callback = HeatmapCallback(TTA_IMAGES[:2], methods=("gradcam", "gradcam++"),
                               out_dir=tmp_path, raise_errors=False, **kwargs)
    counter = _EpochCounter()
    with pytest.raises(ValueError, match=match):
        _compiled_tta().fit(TTA_IMAGES, TTA_LABELS, epochs=1, verbose=0,
                            callbacks=[callback, counter])
    assert counter.epochs == 0


def test_layer_reaches_every_method(tmp_path):
    """`layer` picks a layer the automatic choice does not: the maps are that layer's."""
    model = corner_model(positive=False)
    model.compile("adam", "sparse_categorical_crossentropy")
    images = corner_images(2)
    targets = np.array([1, 2])
    callback = HeatmapCallback(images, targets=targets, methods=("gradcam", "gradcam++"),
                               out_dir=tmp_path, layer="conv1")
    model.fit(images, targets, epochs=1, verbose=0, callbacks=[callback])
    dense = model.get_layer("classifier")
    head = gap_head(dense)
    rest = [model.get_layer(name) for name in ("pool", "last_conv")]

    def logits_of(features):
        for layer in rest:
            features = layer(features)
        return head(features)

    for method in ("gradcam", "gradcam++"):
        assert callback._explainers[method].layer.name == "conv1"
        expected = reference_gradient_maps(
            feature_model(model, "conv1"), logits_of, images, targets, method
        )
        np.testing.assert_allclose(callback.last_maps[method], expected, atol=1e-4)
