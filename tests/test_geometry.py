"""Where maps sit on the input: crops, paddings, strides, resizes, flips, channels-first inputs,
1xN maps and layers called more than once.

The expected maps are computed here, from the known crop / pad / stride of each layer: the
probe models make the explained feature map a copy of (part of) the input channel, so the
placed map must be that copy, sampled where the features' windows are centred and zero outside
the region they come from.
"""

from __future__ import annotations

import logging
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc
from keras_cam.methods.base import place_maps

# ----------------------------------------------------------------------------- helpers


def _centre_kernel(size: int, channels: int = 1) -> np.ndarray:
    """A `size x size` kernel that copies channel 0 at the window's centre."""
    kernel = np.zeros((size, size, channels, 1), np.float32)
    kernel[size // 2, size // 2, 0, 0] = 1.0
    return kernel


def _probe(
    shape: tuple[int, int, int], grid_layers: list[layers.Layer], kernel: int = 1, **conv: object
) -> keras.Model:
    """input -> grid layers -> Conv2D copying channel 0 ('features') -> GAP -> Dense.

    With a Dense kernel of +1 on class 1, Grad-CAM of class 1 (not normalized) is the feature
    map divided by its number of cells.
    """
    inputs = keras.Input(shape)
    x = inputs
    for layer in grid_layers:
        x = layer(x)
    features = layers.Conv2D(1, kernel, use_bias=False, name="features", **conv)
    x = features(x)
    features.set_weights([_centre_kernel(kernel, shape[-1])])
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(2, name="classifier")
    outputs = dense(x)
    dense.set_weights([np.array([[-1.0, 1.0]], np.float32), np.zeros(2, np.float32)])
    return keras.Model(inputs, outputs)


def _features(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The probe's feature map `(B, h, w)`, from a plain Keras sub-model."""
    sub = keras.Model(model.inputs[0], model.get_layer("features").output)
    return np.asarray(sub(images))[..., 0]


def _sample(
    values: np.ndarray, centres: np.ndarray, pixels: int, lo: float, hi: float
) -> np.ndarray:
    """Linear interpolation along axis 1 at pixel centres, clamped at the ends, zero outside
    [lo, hi): `(B, cells, n)` -> `(B, pixels, n)`."""
    order = np.argsort(centres)
    points = np.arange(pixels) + 0.5
    moved = np.moveaxis(values, 1, -1)  # (B, n, cells)
    flat = moved.reshape(-1, moved.shape[-1])
    sampled = np.stack([np.interp(points, centres[order], row[order]) for row in flat])
    sampled = sampled * ((points >= lo) & (points < hi))
    return np.moveaxis(sampled.reshape(*moved.shape[:-1], pixels), -1, 1)


def _expected(
    features: np.ndarray,
    size: tuple[int, int],
    centres: tuple[np.ndarray, np.ndarray],
    region: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> np.ndarray:
    """The placed map: features sampled at each pixel centre through their cell centres."""
    region = region or ((0.0, size[0]), (0.0, size[1]))
    rows = _sample(features, centres[0], size[0], *region[0])
    return np.moveaxis(_sample(np.moveaxis(rows, 1, 2), centres[1], size[1], *region[1]), 1, 2)


def _raw_map(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Grad-CAM of class 1, placed, times the number of feature cells (= the placed features)."""
    cam = kc.GradCAM(model, "features")
    cells = int(np.prod(cam._cam.model.outputs[0].shape[1:3]))
    return cam(images, targets=1, normalize=False) * cells


def _images(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).uniform(0.1, 1.0, shape).astype(np.float32)


# ------------------------------------------------------------------- placement itself


def test_place_maps_with_stretch_equals_tf_image_resize():
    """Offset 0 and scale H/h is bilinear resizing with half-pixel centres, so plain models
    keep their maps."""
    maps = tf.constant(_images((3, 5, 7)))
    placement = tf.constant([[0.0, 24 / 5, 0.0, 24.0], [0.0, 40 / 7, 0.0, 40.0]])
    placed = place_maps(maps, tf.constant([24, 40]), placement).numpy()
    resized = tf.image.resize(maps[..., tf.newaxis], (24, 40), method="bilinear")[..., 0]
    np.testing.assert_allclose(placed, resized.numpy(), atol=1e-6)


# ---------------------------------------------------------------- layers that move the grid


def test_center_crop_places_the_map_on_the_central_pixels():
    images = _images((2, 64, 64, 1))
    model = _probe((64, 64, 1), [layers.CenterCrop(48, 48)])
    expected = np.zeros((2, 64, 64), np.float32)
    expected[:, 8:56, 8:56] = images[:, 8:56, 8:56, 0]
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)


def test_center_crop_with_odd_margins_rounds_the_start_down():
    """Keras crops from `int((size - target) / 2)`: 7 spare rows leave 3 above, 11 spare
    columns leave 5 on the left (rounding up would shift the map by a pixel)."""
    images = _images((2, 25, 41, 1))
    model = _probe((25, 41, 1), [layers.CenterCrop(18, 30)])
    expected = np.zeros((2, 25, 41), np.float32)
    expected[:, 3:21, 5:35] = images[:, 3:21, 5:35, 0]
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)


def test_center_crop_smaller_input_crops_to_aspect_then_resizes():
    """Keras' CenterCrop resizes (smart_resize) when the input is smaller than the target."""
    images = _images((1, 24, 40, 1))
    model = _probe((24, 40, 1), [layers.CenterCrop(30, 30)])
    # smart_resize: crop 24x24 from column 8, then resize 24 -> 30: cell j at 8 + (j + .5) * .8
    centres = (np.arange(30) * 0.8 + 0.4, 8 + np.arange(30) * 0.8 + 0.4)
    expected = _expected(_features(model, images), (24, 40), centres, ((0, 24), (8, 32)))
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)


def test_cropping2d_asymmetric_on_a_non_square_input():
    images = _images((2, 24, 40, 1))
    model = _probe((24, 40, 1), [layers.Cropping2D(((3, 5), (2, 7)))])
    expected = np.zeros((2, 24, 40), np.float32)
    expected[:, 3:19, 2:33] = images[:, 3:19, 2:33, 0]
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)


def test_asymmetric_zero_padding_then_valid_convolution():
    images = _images((2, 24, 40, 1))
    model = _probe((24, 40, 1), [layers.ZeroPadding2D(((1, 4), (3, 0)))], kernel=3)
    features = _features(model, images)
    assert features.shape == (2, 27, 41)
    # Output cell j of the valid 3x3 window is centred on padded cell j + 1 = input j + 1 - pad.
    centres = (np.arange(27) + 1 - 1 + 0.5, np.arange(41) + 1 - 3 + 0.5)
    expected = _expected(features, (24, 40), centres)
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)
    # Each pixel but the last column (no window is centred there) is its own feature.
    np.testing.assert_allclose(expected[..., :39], images[..., :39, 0], atol=1e-6)


def test_valid_convolution_is_centred_on_its_windows():
    images = _images((2, 24, 40, 1))
    model = _probe((24, 40, 1), [], kernel=3, padding="valid")
    features = _features(model, images)
    centres = (np.arange(22) + 1.5, np.arange(38) + 1.5)
    expected = _expected(features, (24, 40), centres)
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)
    np.testing.assert_allclose(expected[:, 1:-1, 1:-1], images[:, 1:-1, 1:-1, 0], atol=1e-6)


