"""Tests of the targets for every output kind (issue 12, item 3): multi-label, regression,
segmentation and embedding similarity, with gradient methods, Score-CAM and the metrics.

The expected maps are computed here by hand (analytic models whose gradients are known) or by
the slow references of `references.py`; keras_cam's output is never the expected value.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc
from keras_cam.targets import (
    MultiLabelTarget,
    RegressionTarget,
    SegmentationTarget,
    SimilarityTarget,
    resolve_targets,
)
from references import (
    HEIGHT,
    WIDTH,
    corner_model,
    feature_model,
    reference_gradient_maps,
    reference_maps,
    reference_score_maps,
    upsample_and_normalize,
)


def _minmax(values: np.ndarray) -> np.ndarray:
    low = values.min(axis=(-2, -1), keepdims=True)
    span = values.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 0.0)


# ------------------------------------------------------------------------------ segmentation
# Class k's logit at pixel p is the sum of input channel k over the 3x3 window around p:
# the features are the input itself (an identity 1x1 conv + ReLU), the head a fixed 3x3 conv.
REGION = (slice(4, 10), slice(26, 34))  # rows, columns of region R (top right)
OTHER = (slice(14, 20), slice(4, 12))  # a second region (bottom left)


def _segmentation_model(classes: int = 2) -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, classes))
    features = layers.Conv2D(classes, 1, activation="relu", use_bias=False, name="features")
    head = layers.Conv2D(classes, 3, padding="same", use_bias=False, name="logits")
    outputs = layers.Softmax(name="per_pixel")(head(features(inputs)))
    model = keras.Model(inputs, outputs, name="fcn")
    features.set_weights([np.eye(classes, dtype=np.float32)[np.newaxis, np.newaxis]])
    kernel = np.zeros((3, 3, classes, classes), np.float32)
    for k in range(classes):
        kernel[:, :, k, k] = 1.0
    head.set_weights([kernel])
    return model


def _region(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[rows, cols] = True
    return mask


def _two_blob_images(second_class: int) -> np.ndarray:
    """Class-1 evidence (channel 1) in R; evidence of `second_class` in the other region."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 0.05, (2, HEIGHT, WIDTH, 2)).astype(np.float32)
    images[:, REGION[0], REGION[1], 1] = 1.0
    images[:, OTHER[0], OTHER[1], second_class] = 1.0
    return images


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "scorecam"])
def test_the_map_of_a_class_inside_a_region_peaks_in_that_region(method):
    """Class 1 evidence sits in R, class 0 evidence elsewhere: "class 1 in R" peaks in R and
    "class 0 in the other region" peaks there, for gradient methods and Score-CAM."""
    model = _segmentation_model()
    images = _two_blob_images(second_class=0)
    cam = kc.get_method(method)(model, layer="features", **(
        {"verbose": 0} if method == "scorecam" else {}))
    for category, (rows, cols) in ((1, REGION), (0, OTHER)):
        maps = cam(images, targets=SegmentationTarget(category, _region(rows, cols)))
        for heatmap in maps:
            y, x = np.unravel_index(heatmap.argmax(), heatmap.shape)
            assert rows.start <= y < rows.stop and cols.start <= x < cols.stop


def test_segmentation_grad_cam_is_the_hand_computed_map():
    """The gradient of `sum_R logit_1` w.r.t. the identity features is 0 on channel 0 and a
    positive count on channel 1, so Grad-CAM's map is min-max(channel 1 of the input); a
    per-pixel-weighting method (HiResCAM) keeps only the pixels whose window meets R."""
    model = _segmentation_model()
    images = _two_blob_images(second_class=1)  # class 1 evidence inside and outside R
    target = SegmentationTarget(1, _region(*REGION))
    maps = kc.GradCAM(model, layer="features")(images, targets=target)
    np.testing.assert_allclose(maps, _minmax(images[..., 1]), atol=1e-5)
    window = np.zeros((HEIGHT, WIDTH), np.float64)  # how many R pixels see each pixel
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            window += np.roll(_region(*REGION), (dy, dx), axis=(0, 1))
    expected = _minmax(images[..., 1] * window)
    hires = kc.HiResCAM(model, layer="features")(images, targets=target)
    np.testing.assert_allclose(hires, expected, atol=1e-5)
    per_image = SegmentationTarget(1, np.stack([_region(*REGION), _region(*OTHER)]))
    both = kc.HiResCAM(model, layer="features")(images, targets=per_image)
    np.testing.assert_allclose(both[0], expected[0], atol=1e-5)
    y, x = np.unravel_index(both[1].argmax(), both[1].shape)
    assert OTHER[0].start <= y < OTHER[0].stop and OTHER[1].start <= x < OTHER[1].stop


