"""Tests of map normalization: weak maps look weak under the magnitude-preserving mode.

Answers are computed independently: an analytic GAP model whose raw CAM of class `c` is
`ReLU(W[0, c] * image[..., 0])`, and hand-written arrays for the pure function.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc
from keras_cam.methods import base
from keras_cam.visualize import plot_cams

HEIGHT, WIDTH = 24, 40
STRONG, WEAK = 100.0, 0.5  # class 0 / class 1 weight on channel 0; class 2 has none


def analytic_model() -> keras.Model:
    """Features are the image's 3 channels (1x1 identity conv, ReLU), then GAP -> Dense.

    The raw CAM of class `c` is `ReLU(sum_k W[k, c] x_k) = W[0, c] * x_0` (the other weights
    are 0), Grad-CAM's the same divided by `H * W` (the GAP's gradient).
    """
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    features = layers.Conv2D(3, 1, activation="relu", use_bias=False, name="last_conv")(inputs)
    pooled = layers.GlobalAveragePooling2D()(features)
    outputs = layers.Dense(3, activation="softmax", name="classifier")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("last_conv").set_weights([np.eye(3, dtype="float32")[None, None]])
    kernel = np.zeros((3, 3), "float32")
    kernel[0, 0], kernel[0, 1] = STRONG, WEAK
    model.get_layer("classifier").set_weights([kernel, np.zeros(3, "float32")])
    return model


def blob_image() -> np.ndarray:
    """A bright blob in channel 0 on a dim background, float32 `(HEIGHT, WIDTH, 3)`."""
    image = np.full((HEIGHT, WIDTH, 3), 0.05, "float32")
    image[6:14, 25:35, 0] = 1.0
    return image


def raw_maps(image: np.ndarray, classes: list[int]) -> np.ndarray:
    """The independent raw CAM of each class, float64 `(len(classes), H, W)`."""
    weights = np.array([STRONG, WEAK, 0.0])
    return np.stack([np.maximum(weights[c] * image[..., 0].astype(np.float64), 0) for c in classes])


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_batch_mode_keeps_a_near_zero_class_faint(method):
    model, image = analytic_model(), blob_image()
    classes = [0, 1, 2]
    probabilities = model.predict(image[None], verbose=0)[0]
    assert probabilities[0] > 0.99 and probabilities[1] < 0.01  # the weak class: p ~ 0
    cam = kc.get_method(method)(model)
    repeated = np.repeat(image[None], len(classes), axis=0)

    maps = cam(repeated, targets=classes, normalize="batch")

    raw = raw_maps(image, classes)
    np.testing.assert_allclose(maps, raw / raw.max(), atol=1e-5)
    assert maps[0].max() == pytest.approx(1.0, abs=1e-6)
    assert maps[1].max() < 0.01  # visibly weaker: the ratio of the raw maps, WEAK / STRONG
    assert not maps[2].any()  # no evidence at all: zeros, not NaN


def test_image_mode_makes_every_map_look_strong_and_none_is_raw():
    model, image = analytic_model(), blob_image()
    cam = kc.CAM(model)
    repeated = np.repeat(image[None], 2, axis=0)
    raw = raw_maps(image, [0, 1])

    per_image = cam(repeated, targets=[0, 1], normalize="image")
    unscaled = cam(repeated, targets=[0, 1], normalize="none")

    low, high = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(per_image, (raw - low) / (high - low), atol=1e-5)
    assert per_image[1].max() == pytest.approx(1.0)  # the weak class looks as strong
    np.testing.assert_allclose(unscaled, raw, rtol=1e-5)
    np.testing.assert_array_equal(cam(repeated, [0, 1], normalize=True), per_image)
    np.testing.assert_array_equal(cam(repeated, [0, 1], normalize=False), unscaled)


def test_batch_mode_compares_images_of_one_batch():
    model = analytic_model()
    bright, dim = blob_image(), blob_image() * 0.25  # the same object, a quarter of the signal
    maps = kc.GradCAM(model)(np.stack([bright, dim]), targets=0, normalize="batch")
    raw = np.stack([raw_maps(bright, [0])[0], raw_maps(dim, [0])[0]])
    np.testing.assert_allclose(maps, raw / raw.max(), atol=1e-5)
    assert maps[1].max() == pytest.approx(0.25, abs=1e-5)


def test_normalize_maps_on_hand_written_arrays():
    maps = tf.constant(
        [[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 2.0]]]
    )
    image = kc.normalize_maps(maps, "image").numpy()
    np.testing.assert_allclose(image[0], [[0.0, 0.5], [0.25, 1.0]])
    np.testing.assert_array_equal(image[1], 0.0)  # no evidence: zeros, not NaN
    np.testing.assert_allclose(image[2], [[0.0, 0.0], [0.0, 1.0]])
    batch = kc.normalize_maps(maps, "batch").numpy()
    np.testing.assert_allclose(batch, maps.numpy() / 4.0)  # one scale, zero stays zero
    np.testing.assert_array_equal(kc.normalize_maps(maps, "none").numpy(), maps.numpy())
    empty = kc.normalize_maps(tf.zeros((2, 3, 5)), "batch").numpy()
    assert np.isfinite(empty).all() and not empty.any()


@pytest.mark.parametrize("bad", ["max", "Batch", 1, None, 0.5])
def test_unknown_normalize_is_refused(bad):
    cam = kc.GradCAM(analytic_model())
    with pytest.raises(ValueError, match=r"`normalize` must be True .*'batch'.*received"):
        cam(blob_image(), normalize=bad)
    with pytest.raises(ValueError, match="`normalize` must be"):
        kc.HeatmapCallback(blob_image(), out_dir="unused", normalize=bad)


def test_modes_are_compiled_once():
    cam = kc.GradCAM(analytic_model())  # placement and normalization inside its own pass
    scorecam = kc.ScoreCAM(analytic_model())  # its raw maps, then the shared postprocess
    images = np.stack([blob_image()] * 3)
    for mode in base.NORMALIZE_MODES:
        for count in (1, 2, 3):  # several batch sizes: one trace per mode
            cam(images[:count], normalize=mode)
            scorecam(images[:count], normalize=mode)
        assert base._POSTPROCESS[2, True, mode].experimental_get_tracing_count() == 1
    # one concrete (non-retracing) pass per mode
    assert set(cam._passes) == {(True, mode, False, False) for mode in base.NORMALIZE_MODES}


def test_plot_cams_labels_the_explained_class_with_its_probability():
    model, image = analytic_model(), blob_image()
    batch = np.repeat(image[None], 2, axis=0)
    maps = kc.CAM(model)(batch, targets=[0, 1], normalize="batch")
    probabilities = model.predict(batch, verbose=0)
    names = ("blob", "faint", "none")
    figure = plot_cams(batch, {"CAM": maps}, class_names=names, predictions=[0, 0],
                       explained=[0, 1], probabilities=probabilities)
    first, second = (figure.axes[i * 2].get_ylabel() for i in range(2))
    assert f"pred: blob ({probabilities[0, 0]:.2f})" in first
    assert f"cam: blob ({probabilities[0, 0]:.2f})" in first
    assert f"cam: faint ({probabilities[1, 1]:.2f})" in second and "(0.00)" in second
    with pytest.raises(ValueError, match=r"`probabilities` must be \(2, num_classes\)"):
        plot_cams(batch, {"CAM": maps}, predictions=[0, 0], probabilities=probabilities[0])


def _hot_pixels(path) -> int:
    """Pixels of an overlay PNG in the red end of the jet colormap (captions are not red)."""
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(int)
    return int(((rgb[..., 0] > 100) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)).sum())


def test_cli_explain_normalize_batch_keeps_the_weak_class_faint(tmp_path, capsys):
    import cv2

    from keras_cam import cli

    model_path, image_path = tmp_path / "analytic.keras", tmp_path / "blob.png"
    analytic_model().save(model_path)
    cv2.imwrite(str(image_path), cv2.cvtColor(np.uint8(blob_image() * 255), cv2.COLOR_RGB2BGR))
    hot = {}
    for mode in ("image", "batch"):
        out = tmp_path / mode
        status = cli.main(["explain", str(model_path), str(image_path), "--method", "cam",
                           "--top", "2", "--normalize", mode, "--alpha", "1", "--no-caption",
                           "--out", str(out)])
        assert status == 0
        hot[mode] = {c: _hot_pixels(out / f"blob_cam_class{c}.png") for c in (0, 1)}
    capsys.readouterr()
    assert hot["image"][0] > 0 and hot["batch"][0] > 0  # the top class: a hot blob
    assert hot["image"][1] > 0  # per image, the p ~ 0 class looks just as hot
    assert hot["batch"][1] == 0  # one scale for the image's classes: it stays cold


@pytest.mark.parametrize("method", ["cam", "gradcam"])
@pytest.mark.parametrize("per_pass", [1, 2, 32])
def test_batch_mode_is_one_scale_across_compiled_chunks(method, per_pass):
    """A call larger than one compiled pass (`images_per_pass`) still gets one scale for the
    whole call: the independent raw maps over their common maximum, whatever the chunking."""
    model, image = analytic_model(), blob_image()
    classes = [1, 0, 2, 1, 0]  # the strongest map sits in the second chunk for per_pass=1
    cam = kc.get_method(method)(model)
    cam.images_per_pass = per_pass
    repeated = np.repeat(image[None], len(classes), axis=0)

    batch = cam(repeated, targets=classes, normalize="batch")
    per_image = cam(repeated, targets=classes, normalize="image")

    raw = raw_maps(image, classes)
    np.testing.assert_allclose(batch, raw / raw.max(), atol=1e-5)
    low = raw.min(axis=(1, 2), keepdims=True)
    span = raw.max(axis=(1, 2), keepdims=True) - low
    expected = np.divide(raw - low, span, out=np.zeros_like(raw), where=span > 0)
    np.testing.assert_allclose(per_image, expected, atol=1e-5)
    assert not per_image[2].any() and not batch[2].any()  # class 2: no evidence, zeros