@pytest.mark.parametrize("size", [(24, 40), (25, 41)])
def test_strided_same_convolution_odd_and_even_sizes(size):
    """TF's 'same' padding puts the extra pixel at the end: pad_before = total // 2."""
    images = _images((2, *size, 1))
    model = _probe((*size, 1), [], kernel=3, strides=2, padding="same")
    features = _features(model, images)
    centres = []
    for length, cells in zip(size, features.shape[1:]):
        pad_before = max((cells - 1) * 2 + 3 - length, 0) // 2
        centres.append(2 * np.arange(cells) - pad_before + 1 + 0.5)
    expected = _expected(features, size, tuple(centres))
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)


def test_dilated_strided_pooling_and_convolution_compose():
    images = _images((1, 24, 40, 1))
    model = _probe(
        (24, 40, 1),
        [layers.MaxPooling2D(3, strides=2), layers.Conv2D(1, 3, dilation_rate=2, name="dilated")],
    )
    model.get_layer("dilated").set_weights([_centre_kernel(3), np.zeros(1, np.float32)])
    features = _features(model, images)
    # pool: cell j centred at 2j + 1.5; dilated 3x3 'valid' (effective 5): centred at pool
    # cell j + 2, i.e. input 2(j + 2) + 1.5.
    centres = tuple(2 * (np.arange(n) + 2) + 1.5 for n in features.shape[1:])
    expected = _expected(features, (24, 40), centres)
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "lanczos3"])
def test_resizing_every_interpolation(interpolation):
    images = _images((1, 24, 40, 1))
    model = _probe((24, 40, 1), [layers.Resizing(12, 16, interpolation=interpolation)])
    centres = ((np.arange(12) + 0.5) * 2, (np.arange(16) + 0.5) * 2.5)
    expected = _expected(_features(model, images), (24, 40), centres)
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)


