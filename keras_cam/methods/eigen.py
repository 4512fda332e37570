"""Principal-component methods: Eigen-CAM, EigenGrad-CAM and KPCA-CAM.

Each map is the projection of every position's (centred) channel vector on the first principal
component of the image's feature map, computed per image in TensorFlow (batched SVD or
eigendecomposition). A principal component has no sign of its own; keras_cam orients it so that
the map agrees with the summed activations (see `orient`), which is well-defined where
pytorch-grad-cam's sign is whatever LAPACK returns.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_cam._checks import check_choice, check_number
from keras_cam.methods.base import BaseCAM, spatial_dims, weighted_features
from keras_cam.methods.projection import centred_positions, orient, principal_projection

KERNELS = ("rbf", "sigmoid")
"""The kernels of `KPCACAM` (scikit-learn's `KernelPCA` definitions)."""


def kernel_matrix(centred: tf.Tensor, kernel: str, gamma: tf.Tensor) -> tf.Tensor:
    """The kernel matrix of each image's positions, scikit-learn's definitions.

    `"rbf"`: `K_ij = exp(-gamma * |x_i - x_j|^2)`; `"sigmoid"`: `K_ij = tanh(gamma * x_i.x_j + 1)`.

    Args:
        centred: float `(B, N, C)`.
        kernel: one of `KERNELS`.
        gamma: scalar of the same dtype.

    Returns:
        `(B, N, N)`, of the dtype of `centred`.
    """
    dots = tf.einsum("bic,bjc->bij", centred, centred)
    if kernel == "sigmoid":
        return tf.tanh(gamma * dots + 1.0)
    norms = tf.linalg.diag_part(dots)
    distances = norms[:, :, tf.newaxis] + norms[:, tf.newaxis, :] - 2.0 * dots
    return tf.exp(-gamma * tf.maximum(distances, 0.0))


def kernel_projection(
    weighted: tf.Tensor, kernel: str = "sigmoid", gamma: float | None = None
) -> tf.Tensor:
    """Projects each position on the first kernel principal component (KPCA-CAM).

    KPCA-CAM (Karmani et al., 2024, https://arxiv.org/abs/2410.00267), as pytorch-grad-cam's
    `get_2d_projection_kernel`: the positions' vectors are centred, the kernel matrix `K` is
    centred in feature space (`K - 1K - K1 + 1K1`, `1` the `N x N` matrix of `1/N`), and the
    map is scikit-learn `KernelPCA.fit_transform`'s first column, `a_1 sqrt(lambda_1)` with
    `(lambda_1, a_1)` the top eigenpair; oriented by `orient`.

    Args:
        weighted: float32 `(B, h, w, C)`.
        kernel: one of `KERNELS`. Defaults to `"sigmoid"`.
        gamma: the kernel's scale; `None` is scikit-learn's default `1 / C`. Defaults to `None`.

    Returns:
        float32 `(B, h, w)`, not ReLU'd.
    """
    # float64: the top eigenvector of a kernel matrix is sensitive to rounding when the
    # spectrum is tight; N x N stays small at the layers CAMs explain.
    centred = tf.cast(centred_positions(weighted), tf.float64)
    if gamma is None:
        gamma = 1.0 / tf.cast(tf.shape(weighted)[-1], tf.float64)
    matrix = kernel_matrix(centred, kernel, tf.cast(gamma, tf.float64))
    matrix = (
        matrix
        - tf.reduce_mean(matrix, axis=1, keepdims=True)
        - tf.reduce_mean(matrix, axis=2, keepdims=True)
        + tf.reduce_mean(matrix, axis=(1, 2), keepdims=True)
    )
    values, vectors = tf.linalg.eigh(matrix)  # ascending eigenvalues
    projection = vectors[:, :, -1] * tf.sqrt(tf.maximum(values[:, -1:], 0.0))
    projection = tf.cast(orient(projection, centred), tf.float32)
    return tf.reshape(projection, tf.shape(weighted)[:-1])


class EigenCAM(BaseCAM):
    """Eigen-CAM (Muhammad & Yeasin, 2020, https://arxiv.org/abs/2008.00299).

    `map = ReLU(X v_1)`: the projection of each position's centred activations on their first
    principal component (see `principal_projection`). Needs no gradient and no class: the map
    is the same for every target. Unlike pytorch-grad-cam (whose sign is LAPACK's), the
    component is oriented to agree with the summed activations (`orient`).

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        **kwargs: the other options of `keras_cam.BaseCAM` (`layer_call`, `head`, `verbose`).

    Example:
    ```python
    maps = keras_cam.EigenCAM(model)(images)   # (B, H, W) float32 in [0, 1]
    ```
    """

    display_name = "Eigen-CAM"
    requires_gradients = False

    def compute_weights(self, features, grads, class_idx):
        """Every channel counts as it is: weights of 1, `(B, C)`."""
        return tf.ones_like(tf.reduce_mean(features, axis=spatial_dims(features)))

    def project(self, weighted: tf.Tensor) -> tf.Tensor:
        """The projection of the weighted activations, `(B, h, w)` (`principal_projection`)."""
        return principal_projection(weighted)

    def compute_cam(self, features, weights):
        return tf.nn.relu(self.project(weighted_features(features, weights)))


class EigenGradCAM(EigenCAM):
    """EigenGrad-CAM (pytorch-grad-cam's): Eigen-CAM of the gradient x activation.

    `map = ReLU(X v_1)` with `X` the centred `(h*w, C)` matrix of `g ⊙ A` (`g = dS/dA`),
    oriented as in `EigenCAM`. Class-discriminative through the gradient. Same arguments as
    `keras_cam.GradCAM`.

    Example:
    ```python
    maps = keras_cam.EigenGradCAM(model)(images, targets=3)
    ```
    """

    display_name = "EigenGrad-CAM"
    requires_gradients = True

    def compute_weights(self, features, grads, class_idx):
        """The gradients, element-wise: `(B, h, w, C)`."""
        return grads


class KPCACAM(EigenCAM):
    """KPCA-CAM (Karmani et al., 2024, https://arxiv.org/abs/2410.00267).

    Eigen-CAM with kernel PCA: `map = ReLU(a_1 sqrt(lambda_1))`, the first kernel principal
    component of the positions' centred activations (see `kernel_projection`). The kernel
    matrix is `N x N` for `N = h*w` positions, so deep layers (7x7, 14x14) are cheap and early
    ones (56x56) cost an eigendecomposition of a 3136 x 3136 matrix per image.
    The defaults are pytorch-grad-cam's (`KPCA_CAM`: sigmoid kernel, scikit-learn's
    `gamma = 1 / C`). The RBF kernel is offered too, but with `gamma = 1 / C` it saturates on
    unscaled activations (squared distances in the thousands: every off-diagonal entry is ~0
    and the component is noise), so pass a `gamma` near `1 / median squared distance` with it.
    Orientation as in `EigenCAM` (scikit-learn makes the largest-magnitude entry positive).

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        kernel: `"sigmoid"` or `"rbf"` (`KERNELS`). Defaults to `"sigmoid"`.
        gamma: the kernel's scale, a positive number; `None` means `1 / C` (scikit-learn's).
            Defaults to `None`.
        **kwargs: the other options of `keras_cam.BaseCAM` (`layer_call`, `head`, `verbose`).

    Raises:
        TypeError: a `gamma` that is not a number.
        ValueError: an unknown `kernel` or a `gamma` that is not positive.

    Example:
    ```python
    maps = keras_cam.KPCACAM(model)(images)            # sigmoid kernel, gamma = 1 / C
    maps = keras_cam.KPCACAM(model, kernel="rbf", gamma=1e-3)(images)
    ```
    """

    display_name = "KPCA-CAM"

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        kernel: str = "sigmoid",
        gamma: float | None = None,
        **kwargs: Any,
    ) -> None:
        check_choice("kernel", kernel, KERNELS)
        self.kernel = kernel
        self.gamma = None if gamma is None else check_number("gamma", gamma)
        super().__init__(model, layer, **kwargs)

    def project(self, weighted: tf.Tensor) -> tf.Tensor:
        """The kernel principal projection, `(B, h, w)` (`kernel_projection`)."""
        return kernel_projection(weighted, self.kernel, self.gamma)
