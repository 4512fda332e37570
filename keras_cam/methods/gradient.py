"""Gradient-weighted methods: Grad-CAM, Grad-CAM++ and the relatives sharing their one pass.

Each class only says how the gradient `g = dS/dA` of the score `S` w.r.t. the feature maps `A`
becomes channel weights; the gradient pass, ReLU, upsampling and normalization are `BaseCAM`'s.
"""

from __future__ import annotations

import tensorflow as tf

from keras_cam.methods.base import BaseCAM, spatial_dims


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
        grads_2 = tf.square(grads)
        axes = spatial_dims(features)
        sum_activations = tf.reduce_sum(features, axis=axes, keepdims=True)
        denominator = 2.0 * grads_2 + sum_activations * grads_2 * grads
        alpha = tf.math.divide_no_nan(grads_2, denominator)
        return tf.reduce_sum(alpha * tf.nn.relu(grads), axis=axes)


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