def test_segmentation_targets_that_do_not_fit_the_output_are_refused():
    model = _segmentation_model()
    images = _two_blob_images(0)
    cam = kc.GradCAM(model, layer="features")
    with pytest.raises(ValueError, match=r"mask has shape \(12, 20\), but the output's maps "
                                         r"are 24x40.*\(24, 40\)"):
        cam(images, targets=SegmentationTarget(1, np.ones((12, 20), bool)))
    with pytest.raises(ValueError, match=r"mask holds 3 regions.*2 images were passed"):
        cam(images, targets=SegmentationTarget(1, np.ones((3, HEIGHT, WIDTH), bool)))
    with pytest.raises(ValueError, match=r"reads class 2, but the output has 2 classes"):
        cam(images, targets=SegmentationTarget(2, np.ones((HEIGHT, WIDTH), bool)))
    with pytest.raises(ValueError, match=r"one score per position.*SegmentationTarget"):
        cam(images)
    with pytest.raises(ValueError, match=r"one score per position"):
        cam(images, targets=1)
    with pytest.raises(ValueError, match=r"`mask` must be a bool or numeric region"):
        SegmentationTarget(0, np.ones(5))
    classifier = corner_model()
    with pytest.raises(ValueError, match=r"reads a segmentation output.*shape \(None, 3\)"):
        kc.GradCAM(classifier)(np.zeros((1, HEIGHT, WIDTH, 3)),
                               targets=SegmentationTarget(0, np.ones((HEIGHT, WIDTH))))


# -------------------------------------------------------------------------------- regression
def _regression_models() -> tuple[keras.Model, keras.Model]:
    """`y` (conv -> GAP -> Dense(1)) and `-y` (the same layers, a Dense with negated weights)."""
    model = corner_model(classes=3, positive=False)
    trunk = keras.Model(model.inputs[0], model.get_layer("gap").output)
    dense = layers.Dense(1, name="y")
    y = keras.Model(model.inputs[0], dense(trunk.output), name="y_model")
    negated = layers.Dense(1, name="minus_y")
    minus_y = keras.Model(model.inputs[0], negated(trunk.output), name="minus_y_model")
    kernel, bias = dense.get_weights()
    negated.set_weights([-kernel, -bias])
    return y, minus_y


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_raise_and_lower_give_the_maps_of_y_and_minus_y(method):
    y, minus_y = _regression_models()
    images = np.random.default_rng(2).random((3, HEIGHT, WIDTH, 3)).astype(np.float32)
    options = {"verbose": 0} if method == "scorecam" else {}
    cam = kc.get_method(method)(y, **options)
    plain = kc.get_method(method)(y, **options)(images)
    negative = kc.get_method(method)(minus_y, **options)(images)
    raised = cam(images, targets=RegressionTarget())
    lowered = cam(images, targets=RegressionTarget(0, direction="lower"))
    np.testing.assert_allclose(raised, plain, atol=1e-5)
    np.testing.assert_allclose(lowered, negative, atol=1e-5)
    assert np.abs(raised - lowered).max() > 0.1  # the two directions differ
    if method == "gradcam":
        features_of = feature_model(y)
        dense = y.get_layer("y")
        kernel, bias = (tf.constant(w) for w in dense.get_weights())

        def minus(features):
            return -(tf.reduce_mean(features, axis=(1, 2)) @ kernel + bias)

        expected = reference_gradient_maps(features_of, minus, images, np.zeros(3, int))
        np.testing.assert_allclose(lowered, expected, atol=2e-4)


