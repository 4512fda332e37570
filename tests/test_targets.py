"""Tests of keras_cam/targets.py: class indices of any array-like type (issue 10, kind 8)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cam as kc
from keras_cam.targets import TOP_PREDICTION, class_indices, resolve_targets
from tiny_models import gap_cam_reference, rescaling_gap_model

LABELS = np.array([2, 0, 1])


def _pandas():
    return pytest.importorskip("pandas")


PER_IMAGE = {
    "list": lambda: [2, 0, 1],
    "tuple of numpy scalars": lambda: (np.int16(2), np.uint8(0), np.int64(1)),
    "numpy int8": lambda: LABELS.astype(np.int8),
    "numpy uint64": lambda: LABELS.astype(np.uint64),
    "numpy column (B, 1)": lambda: LABELS[:, np.newaxis],
    "tf int32": lambda: tf.constant(LABELS, tf.int32),
    "tf int64": lambda: tf.constant(LABELS, tf.int64),
    "tf uint8": lambda: tf.constant(LABELS, tf.uint8),
    "tf.Variable": lambda: tf.Variable(LABELS),
    "keras.ops tensor": lambda: keras.ops.convert_to_tensor(LABELS),
    "pandas Series": lambda: _pandas().Series(LABELS),
    "pandas Series uint8": lambda: _pandas().Series(LABELS.astype(np.uint8)),
}
SINGLE = {
    "int": lambda: 1,
    "numpy int16": lambda: np.int16(1),
    "numpy uint8": lambda: np.uint8(1),
    "0-d array": lambda: np.array(1),
    "0-d tensor": lambda: tf.constant(1, tf.int64),
    "tf.Variable scalar": lambda: tf.Variable(1),
}


@pytest.mark.parametrize("make", PER_IMAGE.values(), ids=PER_IMAGE.keys())
def test_one_index_per_image_from_any_integer_array_like(make):
    indices = class_indices(make())
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, LABELS)
    np.testing.assert_array_equal(resolve_targets(make(), 3, 3), LABELS)


@pytest.mark.parametrize("make", SINGLE.values(), ids=SINGLE.keys())
def test_one_index_for_all_images_from_any_integer_scalar(make):
    assert class_indices(make()).shape == ()
    np.testing.assert_array_equal(resolve_targets(make(), 4, 3), [1, 1, 1, 1])


def test_none_and_callables_pass_through():
    np.testing.assert_array_equal(resolve_targets(None, 2, 3), [TOP_PREDICTION] * 2)
    score = lambda logits: logits[:, 0]  # noqa: E731
    assert resolve_targets(score, 2, 3) is score


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        (1.0, TypeError, r"integer class indices; received dtype float64.*astype\(int\)"),
        (np.array([2.0, 0.0, 1.0]), TypeError, r"received dtype float64"),
        (tf.constant([2.0, 0.0, 1.0]), TypeError, r"received dtype float32.*tf.cast"),
        (True, TypeError, r"`targets` must be None.*received True \(bool\)"),
        (np.bool_(True), TypeError, r"`targets` must be None.*True_? \(bool\)"),
        (np.array([True, False, True]), TypeError, "received booleans"),
        ("cat", TypeError, r"`targets` must be None.*a callable.*received 'cat' \(str\)"),
        ({"a": 1}, TypeError, r"received dict of non-numeric values"),
        ([2, "a", 1], TypeError, r"integer class indices; received dtype <U"),
        (keras.Input((3,), dtype="int32"), TypeError, r"symbolic KerasTensor"),
        (np.eye(3, dtype=int)[LABELS], ValueError, r"shape \(3, 3\).*one-hot.*np.argmax"),
        (tf.constant([0, 1]), ValueError, r"one class per image: 3 images.*shape \(2,\)"),
        ([0, 1], ValueError, r"one class per image: 3 images.*shape \(2,\)"),
        (tf.constant([0, 3, 1]), ValueError, r"class index 3, out of range.*3 classes"),
        (np.array([0, -1, 1], np.int8), ValueError, r"class index -1"),
    ],
)
def test_what_is_not_class_indices_is_refused(targets, error, match):
    with pytest.raises(error, match=match):
        resolve_targets(targets, 3, 3)


def test_labels_from_a_tf_data_batch_explain_each_image_for_its_label():
    """The issue's case: `images, labels = next(iter(dataset))`, then `cam(images, labels)`."""
    model = rescaling_gap_model("float32", (24, 40, 3))
    pixels = np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((pixels, LABELS)).batch(3)
    images, labels = next(iter(dataset))
    assert labels.dtype == tf.int64
    expected = gap_cam_reference(model, pixels, LABELS)
    for method in (kc.GradCAM, kc.CAM):
        np.testing.assert_allclose(method(model)(images, targets=labels), expected, atol=1e-4)


def test_metrics_take_tensor_targets():
    model = rescaling_gap_model("float32", (24, 40, 3))
    pixels = np.random.default_rng(1).integers(0, 256, (3, 24, 40, 3)).astype(np.float32)
    maps = np.random.default_rng(2).random((3, 24, 40)).astype(np.float32)
    # Average drop by hand: 100 * max(0, Y - O) / Y, O the score of image * map.
    y = model.predict(pixels, verbose=0)[np.arange(3), LABELS]
    o = model.predict(pixels * maps[..., None], verbose=0)[np.arange(3), LABELS]
    expected = 100.0 * np.maximum(0.0, y - o) / y
    for targets in (tf.constant(LABELS), _pandas().Series(LABELS)):
        result = kc.metrics.average_drop(model, tf.constant(pixels), maps, targets)
        np.testing.assert_allclose(result.per_image, expected, rtol=1e-4)
