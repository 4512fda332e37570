"""1-D signals `(B, T, C)` and 3-D volumes `(B, D, H, W, C)`: every method, placement, the
automatic layer choice and the input checks (issue 12, item 4).

Expected values are computed here: linear / trilinear interpolation written in NumPy, copies of
the input placed by hand, a trained Conv1D model on signals whose event position is known, a
blob detector whose answer is the blob, and 2-D models whose maps a depth-1 volume must equal.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc
from keras_cam.methods.base import place_maps

LENGTH = 64
EVENT_WIDTH = 5


# ----------------------------------------------------------------------------- references
def _resize_axis(values: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Linear resampling of one axis with half-pixel centres, clamped at the edges."""
    cells = values.shape[axis]
    position = np.clip((np.arange(size) + 0.5) * cells / size - 0.5, 0, cells - 1)
    moved = np.moveaxis(values, axis, -1)
    resized = np.apply_along_axis(lambda row: np.interp(position, np.arange(cells), row), -1, moved)
    return np.moveaxis(resized, -1, axis)


def test_place_maps_1d_is_linear_interpolation_with_half_pixel_centres():
    maps = np.random.rand(3, 7).astype(np.float32)
    placement = np.array([[0.0, 0.0, 0.0, 40.0]], np.float32)  # stretched over the signal
    placed = place_maps(tf.constant(maps), tf.constant([40]), tf.constant(placement)).numpy()
    np.testing.assert_allclose(placed, _resize_axis(maps, 1, 40), atol=1e-6)


def test_place_maps_3d_is_trilinear_interpolation():
    maps = np.random.rand(2, 3, 4, 5).astype(np.float32)
    placement = np.array([[0, 0, 0, 6], [0, 0, 0, 24], [0, 0, 0, 40]], np.float32)
    placed = place_maps(tf.constant(maps), tf.constant([6, 24, 40]), tf.constant(placement))
    expected = _resize_axis(_resize_axis(_resize_axis(maps, 1, 6), 2, 24), 3, 40)
    np.testing.assert_allclose(placed.numpy(), expected, atol=1e-5)


# ----------------------------------------------------------------------------- geometry 1-D
def test_a_cropped_strided_conv1d_map_sits_on_the_window_centres():
    """Cropping1D((2, 0)) then a stride-2 'valid' Conv1D copying its window's centre: feature
    j is input sample 3 + 2j, so the placed (raw) map there is that sample / cells, and the
    cropped samples get 0."""
    inputs = keras.Input((LENGTH, 1))
    cropped = layers.Cropping1D((2, 0))(inputs)
    kernel = np.zeros((3, 1, 1), np.float32)
    kernel[1] = 1.0
    conv = layers.Conv1D(1, 3, strides=2, use_bias=False, name="copy")
    features = conv(cropped)
    head = layers.Dense(2, use_bias=False)
    model = keras.Model(inputs, head(layers.GlobalAveragePooling1D()(features)))
    conv.set_weights([kernel])
    head.set_weights([np.array([[0.0, 1.0]], np.float32)])
    signal = np.random.uniform(0.5, 1.0, (LENGTH, 1)).astype(np.float32)
    cells = (LENGTH - 2 - 3) // 2 + 1
    raw = kc.GradCAM(model)(signal, targets=1, normalize=False)
    assert raw.shape == (LENGTH,)
    centres = 3 + 2 * np.arange(cells)
    np.testing.assert_allclose(raw[centres] * cells, signal[centres, 0], rtol=1e-5)
    np.testing.assert_array_equal(raw[:2], 0.0)


def _signal_model(layout: str) -> tuple[keras.Model, list[layers.Layer]]:
    shape = (2, 40) if layout == "channels_first" else (40, 2)
    inputs = keras.Input(shape)
    weighted = [
        layers.Conv1D(4, 3, padding="same", activation="relu", data_format=layout),
        layers.Conv1D(5, 3, strides=2, activation="relu", data_format=layout),
    ]
    x = weighted[1](weighted[0](inputs))
    weighted.append(layers.Dense(3))
    pooled = layers.GlobalAveragePooling1D(data_format=layout)(x)
    return keras.Model(inputs, weighted[2](pooled)), weighted


@pytest.mark.parametrize("method", sorted(set(kc.METHODS) - {"fullgrad"}))  # images only
def test_a_channels_first_signal_model_gives_the_channels_last_maps(method):
    first, first_layers = _signal_model("channels_first")
    last, last_layers = _signal_model("channels_last")
    for source, target in zip(first_layers, last_layers):
        target.set_weights(source.get_weights())
    signals = np.random.rand(3, 40, 2).astype(np.float32)
    cls = kc.get_method(method)
    expected = cls(last, verbose=0)(signals, targets=[0, 1, 2])
    maps = cls(first, verbose=0)(np.moveaxis(signals, 1, 2), targets=[0, 1, 2])
    np.testing.assert_allclose(maps, expected, atol=1e-6)