def test_regression_and_similarity_targets_need_a_raw_output():
    model = corner_model()
    images = np.zeros((1, HEIGHT, WIDTH, 3), np.float32)
    with pytest.raises(ValueError, match=r"`RegressionTarget` reads the model's raw output.*"
                                         r"head='softmax'.*Pass `head='linear'`"):
        kc.GradCAM(model)(images, targets=RegressionTarget())
    with pytest.raises(ValueError, match=r"reads output unit 3, but the explained output has 3"):
        kc.GradCAM(model, head="linear")(images, targets=RegressionTarget(3))
    with pytest.raises(ValueError, match=r"`direction` must be one of \('raise', 'lower'\)"):
        RegressionTarget(direction="up")
    with pytest.raises(ValueError, match=r"`SimilarityTarget` reads the model's raw output"):
        kc.GradCAM(model)(images, targets=SimilarityTarget(np.ones(3)))


# -------------------------------------------------------------------------------- similarity
def _embedding_model(dims: int = 5) -> keras.Model:
    model = corner_model(classes=3, positive=False)
    embedding = layers.Dense(dims, name="embedding")(model.get_layer("gap").output)
    return keras.Model(model.inputs[0], embedding, name="embedder")


def _cosine_gradcam(model: keras.Model, images: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Grad-CAM of the cosine similarity, with the gradient written out by hand:
    e = W^T mean(A) + b, dS/de = r / (|e||r|) - (e.r) e / (|e|^3 |r|), dS/dA_ij = W dS/de / hw."""
    features = np.asarray(feature_model(model)(images), np.float64)
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("embedding").get_weights())
    e = features.mean(axis=(1, 2)) @ kernel + bias
    norm_e = np.linalg.norm(e, axis=1, keepdims=True)
    norm_r = np.linalg.norm(references, axis=1, keepdims=True)
    dot = (e * references).sum(axis=1, keepdims=True)
    d_e = references / (norm_e * norm_r) - dot * e / (norm_e**3 * norm_r)
    weights = d_e @ kernel.T / (features.shape[1] * features.shape[2])  # mean of dS/dA
    raw = np.maximum(np.einsum("bhwk,bk->bhw", features, weights), 0.0)
    return upsample_and_normalize(raw, images.shape[1:3])


def test_similarity_target_is_the_hand_computed_gradient_of_the_cosine():
    model = _embedding_model()
    rng = np.random.default_rng(5)
    images = rng.random((3, HEIGHT, WIDTH, 3)).astype(np.float32)
    references = rng.normal(size=(3, 5))
    cam = kc.GradCAM(model, head="linear")
    expected = _cosine_gradcam(model, images, references)
    one_each = cam(images, targets=SimilarityTarget(references))
    np.testing.assert_allclose(one_each, expected, atol=2e-4)
    as_list = cam(images, targets=[SimilarityTarget(r) for r in references])
    np.testing.assert_allclose(as_list, expected, atol=2e-4)
    shared = cam(images, targets=SimilarityTarget(references[0]))
    np.testing.assert_allclose(
        shared, _cosine_gradcam(model, images, np.repeat(references[:1], 3, axis=0)), atol=2e-4
    )
    with pytest.raises(ValueError, match=r"reference has 4 dimensions, but the explained "
                                         r"output has shape \(batch, 5\)"):
        cam(images, targets=SimilarityTarget(np.ones(4)))
    with pytest.raises(ValueError, match=r"reference holds 2 embeddings, but 3 images"):
        cam(images, targets=SimilarityTarget(np.ones((2, 5))))


def test_score_cam_scores_the_masked_copies_with_each_image_s_similarity():
    """Score-CAM with one reference per image, against the slow Score-CAM loop scoring the
    cosine similarity of each masked copy to its image's reference."""
    model = _embedding_model()
    rng = np.random.default_rng(6)
    images = rng.random((2, HEIGHT, WIDTH, 3)).astype(np.float32)
    references = rng.normal(size=(2, 5))
    maps = kc.ScoreCAM(model, head="linear", verbose=0)(
        images, targets=SimilarityTarget(references)
    )
    features = np.asarray(feature_model(model)(images), np.float32)
    for i in range(2):

        def cosine(x, training=False, r=references[i]):
            e = np.asarray(model(x, training=training), np.float64)
            return (e @ r / (np.linalg.norm(e, axis=1) * np.linalg.norm(r)))[:, np.newaxis]

        expected = reference_score_maps(cosine, features[i : i + 1], images[i : i + 1], [0])
        np.testing.assert_allclose(maps[i], expected[0], atol=2e-4)


# ------------------------------------------------------------------------------- multi-label
def _multilabel_model() -> keras.Model:
    model = corner_model(classes=4, positive=False)
    model.get_layer("classifier").activation = keras.activations.sigmoid
    return model


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_a_sigmoid_unit_is_explained_through_its_pre_sigmoid_logit(method):
    """Grad-CAM differentiates unit k's logit (the reference's `gap_head` is pre-activation);
    Score-CAM scores unit k's sigmoid probability."""
    model = _multilabel_model()
    images = np.random.default_rng(7).random((2, HEIGHT, WIDTH, 3)).astype(np.float32)
    options = {"verbose": 0} if method == "scorecam" else {}
    maps = kc.get_method(method)(model, **options)(images, targets=MultiLabelTarget(2))
    expected = reference_maps(method, model, images, np.array([2, 2]))
    np.testing.assert_allclose(maps, expected, atol=2e-4)
    with pytest.raises(ValueError, match=r"`MultiLabelTarget` explains one of several sigmoid "
                                         r"units.*head='softmax' with 3 unit"):
        kc.get_method(method)(corner_model(), **options)(images, targets=MultiLabelTarget(0))


def test_lists_of_target_objects_one_per_image_mix_kinds():
    """A list of target objects that are not all class targets scores each image with its own
    target; a class target in it reads its class."""
    model = corner_model(positive=False)
    model.get_layer("classifier").activation = keras.activations.linear  # raw scores
    images = np.random.default_rng(8).random((2, HEIGHT, WIDTH, 3)).astype(np.float32)
    resolved = resolve_targets([kc.ClassTarget(1), RegressionTarget(2)], 2, 3)
    assert isinstance(resolved, kc.targets.TargetList)
    maps = kc.GradCAM(model, head="linear")(
        images, targets=[kc.ClassTarget(1), RegressionTarget(2, "lower")]
    )
    np.testing.assert_allclose(maps[0], reference_maps("gradcam", model, images[:1], [1])[0],
                               atol=2e-4)
    features_of = feature_model(model)
    kernel, bias = (tf.constant(w) for w in model.get_layer("classifier").get_weights())
    lowered = reference_gradient_maps(
        features_of,
        lambda f: -(tf.reduce_mean(f, axis=(1, 2)) @ kernel + bias),
        images[1:],
        [2],
    )
    np.testing.assert_allclose(maps[1], lowered[0], atol=2e-4)


# ---------------------------------------------------------------------------------- metrics
def test_faithfulness_metrics_score_the_target_s_score():
    """Average drop of "class 1 in R" on the segmentation model: `Y` and `O` are the summed
    class-1 probabilities over R of the image and of `image * map`, computed here."""
    model = _segmentation_model()
    images = _two_blob_images(second_class=0)
    target = SegmentationTarget(1, _region(*REGION))
    maps = np.random.default_rng(9).random((2, HEIGHT, WIDTH)).astype(np.float32)

    def region_score(x):
        return (np.asarray(model(x))[..., 1] * _region(*REGION)).sum(axis=(1, 2))

    y, o = region_score(images), region_score(images * maps[..., np.newaxis])
    expected = 100.0 * np.maximum(0.0, y - o) / y
    result = kc.metrics.average_drop(model, images, maps, target)
    np.testing.assert_allclose(result.per_image, expected, rtol=1e-4)
    curve = kc.metrics.deletion(model, images, maps, target, steps=4)
    assert curve.curve.shape == (2, 5)
    np.testing.assert_allclose(curve.curve[:, 0], y, rtol=1e-4)
