"""keras_cam's pointing game, sparseness and randomisation correlation against Quantus.

Quantus (Hedström et al., JMLR 2023,
https://github.com/understandable-machine-intelligence-lab/Quantus) is an independent
implementation. Not part of `make test`: `make crosscheck` installs the
`crosscheck` extra and runs this file (`pytest -m crosscheck tests/crosscheck`).
"""

import numpy as np
import pytest

from keras_cam import metrics, sanity

quantus = pytest.importorskip("quantus")

pytestmark = pytest.mark.crosscheck

HEIGHT, WIDTH = 24, 40


def maps_and_boxes(batch: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random maps with a unique maximum, and boxes of random size and place."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:HEIGHT, :WIDTH]
    maps = np.stack([
        np.exp(-((y - rng.uniform(0, HEIGHT)) ** 2 + (x - rng.uniform(0, WIDTH)) ** 2)
               / rng.uniform(10, 200))
        + 0.05 * rng.random((HEIGHT, WIDTH))
        for _ in range(batch)
    ]).astype(np.float32)
    x0, y0 = rng.integers(0, WIDTH - 8, batch), rng.integers(0, HEIGHT - 6, batch)
    boxes = np.stack([x0, y0, x0 + rng.integers(4, 9, batch), y0 + rng.integers(3, 7, batch)], 1)
    return maps, boxes


def box_masks(boxes: np.ndarray) -> np.ndarray:
    masks = np.zeros((len(boxes), 1, HEIGHT, WIDTH), np.float32)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[0, y0:y1, x0:x1] = 1.0
    return masks


def test_pointing_game_matches_quantus():
    maps, boxes = maps_and_boxes()
    x_batch = np.zeros((len(maps), 1, HEIGHT, WIDTH), np.float32)
    ours = metrics.pointing_game(maps, boxes).per_image
    theirs = quantus.PointingGame(disable_warnings=True)(
        model=None, x_batch=x_batch, y_batch=np.zeros(len(maps), int),
        a_batch=maps[:, np.newaxis], s_batch=box_masks(boxes), channel_first=True,
    )
    assert 0 < ours.sum() < len(ours)  # hits and misses both compared
    np.testing.assert_array_equal(ours, np.asarray(theirs, np.float64))


def test_sparseness_matches_quantus():
    maps, _ = maps_and_boxes(seed=1)
    one_hot = np.zeros((1, HEIGHT, WIDTH), np.float32)
    one_hot[0, 3, 5] = 1.0
    maps = np.concatenate([maps, one_hot])
    x_batch = np.zeros((len(maps), 1, HEIGHT, WIDTH), np.float32)
    theirs = quantus.Sparseness(disable_warnings=True, normalise=False, abs=True)(
        model=None, x_batch=x_batch, y_batch=np.zeros(len(maps), int),
        a_batch=maps[:, np.newaxis].copy(), channel_first=True,
    )
    # Quantus adds 1e-7 to every value before the Gini index; keras_cam does not.
    np.testing.assert_allclose(metrics.sparseness(maps).per_image, theirs, atol=1e-4)


def test_randomisation_correlation_matches_quantus_spearman():
    trained, _ = maps_and_boxes(seed=2)
    rng = np.random.default_rng(3)
    randomised = np.clip(trained + rng.normal(0, 0.2, trained.shape), 0, None)
    randomised[0] = np.round(randomised[0], 1)  # ties: both use average ranks
    theirs = quantus.similarity_func.correlation_spearman(
        trained.reshape(len(trained), -1), randomised.reshape(len(trained), -1), batched=True
    )
    np.testing.assert_allclose(sanity.spearman(trained, randomised), theirs, atol=1e-10)