# ----------------------------------------------------------------------------- trained 1-D
def _signals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy signals with one event: class 0 a bump, class 1 a dip, at a random position."""
    rng = np.random.default_rng(seed)
    positions = rng.integers(8, LENGTH - 8, n)
    labels = rng.integers(0, 2, n)
    time = np.arange(LENGTH)
    pulse = np.exp(-0.5 * ((time[None] - positions[:, None]) / 1.5) ** 2)
    signals = rng.normal(0.0, 0.15, (n, LENGTH)) + np.where(labels[:, None] == 0, 1, -1) * pulse
    return signals[..., None].astype(np.float32), labels.astype(np.int32), positions


@pytest.fixture(scope="module")
def signal_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((LENGTH, 1))
    x = layers.Conv1D(8, 5, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(16, 5, padding="same", activation="relu", name="last_conv")(x)
    outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    signals, labels, _ = _signals(1024, seed=1)
    model.fit(signals, labels, epochs=6, batch_size=64, verbose=0)
    return model


def _pointing_1d(maps: np.ndarray, positions: np.ndarray) -> float:
    return float(np.mean(np.abs(maps.argmax(axis=1) - positions) <= EVENT_WIDTH))


def test_the_automatic_layer_of_a_conv1d_network_is_its_last_conv(signal_model):
    assert kc.find_conv_layer(signal_model).name == "last_conv"


@pytest.mark.slow
# FullGrad takes images only; RandomCAM (the random floor) and Guided Backprop (the input
# gradient, class-agnostic) are not meant to point at the evidence.
@pytest.mark.parametrize(
    "method", sorted(set(kc.METHODS) - {"fullgrad", "randomcam", "guidedbackprop"})
)
def test_every_method_points_at_the_event_of_held_out_signals(signal_model, method):
    signals, labels, positions = _signals(40, seed=7)
    accuracy = np.mean(signal_model.predict(signals, verbose=0).argmax(-1) == labels)
    assert accuracy >= 0.95
    maps = kc.get_method(method)(signal_model, verbose=0)(signals, targets=labels)
    assert maps.shape == (40, LENGTH) and maps.dtype == np.float32
    assert _pointing_1d(maps, positions) >= 0.9


def test_gradcam_equals_cam_on_a_1d_gap_head(signal_model):
    signals, _, _ = _signals(6, seed=3)
    for target in (0, 1):
        grad = kc.GradCAM(signal_model)(signals, targets=target)
        cam = kc.CAM(signal_model)(signals, targets=target)
        np.testing.assert_allclose(grad, cam, atol=1e-5)


# ----------------------------------------------------------------------------- 3-D
def _blob_model(shape: tuple[int, int, int]) -> keras.Model:
    """A 3x3x3 mean filter (relu), GAP, Dense(+1 on class 1): class 1's map is the blurred
    volume, which peaks on the bright blob."""
    inputs = keras.Input((*shape, 1))
    conv = layers.Conv3D(1, 3, padding="same", activation="relu", use_bias=False, name="blur")
    head = layers.Dense(2, use_bias=False)
    model = keras.Model(inputs, head(layers.GlobalAveragePooling3D()(conv(inputs))))
    conv.set_weights([np.full((3, 3, 3, 1, 1), 1.0 / 27, np.float32)])
    head.set_weights([np.array([[0.0, 1.0]], np.float32)])
    return model


def _volumes(n: int, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    volumes = rng.uniform(0.0, 0.3, (n, *shape, 1)).astype(np.float32)
    centres = np.stack([rng.integers(2, size - 2, n) for size in shape], axis=1)
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1)
    for volume, centre in zip(volumes, centres):
        volume[..., 0] += np.exp(-0.5 * np.sum((grid - centre) ** 2, -1) / 1.5**2)
    return volumes, centres


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "layercam"])
def test_volume_maps_point_at_the_blob(method):
    shape = (8, 12, 20)
    volumes, centres = _volumes(12, shape, seed=0)
    maps = kc.get_method(method)(_blob_model(shape), verbose=0)(volumes, targets=1)
    assert maps.shape == (12, *shape)
    peaks = np.stack(np.unravel_index(maps.reshape(12, -1).argmax(1), shape), 1)
    hits = np.all(np.abs(peaks - centres) <= 1, axis=1)
    assert hits.mean() >= 0.9


@pytest.mark.slow
def test_a_trained_conv3d_network_points_at_the_blob_of_held_out_volumes():
    """Class 0: a bright blob, class 1: a dark one, anywhere in a noisy volume."""
    shape = (6, 10, 12)

    def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        volumes, centres = _volumes(n, shape, seed)
        labels = np.random.default_rng(seed).integers(0, 2, n)
        blob = volumes[..., 0] - volumes[..., 0].min(axis=(1, 2, 3), keepdims=True)
        signs = np.where(labels == 0, 1.0, -1.0)[:, None, None, None]
        noise = np.random.default_rng(seed + 1).uniform(0.0, 0.3, volumes.shape[:-1])
        return (noise + signs * blob)[..., None].astype(np.float32), labels, centres

    keras.utils.set_random_seed(0)
    inputs = keras.Input((*shape, 1))
    x = layers.Conv3D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv3D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling3D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    volumes, labels, _ = data(384, seed=1)
    model.fit(volumes, labels, epochs=5, batch_size=32, verbose=0)
    volumes, labels, centres = data(24, seed=5)
    assert np.mean(model.predict(volumes, verbose=0).argmax(-1) == labels) >= 0.9
    assert kc.find_conv_layer(model).name == "last_conv"
    for method in ("gradcam", "scorecam"):
        maps = kc.get_method(method)(model, verbose=0)(volumes, targets=labels)
        peaks = np.stack(np.unravel_index(maps.reshape(24, -1).argmax(1), shape), 1)
        assert np.all(np.abs(peaks - centres) <= 1, axis=1).mean() >= 0.9


def _depth_one_pair() -> tuple[keras.Model, keras.Model]:
    """The same network as a Conv2D image model and a Conv3D volume model of depth 1."""
    keras.utils.set_random_seed(4)
    inputs2 = keras.Input((24, 40, 3))
    convs2 = [layers.Conv2D(6, 3, padding="same", activation="relu"),
              layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")]
    dense2 = layers.Dense(3)
    x = inputs2
    for conv in convs2:
        x = conv(x)
    model2 = keras.Model(inputs2, dense2(layers.GlobalAveragePooling2D()(x)))
    inputs3 = keras.Input((1, 24, 40, 3))
    convs3 = [layers.Conv3D(6, (1, 3, 3), padding="same", activation="relu"),
              layers.Conv3D(8, (1, 3, 3), strides=(1, 2, 2), padding="same", activation="relu")]
    dense3 = layers.Dense(3)
    x = inputs3
    for conv in convs3:
        x = conv(x)
    model3 = keras.Model(inputs3, dense3(layers.GlobalAveragePooling3D()(x)))
    for conv2, conv3 in zip(convs2, convs3):
        kernel, bias = conv2.get_weights()
        conv3.set_weights([kernel[np.newaxis], bias])
    dense3.set_weights(dense2.get_weights())
    return model2, model3


@pytest.mark.parametrize("method", sorted(set(kc.METHODS) - {"fullgrad"}))  # images only
def test_a_depth_one_volume_map_equals_the_image_map(method):
    model2, model3 = _depth_one_pair()
    images = np.random.rand(3, 24, 40, 3).astype(np.float32)
    cls = kc.get_method(method)
    maps2 = cls(model2, verbose=0)(images, targets=[0, 1, 2])
    maps3 = cls(model3, verbose=0)(images[:, np.newaxis], targets=[0, 1, 2])
    assert maps3.shape == (3, 1, 24, 40)
    np.testing.assert_allclose(maps3[:, 0], maps2, atol=1e-5)


# ----------------------------------------------------------------------------- errors
def test_a_signal_model_refuses_inputs_of_the_wrong_rank(signal_model):
    cam = kc.GradCAM(signal_model)
    with pytest.raises(ValueError, match=r"one signal \(T, C\) or a batch \(B, T, C\).*rank 4"):
        cam(np.zeros((2, LENGTH, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"one signal.*rank 1"):
        cam(np.zeros((LENGTH,), np.float32))


def test_a_volume_model_refuses_images():
    cam = kc.GradCAM(_blob_model((4, 8, 8)))
    with pytest.raises(ValueError, match=r"one volume \(D, H, W, C\).*received shape \(8, 8, 1\)"):
        cam(np.zeros((8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"depth 5 .*expects 4: resize them to 4x8x8"):
        cam(np.zeros((1, 5, 8, 8, 1), np.float32))


def test_a_model_of_rank_2_inputs_is_refused():
    inputs = keras.Input((16,))
    model = keras.Model(inputs, layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="1 to 3 spatial axes"):
        kc.GradCAM(model)


# ----------------------------------------------------------------------------- metrics
def test_pointing_game_and_iou_on_signal_intervals():
    maps = np.zeros((3, 20), np.float32)
    maps[0, 5:9] = [0.2, 0.9, 1.0, 0.4]  # the peak at sample 7
    maps[1, 15] = 1.0
    intervals = np.array([[6, 9], [0, 10], [0, 20]])
    hits = kc.metrics.pointing_game(maps, intervals).per_image
    np.testing.assert_array_equal(hits, [1.0, 0.0, 0.0])  # a constant map points nowhere
    # The top 25% of 20 samples is 5 samples, of which those above the minimum (0) are
    # samples 5..8: one run, the interval (5, 9).
    np.testing.assert_array_equal(kc.metrics.boxes_from_maps(maps)[0], [5, 9])
    iou = kc.metrics.box_iou(maps, intervals).per_image
    np.testing.assert_allclose(iou, [3 / 4, 0.0, 0.0])


def test_pointing_game_and_iou_on_volume_boxes():
    maps = np.zeros((2, 4, 6, 8), np.float32)
    maps[0, 1:3, 2:4, 5:8] = 1.0  # z 1..3, y 2..4, x 5..8: 12 voxels
    maps[0, 1, 2, 6] = 2.0  # the peak
    maps[1, 0, 0, 0] = 1.0
    maps[1, 3, 5, 7] = 0.5  # a second, smaller region: the box is the larger one
    boxes = np.array([[5, 2, 1, 8, 4, 3], [0, 0, 0, 2, 2, 2]])
    np.testing.assert_array_equal(kc.metrics.pointing_game(maps, boxes).per_image, [1.0, 1.0])
    predicted = kc.metrics.boxes_from_maps(maps, fraction=0.25)
    np.testing.assert_array_equal(predicted, [[5, 2, 1, 8, 4, 3], [0, 0, 0, 1, 1, 1]])
    np.testing.assert_allclose(kc.metrics.box_iou(maps, boxes).per_image, [1.0, 1 / 8])
    with pytest.raises(ValueError, match=r"\(x0, y0, z0, x1, y1, z1\) box per map"):
        kc.metrics.pointing_game(maps, boxes[:, :4])
    with pytest.raises(ValueError, match=r"boxes\[1\].*not a non-empty"):
        kc.metrics.pointing_game(maps, [[5, 2, 1, 8, 4, 3], [0, 0, 0, 9, 2, 2]])


def _mean_model(length: int) -> keras.Model:
    """p = softmax([-m, m]) with m the signal's mean: class 1 likes large samples."""
    inputs = keras.Input((length, 1))
    dense = layers.Dense(2, activation="softmax", use_bias=False)
    model = keras.Model(inputs, dense(layers.GlobalAveragePooling1D()(inputs)))
    dense.set_weights([np.array([[-1.0, 1.0]], np.float32)])
    return model


