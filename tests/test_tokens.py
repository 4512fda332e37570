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
    y = layers.Dense(2 * DIM, activation="gelu", name=f"block{index}_mlp1")(y)
    y = layers.Dense(DIM, name=f"block{index}_mlp2")(y)
    return layers.Add(name=f"block{index}_out")([x, y])


def build_vit(num_classes: int = 4, image_size: int = SIZE) -> keras.Model:
    """A hybrid ViT: a small convolutional stem (which makes it learn in seconds), a strided
    Conv2D patch embedding (4x4 patches), a class token, position embeddings, two pre-norm
    MultiHeadAttention blocks; the head reads the class token."""
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for _ in range(2):
        x = layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2D(DIM, PATCH, strides=PATCH, name="patch_embedding")(x)
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
    images, labels, _ = kc.datasets.shapes(1024, SIZE, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=8, batch_size=16, verbose=0)
    return model


def test_the_automatic_layer_of_a_vit_is_the_last_attention_input():
    """After the last attention every token is processed alone, so only the class token of
    `final_norm` reaches the head: the last tokens that matter are the last block's input
    to its attention."""
    assert kc.find_conv_layer(build_vit()).name == "block1_norm1"


def _logits_from_last_tokens(model: keras.Model, residual, tokens):
    """The ViT's logits from the last block's normalized tokens, written out layer by layer."""
    get = model.get_layer
    x = get("block1_add1")([residual, get("block1_attention")(tokens, tokens)])
    y = get("block1_mlp2")(get("block1_mlp1")(get("block1_norm2")(x)))
    x = get("final_norm")(get("block1_out")([x, y]))
    head = model.layers[-1]
    return ops.matmul(x[:, 0], head.kernel) + head.bias


@pytest.mark.slow
def test_vit_maps_have_the_image_size_and_leave_the_class_token_out():
    """Grad-CAM by hand: the gradient of the class logit w.r.t. the last block's normalized
    tokens, averaged over the 64 patch tokens only (the class token, token 0, left out),
    weights those tokens; the 8x8 map is reshaped row-major and placed on the 32x32 image."""
    keras.utils.set_random_seed(2)
    model = build_vit()
    images = np.random.rand(2, SIZE, SIZE, 3).astype(np.float32)
    cam = kc.GradCAM(model, layer="block1_norm1", token_grid=(GRID, GRID))
    raw = cam(images, targets=[1, 3], upsample=False, normalize=False)
    assert raw.shape == (2, GRID, GRID)
    probe = keras.Model(
        model.inputs, [model.get_layer("block0_out").output, model.get_layer("block1_norm1").output]
    )
    residual, tokens = probe(tf.constant(images))
    with tf.GradientTape() as tape:
        tape.watch(tokens)
        logits = _logits_from_last_tokens(model, residual, tokens)
        score = tf.reduce_sum(tf.gather(logits, [1, 3], axis=1, batch_dims=1))
    np.testing.assert_allclose(ops.softmax(logits), model(images), rtol=1e-4, atol=1e-6)
    grads, tokens = tape.gradient(score, tokens).numpy(), tokens.numpy()
    weights = grads[:, 1:].mean(axis=1)  # patch tokens only
    expected = np.maximum(np.einsum("bnd,bd->bn", tokens[:, 1:], weights), 0)
    assert expected.max() > 0
    np.testing.assert_allclose(raw.reshape(2, -1), expected, rtol=1e-4, atol=1e-6)
    automatic = kc.GradCAM(model)(images, targets=[1, 3], upsample=False, normalize=False)
    np.testing.assert_allclose(automatic, raw, rtol=1e-6)
    placed = cam(images, targets=[1, 3], normalize=False)
    assert placed.shape == (2, SIZE, SIZE)
    # Patch cell (i, j) covers pixels [4i, 4i + 4) x [4j, 4j + 4): the grid spans the image
    # exactly, so the placed map is the bilinear resize (half-pixel centres) of the 8x8 map.
    resized = tf.image.resize(expected[..., None].reshape(2, GRID, GRID, 1), (SIZE, SIZE))
    np.testing.assert_allclose(placed, resized.numpy()[..., 0], rtol=1e-4, atol=1e-6)


def _pointing(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    peaks = np.stack(np.unravel_index(maps.reshape(len(maps), -1).argmax(1), maps.shape[1:]), 1)
    y, x = peaks[:, 0], peaks[:, 1]
    return (boxes[:, 0] <= x) & (x < boxes[:, 2]) & (boxes[:, 1] <= y) & (y < boxes[:, 3])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_vit_maps_point_at_the_object_more_often_than_a_centred_gaussian(trained_vit, method):
    images, labels, boxes = kc.datasets.shapes(64, SIZE, seed=9)
    accuracy = np.mean(trained_vit.predict(images, verbose=0).argmax(-1) == labels)
    assert accuracy > 0.6  # 4 classes: chance is 0.25
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