def test_resizing_crop_to_aspect_ratio():
    images = _images((1, 24, 40, 1))
    model = _probe((24, 40, 1), [layers.Resizing(16, 16, crop_to_aspect_ratio=True)])
    # The central 24x24 square (columns 8..32) is resized to 16x16: 1.5 px per cell.
    centres = ((np.arange(16) + 0.5) * 1.5, 8 + (np.arange(16) + 0.5) * 1.5)
    expected = _expected(_features(model, images), (24, 40), centres, ((0, 24), (8, 32)))
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)
    assert (expected[:, :, :8] == 0).all() and (expected[:, :, 32:] == 0).all()


def test_resizing_pad_to_aspect_ratio():
    images = _images((1, 24, 40, 1))
    model = _probe((24, 40, 1), [layers.Resizing(20, 20, pad_to_aspect_ratio=True)])
    # Padded to 40x40 (8 rows above and below), resized to 20x20: 2 px per cell from row -8.
    centres = (-8 + (np.arange(20) + 0.5) * 2, (np.arange(20) + 0.5) * 2)
    expected = _expected(_features(model, images), (24, 40), centres)
    np.testing.assert_allclose(_raw_map(model, images), expected, atol=1e-5)


def test_upsampling_places_each_pixel_on_its_own_copies():
    images = _images((1, 24, 40, 1))
    model = _probe((24, 40, 1), [layers.UpSampling2D(2)])
    np.testing.assert_allclose(_raw_map(model, images), images[..., 0], atol=1e-5)


class EveryOther(layers.Layer):
    """A layer whose grid change keras_cam cannot know."""

    def call(self, inputs):
        return inputs[:, ::2, ::2, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] // 2, input_shape[2] // 2, input_shape[3])