def _probability(signals: np.ndarray) -> np.ndarray:
    mean = signals.reshape(len(signals), -1).mean(axis=1)
    return np.exp(mean) / (np.exp(mean) + np.exp(-mean))


def test_average_drop_and_deletion_on_signals_match_a_hand_computation():
    signals = np.random.uniform(0.0, 2.0, (4, 16, 1)).astype(np.float32)
    maps = np.random.rand(4, 16).astype(np.float32)
    model = _mean_model(16)
    y = _probability(signals)
    o = _probability(signals * maps[..., None])
    expected = 100 * np.maximum(y - o, 0) / y
    result = kc.metrics.average_drop(model, signals, maps, targets=1)
    np.testing.assert_allclose(result.per_image, expected, rtol=1e-4)
    curve = kc.metrics.deletion(model, signals, maps, targets=1, steps=16).curve
    order = np.argsort(-maps, axis=1, kind="stable")
    for image in range(4):
        removed = signals[image].copy()
        for step in range(17):
            np.testing.assert_allclose(curve[image, step], _probability(removed[None])[0], rtol=1e-4)
            if step < 16:
                removed[order[image, step]] = 0.0


def test_insertion_on_signals_starts_from_the_opencv_blur_along_time():
    import cv2

    signals = np.random.uniform(0.0, 2.0, (2, 30, 1)).astype(np.float32)
    maps = np.random.rand(2, 30).astype(np.float32)
    blurred = np.stack([cv2.GaussianBlur(s.reshape(30, 1, 1), (1, 11), 5) for s in signals])
    result = kc.metrics.insertion(_mean_model(30), signals, maps, targets=1, steps=5)
    np.testing.assert_allclose(result.curve[:, 0], _probability(blurred), rtol=1e-4)
    np.testing.assert_allclose(result.curve[:, -1], _probability(signals), rtol=1e-4)


