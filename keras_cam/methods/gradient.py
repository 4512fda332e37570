"""Gradient-weighted methods: Grad-CAM, Grad-CAM++ and the relatives sharing their one pass.

Each class only says how the gradient `g = dS/dA` of the score `S` w.r.t. the feature maps `A`
becomes channel weights; the gradient pass, ReLU, upsampling and normalization are `BaseCAM`'s.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_cam._checks import check_number, check_positive_int, check_seed
from keras_cam.methods.base import BaseCAM, eigen_smoothing, spatial_dims
from keras_cam.methods.projection import principal_projection
from keras_cam.targets import class_scores


def plus_plus_weights(
    features: tf.Tensor, first: tf.Tensor, second: tf.Tensor, third: tf.Tensor
) -> tf.Tensor:
    """Grad-CAM++'s channel weights (Eq. 19) from the first three derivatives of the score.

        alpha^k_ij = D2_ij / (2 D2_ij + sum_ab A^k_ab * D3_ij)      (0 where the denominator is 0)
        w_k        = sum_ij alpha^k_ij * ReLU(D1_ij)

    Grad-CAM++ passes `D1 = g, D2 = g^2, D3 = g^3`; Smooth Grad-CAM++ their means over noisy
    copies of the input.

    Args:
        features: float32 `(B, h, w, C)` activations `A`.
        first: `D1`, same shape.
        second: `D2`, same shape.
        third: `D3`, same shape.

    Returns:
        float32 `(B, C)`.
    """
    sum_activations = tf.reduce_sum(features, axis=spatial_dims(features), keepdims=True)
    alpha = tf.math.divide_no_nan(second, 2.0 * second + sum_activations * third)
    return tf.reduce_sum(alpha * tf.nn.relu(first), axis=spatial_dims(features))


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391).

    Channel weights are the spatially averaged gradients of the class score:
    `w_k = (1/Z) sum_ij dS/dA^k_ij`, and `map = ReLU(sum_k w_k A^k)`. On a
    conv -> GlobalAveragePooling2D -> Dense model with the logit score this equals CAM.

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        score: `"logit"` or `"probability"`. Defaults to `"logit"`.
        head: how the model's output is read: `None` (automatic) or one of
            `keras_cam.surgery.HEADS` (see `keras_cam.BaseCAM`). Defaults to `None`.

    Example:
    ```python
    cam = keras_cam.GradCAM(model)
    maps = cam(images)            # (B, H, W) float32 in [0, 1]
    ```
    """

    display_name = "Grad-CAM"

    def compute_weights(self, features, grads, class_idx):
        return tf.reduce_mean(grads, axis=spatial_dims(features))


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhyay et al., 2018, https://arxiv.org/abs/1710.11063).

    Implements Eq. 19 of the paper as written, the closed form for an exponential score:

        alpha^k_ij = g_ij^2 / (2 g_ij^2 + sum_ab A^k_ab * g_ij^3)      (0 where the denominator is 0)
        w_k        = sum_ij alpha^k_ij * ReLU(g_ij)

    with `g = dS/dA^k`. Alpha is *not* renormalized afterwards, and no `exp(S)` factor is
    applied: the authors' code and tf-keras-vis add both, so their maps can differ slightly.

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        score: `"logit"` or `"probability"`. Defaults to `"logit"`.
        head: how the model's output is read: `None` (automatic) or one of
            `keras_cam.surgery.HEADS` (see `keras_cam.BaseCAM`). Defaults to `None`.

    Example:
    ```python
    maps = keras_cam.GradCAMPlusPlus(model)(images, targets=[3, 7])
    ```
    """

    display_name = "Grad-CAM++"

    def compute_weights(self, features, grads, class_idx):
        return plus_plus_weights(features, grads, tf.square(grads), tf.square(grads) * grads)


class XGradCAM(BaseCAM):
    """XGrad-CAM (Fu et al., 2020, https://arxiv.org/abs/2008.02312).

    `w_k = sum_ij (A^k_ij / sum_ab A^k_ab) * g_ij`: gradients weighted by the normalized
    activations (0 for a channel whose activations sum to 0). Same arguments as `GradCAM`.
    """

    display_name = "XGrad-CAM"

    def compute_weights(self, features, grads, class_idx):
        axes = spatial_dims(features)
        total = tf.reduce_sum(features, axis=axes)
        return tf.math.divide_no_nan(tf.reduce_sum(features * grads, axis=axes), total)


class HiResCAM(BaseCAM):
    """HiResCAM (Draelos & Carin, 2020, https://arxiv.org/abs/2011.08891).

    Element-wise weights: `map = ReLU(sum_k g^k ⊙ A^k)`, which is faithful to the model's
    computation for any head. Same arguments as `GradCAM`.
    """

    display_name = "HiResCAM"

    def compute_weights(self, features, grads, class_idx):
        return grads


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al., 2021, https://doi.org/10.1109/TIP.2021.3089943).

    Element-wise weights from the positive gradients: `map = ReLU(sum_k ReLU(g^k) ⊙ A^k)`,
    which keeps fine detail in shallow layers. Same arguments as `GradCAM`.
    """

    display_name = "LayerCAM"

    def compute_weights(self, features, grads, class_idx):
        return tf.nn.relu(grads)


class GradCAMElementWise(BaseCAM):
    """Element-wise Grad-CAM (pytorch-grad-cam's `GradCAMElementWise`).

    `map = sum_k ReLU(g^k ⊙ A^k)`: HiResCAM with the ReLU inside the channel sum, so a
    channel's negative evidence at a position cannot cancel another's positive evidence.
    With `eigen_smooth=True` the map is `ReLU(principal_projection(ReLU(g^k ⊙ A^k)))`, the
    projection of the rectified products (as pytorch-grad-cam's `get_cam_image`). Same
    arguments as `GradCAM`.

    Example:
    ```python
    maps = keras_cam.GradCAMElementWise(model)(images)
    ```
    """

    display_name = "Element-wise Grad-CAM"

    def compute_weights(self, features, grads, class_idx):
        return grads

    def compute_cam(self, features, weights):
        positive = tf.nn.relu(weights * features)
        if eigen_smoothing(self):
            return tf.nn.relu(principal_projection(positive))
        return tf.reduce_sum(positive, axis=-1)


def noisy_copies(images: tf.Tensor, n_samples: int, noise_std: float, seed: int) -> tf.Tensor:
    """`n_samples` noisy copies of each image, `(n_samples * B, ...)`, sample-major.

    Copy `s` of image `b` is `x_b + noise_std * (max x_b - min x_b) * e_s`, `e_s ~ N(0, 1)`
    drawn from `seed`: the same `n_samples` noise patterns for every image (scaled by its
    range), so an image's copies do not depend on the batch it comes in.

    Args:
        images: float32 batch `(B, ...)`.
        n_samples: number of copies per image.
        noise_std: the noise's standard deviation relative to each image's value range.
        seed: the seed of the noise.

    Returns:
        float32 `(n_samples * B, ...)`: all images with noise 0, then with noise 1, ...
    """
    shape = tf.shape(images)
    noise = tf.random.stateless_normal(
        tf.concat([[n_samples, 1], shape[1:]], axis=0), seed=tf.constant([seed, 0], tf.int64)
    )
    rank = len(images.shape)
    value_range = tf.reduce_max(images, axis=list(range(1, rank)), keepdims=True) - tf.reduce_min(
        images, axis=list(range(1, rank)), keepdims=True
    )
    noisy = images[tf.newaxis] + noise_std * value_range[tf.newaxis] * noise
    return tf.reshape(noisy, tf.concat([[n_samples * shape[0]], shape[1:]], axis=0))


class SmoothGradCAMPlusPlus(BaseCAM):
    """Smooth Grad-CAM++ (Omeiza et al., 2019, https://arxiv.org/abs/1908.01224).

    Grad-CAM++ (Eq. 19, see `plus_plus_weights`) with the derivatives averaged over
    `n_samples` noisy copies of the input (SmoothGrad's noise):

        D1 = mean_s g_s,   D2 = mean_s g_s^2,   D3 = mean_s g_s^3,
        alpha^k_ij = D2 / (2 D2 + sum_ab A^k_ab D3),   w_k = sum_ij alpha^k_ij ReLU(D1),

    with `g_s = dS/dA` on copy `s` and `A` the clean image's activations; every copy explains
    the clean image's class. torch-cam's `SmoothGradCAMpp` takes `ReLU(g)` of its last noisy copy
    instead of `D1` and absolute noise; keras_cam's noise is relative to each image's value
    range and seeded, so maps are reproducible and independent of the batch. With one copy and
    `noise_std=0` it is Grad-CAM++. Costs `n_samples + 1` gradient passes.

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        n_samples: noisy copies per image, an int >= 1. Defaults to `8`.
        noise_std: the noise's standard deviation as a fraction of each image's value range
            (`max - min`), a number >= 0. Defaults to `0.15` (SmoothGrad's 10-20%).
        seed: the noise's seed, an int >= 0. Defaults to `0`.
        **kwargs: the other options of `keras_cam.BaseCAM` (`score`, `layer_call`, `head`,
            `verbose`).

    Raises:
        TypeError, ValueError: `n_samples`, `noise_std` or `seed` out of their ranges.

    Example:
    ```python
    maps = keras_cam.SmoothGradCAMPlusPlus(model, n_samples=16, noise_std=0.1)(images)
    ```
    """

    display_name = "Smooth Grad-CAM++"
    expensive = True

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        n_samples: int = 8,
        noise_std: float = 0.15,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.n_samples = check_positive_int("n_samples", n_samples)
        self.noise_std = check_number("noise_std", noise_std, 0.0, inclusive=True)
        self.seed = check_seed(seed)
        # Each image costs n_samples + 1 passes: keep a compiled pass near 32 images.
        self.images_per_pass = max(1, BaseCAM.images_per_pass // (self.n_samples + 1))
        super().__init__(model, layer, **kwargs)

    def feature_gradients(self, images, others, class_idx, score_fn=None, image_index=None):
        """The clean activations and the stacked `(D1, D2, D3)`, `(B, *cells, C, 3)`."""
        features, _, class_idx = super().feature_gradients(
            images, others, class_idx, score_fn, image_index
        )
        noisy = noisy_copies(images, self.n_samples, self.noise_std, self.seed)
        classes = tf.tile(class_idx, [self.n_samples])
        # Copy s of image b sits at row s * B + b: each keeps its image's other inputs and index.
        tiled = tuple(
            tf.tile(other, tf.concat([[self.n_samples], tf.ones_like(tf.shape(other)[1:])], 0))
            for other in others
        )
        indices = None if image_index is None else tf.tile(image_index, [self.n_samples])
        _, grads, _ = super().feature_gradients(noisy, tiled, classes, score_fn, indices)
        grads = tf.reshape(grads, tf.concat([[self.n_samples], tf.shape(features)], axis=0))
        moments = [tf.reduce_mean(grads**power, axis=0) for power in (1, 2, 3)]
        return features, tf.stack(moments, axis=-1), class_idx

    def compute_weights(self, features, grads, class_idx):
        """`plus_plus_weights` of the averaged derivatives `grads[..., 0:3]` = `(D1, D2, D3)`."""
        return plus_plus_weights(features, grads[..., 0], grads[..., 1], grads[..., 2])


def shapley_weights(grads: tf.Tensor, hessian_activations: tf.Tensor) -> tf.Tensor:
    """ShapleyCAM's channel weights: `w_k = mean_ij (g - 1/2 H A)^k_ij`.

    Args:
        grads: float32 `(B, h, w, C)`, `g = dS/dA`.
        hessian_activations: float32 `(B, h, w, C)`, the Hessian-vector product `H A` with
            `H = d^2 S / dA^2`.

    Returns:
        float32 `(B, C)`.
    """
    return tf.reduce_mean(grads - 0.5 * hessian_activations, axis=spatial_dims(grads))


class ShapleyCAM(BaseCAM):
    """ShapleyCAM (Cai, 2024, https://arxiv.org/abs/2501.06261), as pytorch-grad-cam's.

    A second-order (Taylor) estimate of each channel's Shapley value:
    `w_k = mean_ij (g - 1/2 H A)^k_ij` with `g = dS/dA` and `H A` the Hessian-vector product of
    the score w.r.t. the activations (see `shapley_weights`); `map = ReLU(sum_k w_k A^k)`.
    Where the score is linear in `A` (a GAP -> Dense head with `score="logit"`), `H A = 0` and
    it is Grad-CAM. The paper pairs it with the ReST score (a residual softmax target);
    `score="probability"` or a callable target gives the softmax's curvature. Costs a second
    backward pass.

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        **kwargs: the other options of `keras_cam.BaseCAM` (`score`, `layer_call`, `head`,
            `verbose`).

    Example:
    ```python
    maps = keras_cam.ShapleyCAM(model, score="probability")(images)
    ```
    """

    display_name = "ShapleyCAM"

    def feature_gradients(self, images, others, class_idx, score_fn=None, image_index=None):
        """The activations and the stacked `(g, H A)`, `(B, *cells, C, 2)`."""
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            outer.watch(images)
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(images)
                features, logits, probabilities = self._forward(images, others)
                total_score, class_idx = self.total_score(
                    logits, probabilities, class_idx, score_fn, image_index
                )
            grads = inner.gradient(total_score, features)
        hessian_activations = outer.gradient(
            grads,
            features,
            output_gradients=tf.stop_gradient(features),
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        stacked = tf.stack([tf.cast(t, tf.float32) for t in (grads, hessian_activations)], -1)
        return tf.cast(features, tf.float32), stacked, class_idx

    def compute_weights(self, features, grads, class_idx):
        """`shapley_weights(g, H A)` of `grads[..., 0:2]`."""
        return shapley_weights(grads[..., 0], grads[..., 1])


def finer_scores(
    outputs: tf.Tensor, logits: tf.Tensor, classes: tf.Tensor, alpha: float, comparisons: int
) -> tf.Tensor:
    """FinerCAM's score: the target's score minus alpha times that of its most similar classes.

    `S = sum_j p_j (y_c - alpha y_j) / sum_j p_j` over the `comparisons` classes `j != c` whose
    scores `y_j` are closest to `y_c` (`|y_j - y_c|` smallest), weighted by their softmax
    probabilities `p = softmax(logits)` (pytorch-grad-cam's `FinerWeightedTarget`; the ratio
    `p_j / sum_j p_j` is computed as a softmax over the compared classes, where
    pytorch-grad-cam divides by `sum_j p_j + 1e-9`, which zeroes the map when the compared
    classes' probabilities are below ~1e-9).

    Args:
        outputs: float32 `(B, N)` the differentiated scores `y` (logits or probabilities).
        logits: float32 `(B, N)` logits, for the weights `p`.
        classes: int32 `(B,)` the target classes `c`.
        alpha: the comparison's strength.
        comparisons: how many similar classes, `< N`.

    Returns:
        float32 `(B,)`.
    """
    target = class_scores(outputs, classes)
    distance = tf.abs(outputs - target[:, tf.newaxis])
    distance = tf.where(tf.one_hot(classes, tf.shape(outputs)[1]) > 0, float("inf"), distance)
    _, similar = tf.math.top_k(-tf.stop_gradient(distance), k=comparisons)
    # p_j / sum_j p_j is the softmax over the compared classes' logits: the same ratio, without
    # pytorch-grad-cam's `+ 1e-9`, which swamps it (and zeroes the map) when they are improbable.
    weights = tf.nn.softmax(tf.gather(logits, similar, batch_dims=1))
    differences = target[:, tf.newaxis] - alpha * tf.gather(outputs, similar, batch_dims=1)
    return tf.reduce_sum(weights * differences, axis=1)


class FinerCAM(GradCAM):
    """Finer-CAM (Zhang et al., 2025, https://arxiv.org/abs/2501.11309), as pytorch-grad-cam's.

    Grad-CAM of the score `S = sum_j p_j (y_c - alpha y_j) / sum_j p_j` (see `finer_scores`):
    the target class's score minus `alpha` times that of the `comparisons` classes whose
    scores are closest to it, weighted by their softmax probabilities, so the map shows what
    tells the class apart from its look-alikes. `alpha=0` is Grad-CAM. Needs one class per
    image (no callable targets).

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        alpha: the comparison's strength, a number >= 0. Defaults to `1.0`.
        comparisons: how many similar classes to compare with, an int from 1 to
            `num_classes - 1`; `None` means 3 (pytorch-grad-cam's `[1, 2, 3]`) or all other
            classes when there are fewer. Defaults to `None`.
        **kwargs: the other options of `keras_cam.BaseCAM` (`score`, `layer_call`, `head`,
            `verbose`).

    Raises:
        ValueError: a model with a single output score (nothing to compare with), or
            `comparisons` / `alpha` out of range.

    Example:
    ```python
    maps = keras_cam.FinerCAM(model, alpha=0.6)(images, targets=[3, 5])
    ```
    """

    display_name = "Finer-CAM"
    supports_callable_targets = False

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        alpha: float = 1.0,
        comparisons: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.alpha = check_number("alpha", alpha, 0.0, inclusive=True)
        super().__init__(model, layer, **kwargs)
        others = self.num_classes - 1
        if others < 1:
            raise ValueError(
                f"FinerCAM compares the target class with other classes, but model "
                f"{model.name!r} has a single output score. Use `keras_cam.GradCAM`."
            )
        if comparisons is None:
            comparisons = min(3, others)
        if check_positive_int("comparisons", comparisons) > others:
            raise ValueError(
                f"`comparisons` must be at most {others} (model {model.name!r} has "
                f"{self.num_classes} classes); received {comparisons}."
            )
        self.comparisons = int(comparisons)

    def explained_scores(
        self, logits, probabilities, class_idx, score_fn=None, image_index=None
    ):
        outputs = logits if self.score == "logit" else probabilities
        return finer_scores(outputs, logits, class_idx, self.alpha, self.comparisons)
