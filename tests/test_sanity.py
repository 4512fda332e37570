"""Sanity checks (Adebayo et al., 2018): randomisation on a copy, Spearman and SSIM, baselines."""

import numpy as np
import pytest

import keras_cam as kc
from keras_cam import datasets, sanity
from keras_cam.demo_model import train_demo_model

HEIGHT, WIDTH = 24, 40


@pytest.fixture(scope="module")
def trained():
    """The demo CNN (conv + batch norm, GAP head) trained briefly on 32x32 shapes."""
    model, _ = train_demo_model(epochs=3, n_train=768, image_size=32)
    images, labels, _ = datasets.shapes(16, 32, seed=1)
    accuracy = (model.predict(images, verbose=0).argmax(-1) == labels).mean()
    assert accuracy >= 0.7  # the checks below need a model that learned something
    return model, images


def edge_detector(model, images, classes):
    """A map of the image alone (gradient magnitude), whatever the model: fails the check."""
    gray = images.mean(axis=-1)
    rows = np.abs(np.diff(gray, axis=1, append=gray[:, -1:]))
    columns = np.abs(np.diff(gray, axis=2, append=gray[:, :, -1:]))
    edges = rows + columns
    return edges / edges.max(axis=(1, 2), keepdims=True)


def test_gradcam_changes_under_cascading_randomisation_the_edge_detector_does_not(trained):
    model, images = trained
    weights = [w.copy() for w in model.get_weights()]
    gradcam = sanity.model_parameter_randomisation(model, images, "gradcam")
    with pytest.warns(UserWarning, match="'edge_detector' barely change"):
        edges = sanity.model_parameter_randomisation(model, images, edge_detector)
    # Top down: the classifier, then each batch normalization and convolution.
    assert gradcam.layers == (
        "classifier", "last_conv_bn", "last_conv", "conv3_bn", "conv3", "conv2_bn", "conv2",
        "conv1_bn", "conv1",
    )
    assert gradcam.spearman.shape == gradcam.ssim.shape == (9, len(images))
    np.testing.assert_allclose(edges.spearman, 1.0)
    np.testing.assert_allclose(edges.ssim, 1.0, atol=1e-6)
    assert edges.flagged and not gradcam.flagged
    assert gradcam.final_spearman < 0.5 < edges.final_spearman
    assert gradcam.ssim[-1].mean() < 0.5
    for before, after in zip(weights, model.get_weights()):  # the user's model is untouched
        np.testing.assert_array_equal(before, after)


def test_layer_mode_randomises_the_explained_layer_alone(trained):
    model, images = trained
    result = sanity.model_parameter_randomisation(model, images, kc.GradCAM, mode="layer")
    # The explained layer is the last ReLU; the nearest weighted layer below it is randomised.
    assert kc.GradCAM(model).layer.name == "last_conv_relu"
    assert result.layers == ("last_conv_bn",)
    assert result.spearman.shape == (1, len(images))
    assert (result.spearman < 1.0).all()  # the statistics of one batch norm: a small change


def test_randomisation_metric_is_the_last_cascading_step(trained):
    model, images = trained
    maps = kc.GradCAM(model)(images)
    metric = sanity.randomisation(model, images, maps, method="gradcam")
    cascade = sanity.model_parameter_randomisation(model, images, "gradcam")
    assert metric.name == "randomisation" and not metric.higher_is_better
    # Same permutations in the same layer order: the same fully random model.
    np.testing.assert_allclose(metric.per_image, cascade.spearman[-1], atol=1e-6)
    gaussian = sanity.randomisation(
        model, images, sanity.centred_gaussian_maps(maps.shape), method=sanity.gaussian_explain
    )
    np.testing.assert_allclose(gaussian.per_image, 1.0)


def reference_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of average ranks, the ranks counted by brute force."""
    def ranks(values):
        return np.array([(values < v).sum() + ((values == v).sum() + 1) / 2 for v in values])
    ra, rb = ranks(a.ravel()), ranks(b.ravel())
    return float(np.corrcoef(ra, rb)[0, 1])


def test_spearman_matches_a_brute_force_rank_correlation_with_ties():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, (3, 6, 10)).astype(np.float32)  # many ties
    b = a + rng.normal(0, 1.0, a.shape)
    values = sanity.spearman(a, b)
    for index in range(3):
        assert values[index] == pytest.approx(reference_spearman(a[index], b[index]), abs=1e-12)
    np.testing.assert_allclose(sanity.spearman(a, a), 1.0)
    np.testing.assert_allclose(sanity.spearman(a, -a), -1.0)


def test_spearman_of_constant_maps():
    ramp = np.broadcast_to(np.arange(WIDTH, dtype=np.float32), (1, HEIGHT, WIDTH))
    zeros = np.zeros_like(ramp)
    assert sanity.spearman(ramp, zeros)[0] == 0.0  # no order left to share
    assert sanity.spearman(zeros, zeros)[0] == 1.0  # nothing changed


def test_ssim_is_one_for_equal_maps_and_lower_for_different_ones():
    rng = np.random.default_rng(4)
    maps = rng.random((2, HEIGHT, WIDTH), dtype=np.float32)
    np.testing.assert_allclose(sanity.ssim(maps, maps), 1.0, atol=1e-6)
    assert (sanity.ssim(maps, maps[:, ::-1]) < 0.2).all()
    with pytest.raises(ValueError, match=r"`maps` must have shape"):
        sanity.ssim(maps, maps[:1])


def test_baselines():
    gaussian = sanity.centred_gaussian_maps((2, HEIGHT, WIDTH))
    assert gaussian.shape == (2, HEIGHT, WIDTH) and gaussian.max() == 1.0
    # Symmetric about the centre, falling off by exp(-1/2) one sigma away.
    np.testing.assert_allclose(gaussian[0], gaussian[0, ::-1, ::-1], atol=1e-6)
    sigma_rows = sanity.GAUSSIAN_SIGMA * HEIGHT
    centre, off = gaussian[0, HEIGHT // 2, WIDTH // 2], gaussian[0, HEIGHT // 2 + 6, WIDTH // 2]
    expected = np.exp(-0.5 * ((6.5 / sigma_rows) ** 2 - (0.5 / sigma_rows) ** 2))
    assert off / centre == pytest.approx(expected, rel=1e-5)
    noise = sanity.random_maps((2, HEIGHT, WIDTH), seed=1)
    assert 0.0 <= noise.min() and noise.max() < 1.0
    np.testing.assert_array_equal(noise, sanity.random_maps((2, HEIGHT, WIDTH), seed=1))


def test_arguments_are_checked(trained):
    model, images = trained
    with pytest.raises(ValueError, match=r"`mode` must be one of"):
        sanity.model_parameter_randomisation(model, images, mode="top")
    with pytest.raises(ValueError, match=r"`mode='layer'` randomises the explained layer"):
        sanity.model_parameter_randomisation(model, images, edge_detector, mode="layer")
    with pytest.raises(TypeError, match=r"`method` must be a method name"):
        sanity.model_parameter_randomisation(model, images, 3)
    with pytest.raises(ValueError, match=r"`method_options` are constructor arguments"):
        sanity.randomisation(
            model, images, np.zeros(images.shape[:3]), method=edge_detector,
            method_options={"layer": "x"},
        )
