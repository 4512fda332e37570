"""Tests of keras_cam/targets.py: class indices of any array-like type (issue 10, kind 8), and
the target vocabulary: target objects and the one score reading (issue 11, item 3)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cam as kc
from keras_cam.targets import (
    TOP_PREDICTION,
    BinaryTarget,
    ClassTarget,
    Target,
    TopPredictionTarget,
    class_indices,
    class_scores,
    explained_classes,
    resolve_targets,
    target_scores,
)
from references import HEIGHT, WIDTH, corner_model, reference_maps
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
        (
            [object()] * 3,
            TypeError,
            r"Target object \(ClassTarget, .*or a list of them, one per image; received list of "
            r"non-numeric",
        ),
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


# ------------------------------------------------------------------ target objects
LOGITS = np.array([[0.5, -1.0, 3.0], [2.0, 4.0, -2.0]], np.float32)


class _Margin(Target):
    """Score of class `a` minus class `b`: a target that stands for no single class."""

    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = a, b

    def __call__(self, outputs):
        return outputs[:, self.a] - outputs[:, self.b]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (ClassTarget(2), [3.0, -2.0]),
        (ClassTarget(np.uint8(0)), [0.5, 2.0]),
        (TopPredictionTarget(), [3.0, 4.0]),
        (_Margin(1, 0), [-1.5, 2.0]),
    ],
    ids=["class 2", "class 0 from uint8", "top-1", "custom margin"],
)
def test_target_objects_read_their_score_from_hand_logits(target, expected):
    np.testing.assert_array_equal(np.asarray(target(tf.constant(LOGITS))), expected)


def test_binary_target_reads_the_two_class_view_of_one_unit():
    """A single logit z is read as the two classes [-z, z]: positive is +z, negative is -z."""
    z = np.array([[-1.5], [2.0]], np.float32)
    two_classes = np.concatenate([-z, z], axis=1)
    np.testing.assert_array_equal(BinaryTarget()(tf.constant(two_classes)), [-1.5, 2.0])
    np.testing.assert_array_equal(BinaryTarget(positive=False)(two_classes), [1.5, -2.0])
    np.testing.assert_array_equal(resolve_targets(BinaryTarget(), 3, 2), [1, 1, 1])
    np.testing.assert_array_equal(resolve_targets(BinaryTarget(positive=False), 2, 2), [0, 0])


def test_score_reading_by_hand():
    np.testing.assert_array_equal(explained_classes([TOP_PREDICTION, 0], LOGITS), [2, 0])
    np.testing.assert_array_equal(class_scores(LOGITS, [1, TOP_PREDICTION]), [-1.0, 4.0])
    np.testing.assert_array_equal(target_scores(LOGITS, [0, 0]), [0.5, 2.0])
    by_function = target_scores(LOGITS, [0, 0], lambda outputs: outputs[:, 1] * 2.0)
    assert by_function.dtype == tf.float32
    np.testing.assert_array_equal(by_function, [-2.0, 8.0])


def test_target_objects_resolve_to_class_indices_or_a_score_function():
    np.testing.assert_array_equal(resolve_targets(ClassTarget(2), 3, 3), [2, 2, 2])
    np.testing.assert_array_equal(resolve_targets(TopPredictionTarget(), 2, 3), [-1, -1])
    per_image = [ClassTarget(2), TopPredictionTarget(), ClassTarget(0)]
    np.testing.assert_array_equal(resolve_targets(per_image, 3, 3), [2, TOP_PREDICTION, 0])
    np.testing.assert_array_equal(resolve_targets(tuple(per_image), 3, 3), [2, -1, 0])
    margin = _Margin(1, 0)
    assert resolve_targets(margin, 3, 3) is margin


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ClassTarget(-1), ValueError, r"`ClassTarget` takes one class index >= 0; "
         r"received -1"),
        (lambda: ClassTarget([1, 2]), ValueError, r"one class index >= 0.*list of `ClassTarget`"),
        (lambda: ClassTarget(1.0), TypeError, r"`index` must hold integer class indices"),
        (lambda: ClassTarget(True), TypeError, r"`index` must be an int; received True"),
        (lambda: BinaryTarget(positive=1), TypeError, r"`positive` must be True or False"),
    ],
)
def test_bad_target_objects_are_refused_at_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        (ClassTarget(3), ValueError, r"class index 3, out of range for a model with 3 classes"),
        ([ClassTarget(0), ClassTarget(5), ClassTarget(1)], ValueError, r"class index 5, out of"),
        ([ClassTarget(0), ClassTarget(1)], ValueError, r"3 images were passed.*holds 2 targets"),
        ([ClassTarget(0), 1, ClassTarget(1)], TypeError, r"one target object .* received int"),
        (BinaryTarget(), ValueError, r"`BinaryTarget` explains a binary classifier.*3 class"),
    ],
)
def test_target_objects_that_do_not_fit_are_refused(targets, error, match):
    with pytest.raises(error, match=match):
        resolve_targets(targets, 3, 3)


def _random_corner_batch():
    model = corner_model(HEIGHT, WIDTH, positive=False)
    images = np.random.default_rng(3).random((3, HEIGHT, WIDTH, 3)).astype(np.float32)
    return model, images


@pytest.mark.parametrize("name", ["gradcam", "scorecam", "cam"])
def test_class_target_objects_give_the_maps_of_class_indices(name):
    """`targets=ClassTarget(2)` (and a list of class targets) against the slow references."""
    model, images = _random_corner_batch()
    cam = kc.get_method(name)(model)
    expected = reference_maps(name, model, images, np.array([2, 2, 2]))
    np.testing.assert_allclose(cam(images, targets=ClassTarget(2)), expected, atol=2e-4)
    np.testing.assert_array_equal(cam(images, targets=ClassTarget(2)), cam(images, targets=2))
    top = np.asarray(model(images)).argmax(axis=1)
    per_image = [ClassTarget(1), TopPredictionTarget(), ClassTarget(0)]
    classes = np.array([1, top[1], 0])
    np.testing.assert_allclose(
        cam(images, targets=per_image), reference_maps(name, model, images, classes), atol=2e-4
    )


def test_a_target_of_its_own_explains_a_score_of_its_own():
    """Grad-CAM of `logit_1 - logit_0` on conv -> GAP -> Dense: CAM with the kernel difference."""
    model = rescaling_gap_model("float32", (24, 40, 3))
    pixels = np.random.default_rng(4).integers(0, 256, (2, 24, 40, 3)).astype(np.float32)
    features = keras.Model(model.inputs[0], model.get_layer("conv").output)(pixels).numpy()
    kernel = model.get_layer("classifier").kernel.numpy().astype(np.float64)
    raw = np.maximum(np.einsum("bhwk,k->bhw", features, kernel[:, 1] - kernel[:, 0]), 0.0)
    low, high = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    expected = np.divide(raw - low, high - low, out=np.zeros_like(raw), where=high > low)
    maps = kc.GradCAM(model)(pixels, targets=_Margin(1, 0))
    np.testing.assert_allclose(maps, expected, atol=1e-4)


def test_cam_refuses_a_score_target_through_its_declared_flag():
    model = rescaling_gap_model("float32", (24, 40, 3))
    pixels = np.zeros((1, 24, 40, 3), np.float32)
    assert kc.CAM.supports_callable_targets is False and kc.GradCAM.supports_callable_targets
    match = r"CAM explains one class per image.*received a callable score \(_Margin\).*GradCAM"
    with pytest.raises(ValueError, match=match):
        kc.CAM(model)(pixels, targets=_Margin(1, 0))


def test_metrics_take_class_target_objects_and_score_targets():
    model = rescaling_gap_model("float32", (24, 40, 3))
    pixels = np.random.default_rng(1).integers(0, 256, (3, 24, 40, 3)).astype(np.float32)
    maps = np.random.default_rng(2).random((3, 24, 40)).astype(np.float32)
    y = model.predict(pixels, verbose=0)[:, 2]
    o = model.predict(pixels * maps[..., None], verbose=0)[:, 2]
    expected = 100.0 * np.maximum(0.0, y - o) / y
    for targets in (ClassTarget(2), [ClassTarget(2)] * 3):
        result = kc.metrics.average_drop(model, pixels, maps, targets)
        np.testing.assert_allclose(result.per_image, expected, rtol=1e-4)
    # A score target is read from the probabilities (issue 12): here p_1 - p_0.
    p, q = model.predict(pixels, verbose=0), model.predict(pixels * maps[..., None], verbose=0)
    y, o = p[:, 1] - p[:, 0], q[:, 1] - q[:, 0]
    expected = np.where(y > 0, 100.0 * np.maximum(0.0, y - o) / np.where(y > 0, y, 1.0), 0.0)
    result = kc.metrics.average_drop(model, pixels, maps, _Margin(1, 0))
    np.testing.assert_allclose(result.per_image, expected, rtol=1e-4, atol=1e-6)


@dataclasses.dataclass
class _MutableClassScore(Target):
    """A plain `@dataclass` target (eq=True, not frozen): unhashable, and its field may change."""

    index: int

    def __call__(self, outputs):
        return outputs[:, self.index]


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "scorecam", "fasterscorecam"])
def test_a_mutable_unhashable_target_is_explained_as_it_is_at_each_call(name):
    """An unhashable target works with every method that takes score targets, and a field (or
    a closure variable) changed between two calls of one explainer changes the map: a compiled
    pass kept from the first call would explain the old class. Against the slow references."""
    model, images = _random_corner_batch()
    cam = kc.get_method(name)(model, verbose=0)
    target = _MutableClassScore(2)
    with pytest.raises(TypeError, match="unhashable"):
        hash(target)
    for index in (2, 0):
        target.index = index
        expected = reference_maps(name, model, images, np.full(3, index))
        np.testing.assert_allclose(cam(images, targets=target), expected, atol=2e-4)
    chosen = 1

    def closure(outputs):
        return outputs[:, chosen]

    for chosen in (1, 2):  # the closure reads `chosen` when it is traced
        expected = reference_maps(name, model, images, np.full(3, chosen))
        np.testing.assert_allclose(cam(images, targets=closure), expected, atol=2e-4)