# ----------------------------------------------------------------------------- drawing
def test_a_volume_overlay_is_the_reference_overlay_of_each_slice():
    from drawing_reference import reference_overlay

    volume = np.random.randint(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    heat = np.random.rand(3, 6, 10).astype(np.float32)
    blended = kc.overlay(volume, heat, alpha=0.4)
    assert blended.shape == (3, 24, 40, 3) and blended.dtype == np.uint8
    for depth in range(3):
        expected = reference_overlay(volume[depth], heat[depth], 0.4)
        assert np.abs(blended[depth].astype(int) - expected).max() <= 1
    with pytest.raises(ValueError, match=r"same depth D = 3; got a volume of shape \(2, 24, 40, 3\)"):
        kc.overlay(volume[:2], heat)


def test_slice_grid_tiles_the_slices_row_by_row():
    slices = np.stack([np.full((4, 6, 3), 10 * d, np.uint8) for d in range(5)])
    grid = kc.slice_grid(slices, columns=2)
    assert grid.shape == (3 * 4 + 2 * 2, 2 * 6 + 2, 3)
    for d in range(5):
        top, left = (d // 2) * 6, (d % 2) * 8
        assert (grid[top : top + 4, left : left + 6] == 10 * d).all()
    assert (grid[12:, 8:] == 255).all()  # the empty sixth cell
    assert kc.slice_grid(np.random.rand(4, 5, 7)).shape == (2 * 5 + 2, 2 * 7 + 2, 3)
    with pytest.raises(ValueError, match="columns"):
        kc.slice_grid(slices, columns=0)


def test_a_signal_map_is_drawn_behind_its_signal():
    import matplotlib

    matplotlib.use("Agg")
    signal = np.sin(np.linspace(0, 6, 50))
    heat = np.linspace(0, 1, 50)
    fig = kc.plot_signal_cam(signal, heat, title="Grad-CAM")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), signal)
    band = ax.images[0].get_array()
    np.testing.assert_array_equal(np.asarray(band)[0], kc.colorize(heat[None])[0])
    with pytest.raises(ValueError, match=r"same length; got shapes \(50,\) and \(40,\)"):
        kc.plot_signal_cam(signal, heat[:40])


