"""ROAD: noisy linear imputation against a dense solve, and an analytic region-mean model."""

import math

import keras
import numpy as np
import pytest

from keras_cam import metrics
from keras_cam.imputation import NEIGHBOUR_WEIGHTS, linear_imputation, noisy_linear_imputation

HEIGHT, WIDTH = 24, 40
REGION = (8, 4, 20, 10)  # (x0, y0, x1, y1): 12 x 6 = 72 pixels, 7.5 % of the image
GAIN, BIAS = 10.0, -5.0


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def region_indicator() -> np.ndarray:
    x0, y0, x1, y1 = REGION
    region = np.zeros((HEIGHT, WIDTH), np.float32)
    region[y0:y1, x0:x1] = 1.0
    return region


def region_model() -> keras.Model:
    """logit_1 = GAIN * mean(image over REGION) + BIAS, logit_0 = 0, then softmax."""
    inputs = keras.Input((HEIGHT, WIDTH, 1))
    dense = keras.layers.Dense(2)
    outputs = keras.layers.Softmax()(dense(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((HEIGHT * WIDTH, 2), np.float32)
    kernel[:, 1] = GAIN * region_indicator().ravel() / region_indicator().sum()
    dense.set_weights([kernel, np.array([0.0, BIAS], np.float32)])
    return keras.Model(inputs, outputs)


def dense_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The linear system written out pixel by pixel and solved by `np.linalg.solve`."""
    height, width, _ = image.shape
    unknown = np.flatnonzero(removed.ravel())
    position = {pixel: index for index, pixel in enumerate(unknown)}
    matrix = np.zeros((len(unknown), len(unknown)))
    rhs = np.zeros((len(unknown), image.shape[-1]))
    for row, pixel in enumerate(unknown):
        y, x = divmod(int(pixel), width)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                weight = NEIGHBOUR_WEIGHTS[dy + 1, dx + 1]
                if weight == 0 or not (0 <= y + dy < height and 0 <= x + dx < width):
                    continue
                matrix[row, row] += weight
                if removed[y + dy, x + dx]:
                    matrix[row, position[(y + dy) * width + x + dx]] -= weight
                else:
                    rhs[row] += weight * image[y + dy, x + dx]
    filled = image.astype(np.float64).reshape(-1, image.shape[-1])
    filled[unknown] = np.linalg.solve(matrix, rhs)
    return filled.reshape(image.shape)


def test_a_lone_pixel_is_the_weighted_mean_of_its_neighbours():
    rng = np.random.default_rng(0)
    images = rng.random((1, HEIGHT, WIDTH, 2), dtype=np.float32)
    removed = np.zeros((1, HEIGHT, WIDTH), bool)
    removed[0, 5, 7] = True
    filled = noisy_linear_imputation(images, removed, noise=0.0)
    patch = images[0, 4:7, 6:9].astype(np.float64)
    # Direct neighbours weigh 1/6, diagonal ones 1/12 (Rong et al.): they sum to 1.
    expected = np.tensordot(NEIGHBOUR_WEIGHTS, patch, axes=([0, 1], [0, 1]))
    np.testing.assert_allclose(filled[0, 5, 7], expected, atol=1e-6)
    kept = ~removed[0]
    np.testing.assert_array_equal(filled[0][kept], images[0][kept])


def test_a_corner_pixel_averages_the_neighbours_inside_the_image():
    images = np.zeros((1, HEIGHT, WIDTH, 1), np.float32)
    images[0, 0, 1], images[0, 1, 0], images[0, 1, 1] = 3.0, 6.0, 12.0
    removed = np.zeros((1, HEIGHT, WIDTH), bool)
    removed[0, 0, 0] = True
    expected = (3.0 / 6 + 6.0 / 6 + 12.0 / 12) / (1 / 6 + 1 / 6 + 1 / 12)
    assert linear_imputation(images, removed)[0, 0, 0, 0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("share", [0.3, 0.9])
def test_imputation_solves_the_linear_system(share):
    rng = np.random.default_rng(1)
    images = rng.random((2, HEIGHT, WIDTH, 3), dtype=np.float32)
    removed = rng.random((2, HEIGHT, WIDTH)) < share
    filled = linear_imputation(images, removed)
    for index in range(2):
        np.testing.assert_allclose(
            filled[index], dense_imputation(images[index], removed[index]), atol=1e-4
        )


def test_noise_is_added_to_the_removed_pixels_only():
    images = np.full((1, HEIGHT, WIDTH, 1), 0.5, np.float32)
    removed = np.zeros((1, HEIGHT, WIDTH), bool)
    removed[0, 2:22, 5:35] = True
    filled = noisy_linear_imputation(images, removed, noise=0.1, seed=3)
    deviation = filled[0, ..., 0][removed[0]] - 0.5  # the imputation of a constant is 0.5
    assert deviation.std() == pytest.approx(0.1, rel=0.1)
    np.testing.assert_array_equal(filled[0, ..., 0][~removed[0]], 0.5)


def test_morf_drops_at_the_percentile_covering_the_region_lerf_does_not():
    model = region_model()
    image = region_indicator()[np.newaxis, ..., np.newaxis]  # 1 in the region, 0 outside
    region_map = region_indicator()[np.newaxis]
    percentiles = (2.5, 5.0, 7.5, 10.0, 50.0, 90.0)  # 24, 48, 72 (= the region), 96, ... pixels
    morf, lerf = metrics.road_curves(
        model, image, region_map, targets=1, percentiles=percentiles, noise=0.0
    )
    full, empty = sigmoid(GAIN + BIAS), sigmoid(BIAS)
    # Partly removed (the region's first rows, ties in raster order): the dense solve's mean.
    for column, count in ((0, 24), (1, 48)):
        removed = (np.arange(HEIGHT * WIDTH) < 0).reshape(HEIGHT, WIDTH)
        region_pixels = np.flatnonzero(region_indicator().ravel())[:count]
        removed.ravel()[region_pixels] = True
        mean = dense_imputation(image[0], removed)[..., 0][region_indicator() > 0].mean()
        assert morf.curve[0, column] == pytest.approx(sigmoid(GAIN * mean + BIAS), abs=1e-5)
        assert morf.curve[0, column] > empty + 0.1
    # Covered: every neighbour outside the region is 0, so the region imputes to 0.
    np.testing.assert_allclose(morf.curve[0, 2:], empty, atol=1e-6)
    # Least relevant first removes outside pixels only: the region's mean is untouched.
    np.testing.assert_allclose(lerf.curve[0], full, atol=1e-6)
    combined = metrics.road(
        model, image, region_map, targets=1, percentiles=percentiles, noise=0.0
    )
    assert combined.per_image[0] == pytest.approx(np.mean(full - morf.curve[0]) / 2, abs=1e-6)
    assert combined.higher_is_better and combined.name == "road"


def test_a_map_ranking_the_region_last_scores_lower():
    model = region_model()
    image = region_indicator()[np.newaxis, ..., np.newaxis]
    good = metrics.road(model, image, region_indicator()[np.newaxis], targets=1)
    reverse = metrics.road(model, image, 1.0 - region_indicator()[np.newaxis], targets=1)
    assert good.mean > 0.3 > -0.3 > reverse.mean
    assert good.curve_x.tolist() == [p / 100 for p in metrics.ROAD_PERCENTILES]


def test_arguments_are_checked():
    model = region_model()
    image, region_map = np.ones((1, HEIGHT, WIDTH, 1)), region_indicator()[np.newaxis]
    with pytest.raises(ValueError, match=r"`percentiles` must be .* in \(0, 100\)"):
        metrics.road(model, image, region_map, percentiles=(10, 100))
    with pytest.raises(ValueError, match=r"remove every pixel"):
        metrics.road(model, image, region_map, percentiles=(99.99,))
    with pytest.raises(ValueError, match=r"`noise` must be a finite number >= 0"):
        metrics.road(model, image, region_map, noise=-1.0)
    with pytest.raises(ValueError, match=r"`removed` covers every pixel"):
        linear_imputation(image, np.ones((1, HEIGHT, WIDTH), bool))
