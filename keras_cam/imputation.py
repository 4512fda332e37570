"""Noisy linear imputation: removed pixels filled in from their neighbours (ROAD's "debias").

Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods"
(ROAD), ICML 2022, https://arxiv.org/abs/2202.00449, Sec. 4: each removed pixel takes the
weighted mean of its 8 neighbours (direct neighbours weigh 1/6, diagonal ones 1/12, the
weights of the reference implementation, `NoisyLinearImputer`, also used by pytorch-grad-cam),
neighbours outside the image left out, removed neighbours being unknowns themselves; then
Gaussian noise is added to the imputed pixels. The removed pixels of an image solve one
sparse linear system per channel, here by conjugate gradients in TensorFlow, every image and
channel of a batch at once.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from keras_cam._checks import check_images

NEIGHBOUR_WEIGHTS = np.array(
    [[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]]
)
"""The 3x3 weights of a pixel's neighbours (Rong et al., 2022, reference code)."""

RELATIVE_TOLERANCE = 1e-5
"""Conjugate gradients stop when every system's residual norm is below this share of its
right-hand side's (float32, whose rounding floor is about 1e-7 of it). The system (a graph
Laplacian with the kept pixels as fixed boundary, symmetric positive definite) is solved to
where the imputed values differ from an exact dense solve by about 1e-5 of the image's range
(`tests/test_road.py` checks 1e-4 at 30 % and 90 % removed), a thousand times below ROAD's
noise (standard deviation 0.01), so the tolerance never shows in a ROAD score; a tighter one
costs iterations without changing the scores' first four digits. The loop also stops after
`n` iterations for `n` unknowns, where conjugate gradients are exact in exact arithmetic."""


def _laplacian(values: tf.Tensor, unknown: tf.Tensor, degree: tf.Tensor) -> tf.Tensor:
    """`A x` on the unknown pixels: `degree * x - sum_j w_ij x_j` over unknown neighbours."""
    kernel = tf.constant(NEIGHBOUR_WEIGHTS[:, :, np.newaxis, np.newaxis], tf.float32)
    spread = tf.nn.conv2d(values * unknown, kernel, strides=1, padding="SAME")
    return unknown * (degree * values - spread)


@tf.function(reduce_retracing=True)
def _solve(values: tf.Tensor, unknown: tf.Tensor) -> tf.Tensor:
    """Batched conjugate gradients from 0; float32 `(N, H, W, 1)` tensors."""
    kernel = tf.constant(NEIGHBOUR_WEIGHTS[:, :, np.newaxis, np.newaxis], tf.float32)
    degree = tf.nn.conv2d(tf.ones_like(values[:1]), kernel, strides=1, padding="SAME")
    known = values * (1.0 - unknown)
    rhs = unknown * tf.nn.conv2d(known, kernel, strides=1, padding="SAME")
    limit = RELATIVE_TOLERANCE**2 * tf.reduce_sum(rhs**2, axis=(1, 2, 3))
    iterations = tf.reduce_max(tf.reduce_sum(unknown, axis=(1, 2, 3)))

    def unconverged(step, x, residual, direction, squared):
        return tf.logical_and(
            tf.cast(step, tf.float32) < iterations, tf.reduce_any(squared > limit)
        )

    def iterate(step, x, residual, direction, squared):
        # A converged system stops moving, so its solution does not depend on the others in
        # the batch (chunking never changes a result).
        active = tf.cast(squared > limit, tf.float32)
        product = _laplacian(direction, unknown, degree)
        curvature = tf.reduce_sum(direction * product, axis=(1, 2, 3))
        alpha = (active * tf.math.divide_no_nan(squared, curvature))[:, None, None, None]
        x = x + alpha * direction
        residual = residual - alpha * product
        new_squared = tf.reduce_sum(residual**2, axis=(1, 2, 3))
        beta = tf.math.divide_no_nan(new_squared, squared)[:, None, None, None]
        return step + 1, x, residual, residual + beta * direction, new_squared

    squared = tf.reduce_sum(rhs**2, axis=(1, 2, 3))
    initial = (tf.constant(0), tf.zeros_like(rhs), rhs, rhs, squared)
    _, solution, _, _, _ = tf.while_loop(unconverged, iterate, initial)
    return known + solution


def linear_imputation(images: ArrayLike, removed: ArrayLike) -> np.ndarray:
    """Fills the removed pixels with the solution of "each = weighted mean of its neighbours".

    For a removed pixel `i`, `x_i = sum_j w_ij x_j / sum_j w_ij` over its neighbours `j`
    inside the image (`NEIGHBOUR_WEIGHTS`), where a removed neighbour's `x_j` is an unknown
    too: one sparse linear system per image and channel, solved jointly by conjugate
    gradients in float32 (see `RELATIVE_TOLERANCE`). Kept pixels are returned unchanged.

    Args:
        images: `(B, H, W, C)` images.
        removed: bool `(B, H, W)`, the pixels to impute; at least one pixel of each image
            must be kept.

    Returns:
        float32 `(B, H, W, C)`.

    Raises:
        ValueError: `removed` of another shape, or an image with every pixel removed.

    Example:
    ```python
    filled = linear_imputation(images, maps > 0.5)
    ```
    """
    images = check_images(images)
    removed = np.asarray(removed, bool)
    if removed.shape != images.shape[:3]:
        raise ValueError(
            f"`removed` must have shape (B, H, W) = {images.shape[:3]}; received "
            f"{removed.shape}."
        )
    if removed.reshape(len(removed), -1).all(axis=1).any():
        raise ValueError(
            "`removed` covers every pixel of an image: nothing is left to impute from. Keep "
            "at least one pixel (ROAD's percentiles must be below 100)."
        )
    batch, height, width, channels = images.shape
    values = np.moveaxis(images, -1, 1).reshape(batch * channels, height, width, 1)
    unknown = np.repeat(removed, channels, axis=0).astype(np.float32)[..., np.newaxis]
    solved = _solve(tf.constant(values), tf.constant(unknown)).numpy()
    return np.moveaxis(solved.reshape(batch, channels, height, width), 1, -1).astype(np.float32)


def noisy_linear_imputation(
    images: ArrayLike, removed: ArrayLike, noise: float = 0.01, seed: int = 0
) -> np.ndarray:
    """`linear_imputation` plus Gaussian noise of standard deviation `noise` on removed pixels.

    The noise keeps the imputed region from being told apart by its smoothness alone (Rong et
    al., 2022, Sec. 4.2; their default standard deviation, 0.01, in the model's input units).

    Args:
        images: `(B, H, W, C)` images.
        removed: bool `(B, H, W)`, the pixels to impute.
        noise: standard deviation of the noise, at least 0. Defaults to `0.01`.
        seed: the NumPy generator's seed. Defaults to `0`.

    Returns:
        float32 `(B, H, W, C)`.

    Example:
    ```python
    debiased = noisy_linear_imputation(images, removed, noise=0.01)
    ```
    """
    filled = linear_imputation(images, removed)
    mask = np.asarray(removed, bool)[..., np.newaxis]
    draws = np.random.default_rng(seed).standard_normal(filled.shape)
    return (filled + check_noise(noise) * draws * mask).astype(np.float32)


def check_noise(noise: object) -> float:
    """`noise` as a float >= 0, or a `ValueError` / `TypeError` naming it."""
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating)):
        raise TypeError(f"`noise` must be a number >= 0; received {noise!r}.")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"`noise` must be a finite number >= 0; received {noise!r}.")
    return float(noise)