# ----------------------------------------------------------------------------- CLI
def test_cli_explain_takes_npy_signals_and_volumes(tmp_path, capsys):
    import cv2

    from keras_cam import cli

    inputs = keras.Input((LENGTH, 2))
    features = layers.Conv1D(4, 3, padding="same", activation="relu")(inputs)
    signal_model = keras.Model(
        inputs, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(features))
    )
    signal_model.save(tmp_path / "signal.keras")
    _blob_model((5, 8, 8)).save(tmp_path / "volume.keras")
    np.save(tmp_path / "beat.npy", np.random.rand(LENGTH, 2).astype(np.float32))
    volumes, _ = _volumes(1, (5, 8, 8), seed=3)
    np.save(tmp_path / "scan.npy", volumes[0])
    out = tmp_path / "out"
    for model, sample in (("signal", "beat"), ("volume", "scan")):
        status = cli.main([
            "explain", str(tmp_path / f"{model}.keras"), str(tmp_path / f"{sample}.npy"),
            "--method", "gradcam", "--class", "1", "--out", str(out), "--verbose", "0",
        ])
        assert status == 0
    assert capsys.readouterr().out.count("top classes") == 2
    assert (out / "beat_gradcam_class1.png").stat().st_size > 0
    grid = cv2.imread(str(out / "scan_gradcam_class1.png"))
    assert grid.shape == (2 * 8 + 2, 3 * 8 + 4, 3)  # 5 slices of 8x8: 3 columns, 2 rows
    np.save(tmp_path / "wrong.npy", np.zeros((LENGTH,), np.float32))
    status = cli.main(["explain", str(tmp_path / "signal.keras"), str(tmp_path / "wrong.npy")])
    assert status != 0
    assert "takes one input of shape (64, 2)" in capsys.readouterr().err


def test_fullgrad_refuses_signal_and_volume_models():
    """FullGrad's bias terms are image maps: other ranks are refused, naming the way out."""
    signal = keras.Sequential([keras.Input((40, 2)), keras.layers.Conv1D(3, 3),
                               keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"FullGrad explains single-input image models.*GradCAM"):
        kc.FullGrad(signal)
