"""Principal-component projections of feature maps: Eigen-CAM and `eigen_smooth`.

The one home of the first principal component of an image's channel vectors, shared by
`keras_cam.EigenCAM` / `EigenGradCAM` / `KPCACAM` and every method's `eigen_smooth`.
"""

from __future__ import annotations

import tensorflow as tf


def centred_positions(weighted: tf.Tensor) -> tf.Tensor:
    """`(B, *cells, C)` -> `(B, N, C)` (N the number of cells), each channel centred over the
    positions."""
    shape = tf.shape(weighted)
    matrix = tf.reshape(weighted, tf.stack([shape[0], -1, shape[-1]]))
    return matrix - tf.reduce_mean(matrix, axis=1, keepdims=True)


def orient(projection: tf.Tensor, centred: tf.Tensor) -> tf.Tensor:
    """Flips each image's projection so it correlates positively with its summed activations.

    For linear PCA, `sum_n p_n * sum_c X_nc = sigma_1^2 * sum_c v_c`: the component is oriented
    so its channel loadings sum to a positive number. A projection orthogonal to the summed
    activations (a tie) is kept as computed.

    Args:
        projection: float `(B, N)` projections of the `N` positions.
        centred: `(B, N, C)` the centred vectors that were projected, of the same dtype.

    Returns:
        `(B, N)`: `projection` times +1 or -1 per image.
    """
    agreement = tf.reduce_sum(projection * tf.reduce_sum(centred, axis=-1), axis=-1)
    return tf.where((agreement < 0.0)[:, tf.newaxis], -projection, projection)


def principal_projection(weighted: tf.Tensor) -> tf.Tensor:
    """Projects each position on the first principal component of its image's feature map.

    Eigen-CAM (Muhammad & Yeasin, 2020, https://arxiv.org/abs/2008.00299), centred as in
    pytorch-grad-cam's `get_2d_projection`: with `X` the `(h*w, C)` matrix of one image, each
    column centred, and `X = U S V^T` its SVD, the map is `X v_1 = s_1 u_1`, oriented by
    `orient`.

    Args:
        weighted: float32 `(B, *cells, C)`, e.g. `(B, h, w, C)` (activations, gradient x
            activations, or any method's weighted activations `w_k A^k` for `eigen_smooth`).

    Returns:
        float32 `(B, *cells)`, not ReLU'd.

    Example:
    ```python
    principal_projection(tf.random.normal((2, 7, 9, 16)))   # (2, 7, 9)
    ```
    """
    centred = centred_positions(weighted)
    _, _, right = tf.linalg.svd(centred)
    projection = tf.einsum("bnc,bc->bn", centred, right[:, :, 0])
    return tf.reshape(orient(projection, centred), tf.shape(weighted)[:-1])