def test_unknown_size_changing_layer_warns_once_naming_it():
    images = _images((1, 24, 40, 1))
    model = _probe((24, 40, 1), [EveryOther(name="every_other")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = _raw_map(model, images)
    messages = [str(w.message) for w in caught if "every_other" in str(w.message)]
    assert len(messages) == 1, messages
    assert "cannot derive" in messages[0]
    # Stretched over the whole image, as before.
    features = _features(model, images)
    centres = ((np.arange(12) + 0.5) * 2, (np.arange(20) + 0.5) * 2)
    np.testing.assert_allclose(maps, _expected(features, (24, 40), centres), atol=1e-5)


MOVING_LAYERS = {
    "lambda_keras_flip": lambda: layers.Lambda(lambda t: keras.ops.flip(t, axis=2), name="mover"),
    "lambda_tf_flip_left_right": lambda: layers.Lambda(tf.image.flip_left_right, name="mover"),
    "lambda_roll": lambda: layers.Lambda(lambda t: tf.roll(t, 5, axis=1), name="mover"),
    "getitem_reversed_columns": lambda: (lambda t: t[:, :, ::-1, :]),
    "permute_height_width": lambda: layers.Permute((2, 1, 3), name="mover"),
}


@pytest.mark.parametrize("mover", list(MOVING_LAYERS))
def test_layer_that_moves_pixels_on_a_same_size_grid_warns_naming_it(mover):
    """A flip, roll or transpose keeps the grid's size; keras_cam cannot derive it from the
    sizes, so it must say so (the map, placed as if nothing moved, would be mirrored)."""
    images = _images((1, 24, 24, 1))  # square: a transpose keeps the size too
    model = _probe((24, 24, 1), [MOVING_LAYERS[mover]()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _raw_map(model, images)
    messages = [str(w.message) for w in caught if "cannot derive" in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in caught]
    assert "mover" in messages[0] or "get_item" in messages[0]


def test_pointwise_lambda_keeps_the_placement_silently():
    images = _images((2, 24, 40, 1))
    model = _probe((24, 40, 1), [layers.Lambda(lambda t: 2.0 * t + 1.0, name="affine")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = _raw_map(model, images)
    features = _features(model, images)
    centres = (np.arange(24) + 0.5, np.arange(40) + 0.5)
    np.testing.assert_allclose(maps, _expected(features, (24, 40), centres), rtol=1e-5, atol=1e-4)


def test_merge_of_branches_from_different_places_warns():
    inputs = keras.Input((24, 40, 1))
    merged = layers.Add(name="mirror_add")([inputs, keras.ops.flip(inputs, axis=2)])
    model = _probe((24, 40, 1), [])
    model = keras.Model(inputs, model(merged))
    with pytest.warns(UserWarning, match=r"'mirror_add' \(Add\) merges .* more than a cell"):
        kc.GradCAM(model, "features")


def test_merge_of_half_cell_shortcuts_is_averaged_silently():
    """A residual block's stride-2 1x1 shortcut and its 3x3 stride-2 pooling sit half a cell
    apart; the sum is placed between them, without a warning."""
    inputs = keras.Input((24, 40, 1))
    shortcut = layers.Conv2D(1, 1, strides=2, use_bias=False)(inputs)
    pooled = layers.MaxPooling2D(3, strides=2, padding="same")(inputs)
    model = _probe((12, 20, 1), [])
    model = keras.Model(inputs, model(layers.Add()([shortcut, pooled])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cam = kc.GradCAM(model, "features")
    # shortcut: cell j centred on pixel 2j (offset -0.5); pooling: 'same' with pad_before 0,
    # centred on 2j + 1 (offset 0.5); the mean: offset 0, scale 2.
    np.testing.assert_allclose(cam._cam.placement(24, 40), [[0, 2, 0, 24], [0, 2, 0, 40]])


def test_dynamic_input_size_places_per_call_size():
    """With (None, None, C) inputs the 'same' padding depends on each call's size."""
    model = _probe((None, None, 1), [], kernel=3, strides=2, padding="same")
    for size in ((24, 40), (25, 41)):
        images = _images((1, *size, 1))
        features = _features(model, images)
        centres = []
        for length, cells in zip(size, features.shape[1:]):
            pad_before = max((cells - 1) * 2 + 3 - length, 0) // 2
            centres.append(2 * np.arange(cells) - pad_before + 1.5)
        expected = _expected(features, size, tuple(centres))
        cam = kc.GradCAM(model, "features")
        cells = features.shape[1] * features.shape[2]
        np.testing.assert_allclose(
            cam(images, targets=1, normalize=False) * cells, expected, atol=1e-5
        )


def test_score_cam_masks_use_the_placement():
    """Score-CAM of the crop probe: every mask is zero outside the crop, so the masked image
    is too, and the map is zero there."""
    images = _images((1, 64, 64, 1))
    model = _probe((64, 64, 1), [layers.CenterCrop(48, 48)], kernel=3, padding="same")
    maps = kc.ScoreCAM(model, "features", verbose=0)(images, targets=1)
    assert maps.shape == (1, 64, 64)
    assert (maps[:, :8] == 0).all() and (maps[:, :, 56:] == 0).all()
    assert maps[:, 8:56, 8:56].max() == pytest.approx(1.0)


# ----------------------------------------------------------------------- channels_first


def _cf_pair() -> tuple[keras.Model, keras.Model]:
    """The same small classifier in channels-first (1, 16, 20) and channels-last layout."""
    models = []
    for layout, shape in (("channels_first", (1, 16, 20)), ("channels_last", (16, 20, 1))):
        inputs = keras.Input(shape)
        conv = layers.Conv2D(
            4, 3, padding="same", activation="relu", data_format=layout, name="conv"
        )
        x = conv(inputs)
        x = layers.GlobalAveragePooling2D(data_format=layout)(x)
        outputs = layers.Dense(3, activation="softmax", name="dense")(x)
        models.append(keras.Model(inputs, outputs))
    models[1].set_weights(models[0].get_weights())  # kernels do not depend on the layout
    return models[0], models[1]


def _hand_gradcam_cf(model: keras.Model, images: np.ndarray, target: int) -> np.ndarray:
    """Grad-CAM of a conv -> GAP -> Dense model, by hand: dlogit/dA = W[:, c] / (h * w)."""
    sub = keras.Model(model.inputs[0], model.get_layer("conv").output)
    features = np.asarray(sub(images))  # (B, K, H, W)
    kernel = model.get_layer("dense").get_weights()[0]
    weights = kernel[:, target] / (features.shape[2] * features.shape[3])
    cam = np.maximum(np.einsum("bkhw,k->bhw", features, weights), 0)
    low = cam.min(axis=(1, 2), keepdims=True)
    high = cam.max(axis=(1, 2), keepdims=True)
    return (cam - low) / np.where(high > low, high - low, 1)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "cam"])
def test_channels_first_maps_equal_the_channels_last_twin(method):
    first, last = _cf_pair()
    images = _images((3, 1, 16, 20))
    options = {"verbose": 0} if method == "scorecam" else {}
    maps = kc.get_method(method)(first, **options)(images, targets=1)
    twin = kc.get_method(method)(last, **options)(np.moveaxis(images, 1, -1), targets=1)
    assert maps.shape == (3, 16, 20)
    np.testing.assert_allclose(maps, twin, atol=1e-5)
    if method in ("gradcam", "cam"):  # both are exactly the hand-computed Grad-CAM here
        np.testing.assert_allclose(maps, _hand_gradcam_cf(first, images, 1), atol=1e-5)


def test_channels_first_checks_images_in_its_layout():
    first, _ = _cf_pair()
    cam = kc.GradCAM(first)
    assert cam(_images((1, 16, 20))).shape == (16, 20)
    with pytest.raises(ValueError, match=r"have 16 channel\(s\).*\(C, H, W\)"):
        cam(_images((2, 16, 20, 1)))


@pytest.fixture
def channels_first_config():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    yield
    keras.config.set_image_data_format(previous)


def test_global_channels_first_setting(channels_first_config):
    inputs = keras.Input((1, 16, 20))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(3, name="dense")(x))
    images = _images((2, 1, 16, 20))
    maps = kc.GradCAM(model)(images, targets=2)
    np.testing.assert_allclose(maps, _hand_gradcam_cf(model, images, 2), atol=1e-5)


def test_channels_first_metrics_and_callback(tmp_path):
    first, last = _cf_pair()
    images = _images((4, 1, 16, 20))
    maps = kc.GradCAM(first)(images)
    drop = kc.metrics.average_drop(first, images, maps).mean
    twin = kc.metrics.average_drop(last, np.moveaxis(images, 1, -1), maps).mean
    assert drop == pytest.approx(twin, rel=1e-5)
    boxes = np.tile([2, 3, 12, 10], (4, 1))
    table = kc.evaluate(
        first, images, None, boxes, methods=("gradcam",),
        metrics=("pointing_game", "average_drop"), verbose=0,
    )
    assert table.rows[0]["average_drop"] == pytest.approx(drop, rel=1e-5)

    callback = kc.HeatmapCallback(images, methods=("gradcam",), out_dir=tmp_path, boxes=boxes)
    first.compile("adam", "sparse_categorical_crossentropy")
    first.fit(images, np.zeros(4), epochs=1, verbose=0, callbacks=[callback])
    assert callback.last_maps["gradcam"].shape == (4, 16, 20)
    assert list(tmp_path.glob("*.png"))


# ----------------------------------------------------------------------- 1xN feature maps


def _gap_dense(x, classes: int = 3, activation: str | None = "softmax"):
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(classes, activation=activation)(x)


def test_signal_model_with_one_column_is_explained_automatically():
    inputs = keras.Input((60, 1, 11))
    x = layers.Conv2D(6, (5, 1), padding="same", activation="relu")(inputs)
    x = layers.Conv2D(8, (3, 1), padding="same", activation="relu", name="last_conv")(x)
    model = keras.Model(inputs, _gap_dense(x))
    images = _images((2, 60, 1, 11))
    cam = kc.CAM(model)
    for method in ("gradcam", "gradcam++", "scorecam"):
        explainer = kc.get_method(method)(model, **({"verbose": 0} if method == "scorecam" else {}))
        assert explainer.layer is cam.layer is model.get_layer("last_conv")
        assert explainer(images).shape == (2, 60, 1)
    np.testing.assert_allclose(kc.GradCAM(model)(images), cam(images), atol=1e-5)


def test_audio_model_with_a_1x64_last_map_explains_that_map(caplog):
    inputs = keras.Input((8, 64, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="early")(inputs)
    x = layers.MaxPooling2D((8, 1))(x)
    x = layers.Conv2D(6, (1, 3), padding="same", activation="relu", name="last_conv")(x)
    model = keras.Model(inputs, _gap_dense(x))
    assert kc.find_conv_layer(model).name == "last_conv"
    with caplog.at_level(logging.WARNING, logger="keras_cam"):
        cam = kc.GradCAM(model, layer="last_conv")
    assert "little" not in caplog.text
    maps = cam(_images((2, 8, 64, 1)))
    assert maps.shape == (2, 8, 64)
    # One row of features: the map is the same on every row of its 8-row window.
    np.testing.assert_allclose(maps, np.repeat(maps[:, :1], 8, axis=1), atol=1e-6)


# ------------------------------------------------------------ layers called more than once


def _tta() -> tuple[keras.Model, keras.Model]:
    """A classifier (nested conv backbone) and a test-time-augmentation model averaging its
    predictions (logits, so both explain the same score) on the image and on its flip."""
    inputs = keras.Input((24, 40, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="inner")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    inputs = keras.Input((24, 40, 3))
    outputs = _gap_dense(backbone(inputs), activation=None)
    classifier = keras.Model(inputs, outputs, name="classifier")
    inputs = keras.Input((24, 40, 3))
    flipped = keras.ops.flip(inputs, axis=2)
    outputs = layers.Average()([classifier(inputs), classifier(flipped)])
    return classifier, keras.Model(inputs, outputs, name="tta")


@pytest.mark.parametrize("layer", [None, "inner", "backbone"])
def test_tta_model_refuses_then_explains_the_chosen_call(layer):
    classifier, tta = _tta()
    listing = r"called 2 times.*call 0: .*model input.*call 1: .*'flip.*layer_call="
    with pytest.raises(ValueError, match=listing):
        kc.GradCAM(tta, layer)
    images = _images((2, 24, 40, 3))
    single = kc.GradCAM(classifier, layer)
    unflipped = kc.GradCAM(tta, layer, layer_call=0)(images, targets=1)
    np.testing.assert_allclose(unflipped, single(images, targets=1), atol=1e-5)
    flipped = kc.GradCAM(tta, layer, layer_call=1)(images, targets=1)
    mirrored = single(images[:, :, ::-1], targets=1)[:, :, ::-1]  # mapped back to the image
    np.testing.assert_allclose(flipped, mirrored, atol=1e-5)


def test_layer_call_out_of_range():
    _, tta = _tta()
    with pytest.raises(ValueError, match=r"`layer_call` must be None or an int from 0 to 1"):
        kc.GradCAM(tta, "inner", layer_call=2)


def test_conv_applied_twice_is_refused_and_each_call_can_be_chosen():
    inputs = keras.Input((24, 40, 3))
    shared = layers.Conv2D(3, 3, padding="same", activation="relu", name="shared")
    x = shared(shared(inputs))
    model = keras.Model(inputs, _gap_dense(x))
    # The twin: the two calls as two layers with the same weights.
    inputs = keras.Input((24, 40, 3))
    first = layers.Conv2D(3, 3, padding="same", activation="relu", name="first")
    second = layers.Conv2D(3, 3, padding="same", activation="relu", name="second")
    twin = keras.Model(inputs, _gap_dense(second(first(inputs))))
    head = model.layers[-1].get_weights()
    twin.set_weights([*shared.get_weights(), *shared.get_weights(), *head])
    listing = r"'shared' is called 2 times.*call 1: 'shared' called on 'shared'"
    with pytest.raises(ValueError, match=listing):
        kc.GradCAM(model, "shared")
    images = _images((2, 24, 40, 3))
    for call, name in ((0, "first"), (1, "second")):
        np.testing.assert_allclose(
            kc.GradCAM(model, "shared", layer_call=call)(images, targets=0),
            kc.GradCAM(twin, name)(images, targets=0),
            atol=1e-5,
        )


def test_channels_first_cli_explain_and_evaluate(tmp_path, capsys):
    import cv2

    from keras_cam import cli

    inputs = keras.Input((3, 16, 20))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", data_format="channels_first")(
        inputs
    )
    x = layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(x))
    model.save(tmp_path / "cf.keras")
    folder = tmp_path / "images"
    folder.mkdir()
    rgb = (_images((16, 20, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    arguments = ["--out", str(out), "--verbose", "0", "--method", "gradcam"]
    assert cli.main(["explain", str(tmp_path / "cf.keras"), str(folder / "a.png"), *arguments]) == 0
    [written] = list(out.iterdir())
    assert cv2.imread(str(written)).shape == (16, 20, 3)
    assert cli.main([
        "evaluate", str(tmp_path / "cf.keras"), str(folder), "--methods", "gradcam",
        "--metrics", "average_drop", "--verbose", "0",
    ]) == 0
    image = np.moveaxis(rgb, -1, 0)[None] / 255.0  # the default preprocessing, channels first
    expected = kc.metrics.average_drop(model, image, kc.GradCAM(model)(image)).mean
    assert f"| Grad-CAM | {expected:.1f} |" in capsys.readouterr().out


def test_cli_explain_chooses_the_call_of_a_tta_model(tmp_path, capsys):
    import cv2

    from keras_cam import cli

    _, tta = _tta()
    tta.save(tmp_path / "tta.keras")
    rgb = (_images((24, 40, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    arguments = [str(tmp_path / "tta.keras"), str(tmp_path / "a.png"), "--out", str(tmp_path)]
    assert cli.main(["explain", *arguments, "--verbose", "0"]) != 0
    assert "--layer-call" in capsys.readouterr().err  # the option, not the API's layer_call
    assert cli.main(["explain", *arguments, "--layer-call", "1", "--verbose", "0"]) == 0
    assert list(tmp_path.glob("a_gradcampp_class*.png"))  # the default method
