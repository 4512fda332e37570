"""Activation-only methods: FEM and the RandomCAM baseline (no gradient, no extra pass)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_cam._checks import check_number, check_seed
from keras_cam.methods.base import BaseCAM, spatial_dims



def fem_weights(features: tf.Tensor, k: float = 2.0) -> tf.Tensor:
    """FEM's channel weights: the fraction of positions where a channel stands out.

    `w_c = mean_ij [A^c_ij > mu_c + k sigma_c]` with `mu_c`, `sigma_c` the channel's spatial
    mean and (population) standard deviation: the k-sigma rule.

    Args:
        features: float32 `(B, h, w, C)`.
        k: how many standard deviations above the mean counts as standing out. Defaults to `2.0`.

    Returns:
        float32 `(B, C)` in [0, 1].

    Example:
    ```python
    fem_weights(features, k=2.0)
    ```
    """
    mean = tf.reduce_mean(features, axis=spatial_dims(features), keepdims=True)
    std = tf.math.reduce_std(features, axis=spatial_dims(features), keepdims=True)
    standing_out = tf.cast(features > mean + k * std, tf.float32)
    return tf.reduce_mean(standing_out, axis=spatial_dims(features))


class FEM(BaseCAM):
    """FEM, the Feature Explanation Method (Fuad, Martin, Giot, Bourqui, Benois-Pineau &
    Zemmari, 2020, https://hal.science/hal-02963298).

    `map = ReLU(sum_c w_c A^c)` with `w_c = mean_ij [A^c_ij > mu_c + k sigma_c]` (see
    `fem_weights`): channels with outstanding activations count, weighted by how much of the map
    stands out. Needs no gradient and no class (the map is the same for every target), as
    pytorch-grad-cam's `FEM`, whose definition this is.

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        k: the k of the k-sigma rule, a number >= 0. Defaults to `2.0` (pytorch-grad-cam's).
        **kwargs: the other options of `keras_cam.BaseCAM` (`layer_call`, `head`, `verbose`).

    Raises:
        TypeError, ValueError: `k` is not a number >= 0.

    Example:
    ```python
    maps = keras_cam.FEM(model, k=2)(images)
    ```
    """

    display_name = "FEM"
    requires_gradients = False

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        k: float = 2.0,
        **kwargs: Any,
    ) -> None:
        self.k = check_number("k", k, 0.0, inclusive=True)
        super().__init__(model, layer, **kwargs)

    def compute_weights(self, features, grads, class_idx):
        return fem_weights(features, self.k)


def random_weights(channels: tf.Tensor, batch: tf.Tensor, seed: int) -> tf.Tensor:
    """Uniform weights in [-1, 1), the same `C` of them for every image of the batch.

    Args:
        channels: int32 scalar `C`.
        batch: int32 scalar `B`.
        seed: the seed; the same seed gives the same weights.

    Returns:
        float32 `(B, C)`.
    """
    drawn = tf.random.stateless_uniform(
        tf.reshape(channels, [1]), seed=tf.constant([seed, 0], tf.int64), minval=-1.0, maxval=1.0
    )
    return tf.tile(drawn[tf.newaxis, :], tf.stack([batch, 1]))


class RandomCAM(BaseCAM):
    """RandomCAM: random channel weights, the sanity floor every comparison should include.

    `map = ReLU(sum_c w_c A^c)`, `w_c ~ U[-1, 1)` drawn from `seed` (see `random_weights`): the
    same weights for every image and every call, so maps are reproducible and independent of
    the batch. pytorch-grad-cam's `RandomCAM` draws new weights per image and per call (from
    NumPy's global generator).

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported).
        layer: the layer to explain (name, layer, or `None` for automatic). Defaults to `None`.
        seed: an int >= 0. Defaults to `0`.
        **kwargs: the other options of `keras_cam.BaseCAM` (`layer_call`, `head`, `verbose`).

    Raises:
        TypeError, ValueError: `seed` is not an int >= 0.

    Example:
    ```python
    floor = keras_cam.RandomCAM(model, seed=1)(images)
    ```
    """

    display_name = "RandomCAM"
    requires_gradients = False

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.seed = check_seed(seed)
        super().__init__(model, layer, **kwargs)

    def compute_weights(self, features, grads, class_idx):
        shape = tf.shape(features)
        return random_weights(shape[-1], shape[0], self.seed)
