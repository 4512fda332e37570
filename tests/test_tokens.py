"""Token models (issue 12, item 5): a vision transformer's `(B, N, D)` tokens explained on the
patch grid of its patch embedding, the class token left out, maps placed on the image.

The toy ViT is built here (a strided Conv2D patch embedding, a class token, position
embeddings, two MultiHeadAttention blocks) and trained briefly on `keras_cam.datasets.shapes`.
Expected values come from the test: a map computed by hand from the patch tokens' gradients,
and a centred-Gaussian baseline map for the pointing comparison.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, ops

import keras_cam as kc

SIZE = 32
PATCH = 4
GRID = SIZE // PATCH
DIM = 32


class ClassToken(layers.Layer):
    """Prepends a learned class token to `(B, N, D)` tokens."""

    def build(self, input_shape):
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="zeros")

    def call(self, tokens):
        batch = ops.shape(tokens)[0]
        return ops.concatenate([ops.tile(self.token, [batch, 1, 1]), tokens], axis=1)


class PositionEmbedding(layers.Layer):
    """Adds a learned embedding per token position."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=(1, *input_shape[1:]), initializer="random_normal")

    def call(self, tokens):
        return tokens + self.table


def _block(x, index: int):
    y = layers.LayerNormalization(name=f"block{index}_norm1")(x)
    y = layers.MultiHeadAttention(2, DIM // 2, name=f"block{index}_attention")(y, y)
    x = layers.Add(name=f"block{index}_add1")([x, y])
    y = layers.LayerNormalization(name=f"block{index}_norm2")(x)
    y = layers.Dense(2 * DIM, activation="gelu")(y)
    y = layers.Dense(DIM)(y)
    return layers.Add(name=f"block{index}_out")([x, y])


def build_vit(num_classes: int = 4, image_size: int = SIZE) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Conv2D(DIM, PATCH, strides=PATCH, name="patch_embedding")(inputs)
    x = layers.Reshape(((image_size // PATCH) ** 2, DIM))(x)
    x = PositionEmbedding()(ClassToken()(x))
    for index in range(2):
        x = _block(x, index)
    x = layers.LayerNormalization(name="final_norm")(x)
    class_token = layers.Lambda(lambda tokens: tokens[:, 0], name="take_class_token")(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(class_token))


@pytest.fixture(scope="module")
def trained_vit():
    keras.utils.set_random_seed(0)
    model = build_vit()
    images, labels, _ = kc.datasets.shapes(1536, SIZE, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=12, batch_size=64, verbose=0)
    return model


def test_the_automatic_layer_of_a_vit_is_the_last_token_output():
    assert kc.find_conv_layer(build_vit()).name == "final_norm"


def test_vit_maps_have_the_image_size_and_leave_the_class_token_out():
    """Grad-CAM by hand: the gradient of the class logit w.r.t. the final tokens, averaged
    over the 64 patch tokens only (the class token, token 0, left out), weights them; the
    8x8 map is then the mean of each 4x4 patch of the placed map."""
    keras.utils.set_random_seed(2)
    model = build_vit()
    images = np.random.rand(2, SIZE, SIZE, 3).astype(np.float32)
    cam = kc.GradCAM(model, layer="final_norm", token_grid=(GRID, GRID))
    raw = cam(images, targets=[1, 3], upsample=False, normalize=False)
    assert raw.shape == (2, GRID, GRID)
    norm = model.get_layer("final_norm")
    probe = keras.Model(model.inputs, [norm.output, model.layers[-1].input])
    dense = model.layers[-1]
    images_t = tf.constant(images)
    with tf.GradientTape() as tape:
        tokens, class_token = probe(images_t)
        tape.watch(tokens)
        logits = ops.matmul(tokens[:, 0], dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, [1, 3], axis=1, batch_dims=1))
    grads = tape.gradient(score, tokens).numpy()
    tokens = tokens.numpy()
    assert np.allclose(tokens[:, 0], class_token.numpy())
    weights = grads[:, 1:].mean(axis=1)  # patch tokens only
    expected = np.maximum(np.einsum("bnd,bd->bn", tokens[:, 1:], weights), 0)
    np.testing.assert_allclose(raw.reshape(2, -1), expected, rtol=1e-4, atol=1e-6)
    automatic = kc.GradCAM(model)(images, targets=[1, 3], upsample=False, normalize=False)
    np.testing.assert_allclose(automatic, raw, rtol=1e-6)
    placed = cam(images, targets=[1, 3], normalize=False)
    assert placed.shape == (2, SIZE, SIZE)
    # Patch cell (i, j) covers pixels [4i, 4i + 4): its centre pixels sit between cells.
    np.testing.assert_allclose(
        placed.reshape(2, GRID, PATCH, GRID, PATCH).mean(axis=(2, 4))[:, 2:-2, 2:-2],
        raw[:, 2:-2, 2:-2],
        rtol=0.2,
        atol=0.05 * raw.max(),
    )


def _pointing(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    peaks = np.stack(np.unravel_index(maps.reshape(len(maps), -1).argmax(1), maps.shape[1:]), 1)
    y, x = peaks[:, 0], peaks[:, 1]
    return (boxes[:, 0] <= x) & (x < boxes[:, 2]) & (boxes[:, 1] <= y) & (y < boxes[:, 3])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_vit_maps_point_at_the_object_more_often_than_a_centred_gaussian(trained_vit, method):
    images, labels, boxes = kc.datasets.shapes(64, SIZE, seed=9)
    accuracy = np.mean(trained_vit.predict(images, verbose=0).argmax(-1) == labels)
    assert accuracy > 0.5
    maps = kc.get_method(method)(trained_vit, verbose=0)(images, targets=labels)
    assert maps.shape == (64, SIZE, SIZE)
    centre = (SIZE - 1) / 2
    yy, xx = np.mgrid[:SIZE, :SIZE]
    gaussian = np.exp(-((yy - centre) ** 2 + (xx - centre) ** 2) / (2 * (SIZE / 4) ** 2))
    baseline = _pointing(np.broadcast_to(gaussian, maps.shape), boxes).mean()
    assert _pointing(maps, boxes).mean() > baseline


def test_tokens_that_are_not_a_grid_need_token_grid():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.Conv2D(DIM, PATCH, strides=PATCH)(inputs)
    x = layers.Reshape((GRID * GRID, DIM))(x)
    x = layers.Dense(DIM, name="tokens")(x)
    pooled = layers.GlobalAveragePooling1D()(x)
    without_grid = keras.Model(inputs, layers.Dense(3)(pooled))
    # Tokens that do not follow the conv's grid: its 8x8x32 map cut into 128 tokens of 16.
    flat = keras.Input((SIZE, SIZE, 3))
    tokens = layers.Reshape((2 * GRID * GRID, DIM // 2))(
        layers.Conv2D(DIM, PATCH, strides=PATCH)(flat)
    )
    tokens = layers.Dense(DIM, name="free_tokens")(tokens)
    free = keras.Model(flat, layers.Dense(3)(layers.GlobalAveragePooling1D()(tokens)))
    with pytest.raises(ValueError, match=r"128 tokens.*no patch embedding.*token_grid=\(h, w\)"):
        kc.GradCAM(free, layer="free_tokens")
    with pytest.raises(ValueError, match=r"128 tokens.*not the 12x12 patch grid"):
        kc.GradCAM(free, layer="free_tokens", token_grid=(12, 12))
    with pytest.raises(ValueError, match=r"`token_grid`=\(4, 16\) does not match.*8x8"):
        kc.GradCAM(without_grid, layer="tokens", token_grid=(4, 16))
    with pytest.raises(ValueError, match=r"`token_grid` must be None.*received \(8, 0\)"):
        kc.GradCAM(without_grid, layer="tokens", token_grid=(8, 0))
    maps = kc.GradCAM(free, layer="free_tokens", token_grid=(8, 16))(
        np.random.rand(SIZE, SIZE, 3).astype(np.float32)
    )
    assert maps.shape == (SIZE, SIZE)
