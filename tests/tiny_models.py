"""Small models and data shared by the tests (built with random weights, nothing downloaded)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


def gap_model(
    size: int = 16, channels: int = 3, classes: int = 4, head: str = "dense_softmax"
) -> keras.Model:
    """conv -> conv -> GlobalAveragePooling2D -> Dense, with the final softmax in various forms.

    Args:
        head: `"dense_softmax"` (Dense(activation="softmax")), `"softmax_layer"` (Dense then a
            Softmax layer), `"activation"` (Dense then Activation("softmax")), `"logits"` (no
            softmax) or `"dropout"` (Dropout between GAP and a softmax Dense).
    """
    inputs = keras.Input((size, size, channels))
    x = layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    if head == "dropout":
        x = layers.Dropout(0.5)(x)
    activation = "softmax" if head in ("dense_softmax", "dropout") else None
    x = layers.Dense(classes, activation=activation, name="classifier")(x)
    if head == "softmax_layer":
        x = layers.Softmax()(x)
    elif head == "activation":
        x = layers.Activation("softmax")(x)
    return keras.Model(inputs, x, name=f"gap_{head}")


def split_model(size: int = 16, classes: int = 3) -> tuple[keras.Model, keras.Model, keras.Model]:
    """A non-GAP classifier built as `head(features(x))`, for reference gradients.

    Returns:
        `(model, features, head)`: the full Functional model and its two halves, sharing layers.
    """
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="target")(x)
    features = keras.Model(inputs, x, name="features")
    feature_input = keras.Input(x.shape[1:])
    y = layers.MaxPooling2D()(feature_input)
    y = layers.Conv2D(6, 3, activation="tanh")(y)
    y = layers.Flatten()(y)
    y = layers.Dense(classes, activation="softmax")(y)
    head = keras.Model(feature_input, y, name="head")
    model = keras.Model(inputs, head(features(inputs)), name="split")
    return model, features, head


def bright_box_data(
    n: int, size: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy images with one bright object whose *shape* is the class.

    Classes: 0 filled square, 1 cross, 2 hollow square (frame).

    Returns:
        `(images, labels, boxes)`: float32 `(n, size, size, 3)`, int32 `(n,)`, and int32
        `(n, 4)` boxes `(x0, y0, x1, y1)` with exclusive ends.
    """
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.35, (n, size, size, 3)).astype("float32")
    labels = (np.arange(n) % 3).astype("int32")
    rng.shuffle(labels)
    boxes = np.zeros((n, 4), "int32")
    side = size // 4
    for i in range(n):
        x0, y0 = rng.integers(0, size - side, 2)
        patch = np.zeros((side, side), bool)
        if labels[i] == 0:
            patch[:] = True
        elif labels[i] == 2:
            patch[:2], patch[-2:], patch[:, :2], patch[:, -2:] = True, True, True, True
        else:
            patch[side // 2 - 1 : side // 2 + 1, :] = True
            patch[:, side // 2 - 1 : side // 2 + 1] = True
        region = images[i, y0 : y0 + side, x0 : x0 + side]
        region[patch] = 1.0
        boxes[i] = (x0, y0, x0 + side, y0 + side)
    return images, labels, boxes


def trained_box_model(size: int = 32, seed: int = 0) -> tuple[keras.Model, tuple]:
    """A small GAP-head CNN trained for a few seconds on `bright_box_data`.

    Returns:
        `(model, (images, labels, boxes))` with held-out data the model did not train on.
    """
    keras.utils.set_random_seed(seed)
    train_x, train_y, _ = bright_box_data(960, size, seed)
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy"
    )
    model.fit(train_x, train_y, batch_size=32, epochs=6, verbose=0)
    return model, bright_box_data(64, size, seed + 1)


def argmax_in_box(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Whether each map's maximum lies inside its box (exclusive ends)."""
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    rows, cols = np.unravel_index(flat, maps.shape[1:])
    return (
        (cols >= boxes[:, 0]) & (cols < boxes[:, 2]) & (rows >= boxes[:, 1]) & (rows < boxes[:, 3])
    )


def rescaling_gap_model(
    dtype: str = "float32", shape: tuple[int, int, int] = (24, 40, 3), classes: int = 3
) -> keras.Model:
    """Input of `dtype` -> Rescaling(1/255) -> conv "conv" (same padding) -> GAP -> softmax Dense.

    With "same" padding the feature map is on the input grid, so `gap_cam_reference` gives
    CAM (and Grad-CAM of the logit) exactly, without any upsampling.
    """
    inputs = keras.Input(shape, dtype=dtype)
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"rescaling_gap_{dtype}")


def gap_cam_reference(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """CAM of a `rescaling_gap_model`, by hand: min-max of `ReLU(sum_k W_kc A_k)`, `(B, H, W)`.

    For a conv -> GAP -> Dense head this is also Grad-CAM (and HiResCAM) of the logit: the
    gradient of logit c with respect to `A_k` is `W_kc / (h * w)` at every position.
    """
    features = keras.Model(model.inputs[0], model.get_layer("conv").output)
    activations = np.asarray(features(images)).astype(np.float64)
    kernel = model.get_layer("classifier").kernel.numpy().astype(np.float64)
    maps = np.maximum(np.einsum("bhwk,kb->bhw", activations, kernel[:, classes]), 0.0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


TTA_CALLS = (
    r"call 0: 'backbone' called on 'flip[^']*'.*call 1: 'backbone' called on the model input"
)
"""How keras_cam's refusal lists the calls of `tta_model`'s backbone (a regular expression)."""


def tta_model(height: int = 24, width: int = 40, classes: int = 3) -> keras.Model:
    """Test-time augmentation: the nested conv backbone "backbone" (one Conv2D "shared") runs on
    the image and on its horizontal flip; each branch is GAP -> Dense "classifier" (logits,
    one layer for both branches), and the two logits are averaged.

    Keras runs the flip's branch first: `layer_call=0` of "shared" (or "backbone") is the call
    on the flip, `layer_call=1` the call on the image (`TTA_CALLS` matches the listing).
    """
    inputs = keras.Input((height, width, 3))
    conv = layers.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    backbone = keras.Model(inputs, conv(inputs), name="backbone")
    inputs = keras.Input((height, width, 3))
    pool = layers.GlobalAveragePooling2D()
    dense = layers.Dense(classes, name="classifier")
    flipped = keras.ops.flip(inputs, axis=2)
    branches = [dense(pool(backbone(inputs))), dense(pool(backbone(flipped)))]
    return keras.Model(inputs, layers.Average()(branches), name="tta")


def tta_gradcam_reference(
    model: keras.Model, images: np.ndarray, classes: np.ndarray, flipped: bool
) -> np.ndarray:
    """Grad-CAM of `tta_model`'s averaged logit at the call of "shared" on the image
    (`flipped=False`) or on its flip (`flipped=True`), by hand, on the image's pixels,
    `(B, H, W)`.

    The gradient of the averaged logit c with respect to the features `A` of one branch is
    `W_kc / (2 h w)` at every position, so the map is the min-max of `ReLU(sum_k W_kc A_k)`;
    the flipped branch's map is flipped back onto the image.
    """
    seen = images[:, :, ::-1] if flipped else images
    activations = np.asarray(model.get_layer("backbone")(seen)).astype(np.float64)
    kernel = model.get_layer("classifier").kernel.numpy().astype(np.float64)
    maps = np.maximum(np.einsum("bhwk,kb->bhw", activations, kernel[:, classes]), 0.0)
    maps = maps[:, :, ::-1] if flipped else maps
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def oblong_split_model(classes: int = 4) -> tuple[keras.Model, keras.Model, keras.Model]:
    """A 24x40 classifier built as `head(features(x))`, with a curved (tanh) head.

    `features` ends at the ReLU conv layer `"target"` (12x20, 6 channels, after 2x2 average
    pooling); `head` is a tanh conv, GlobalAveragePooling2D and a softmax Dense, so the logits
    are not linear in the features (second derivatives are non-zero).

    Returns:
        `(model, features, head)`: the full Functional model and its two halves, sharing layers.
    """
    inputs = keras.Input((24, 40, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="target")(x)
    features = keras.Model(inputs, x, name="oblong_features")
    feature_input = keras.Input(x.shape[1:])
    y = layers.Conv2D(5, 3, activation="tanh")(feature_input)
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dense(classes, activation="softmax", name="classifier")(y)
    head = keras.Model(feature_input, y, name="oblong_head")
    model = keras.Model(inputs, head(features(inputs)), name="oblong")
    return model, features, head


class CountingIdentity(layers.Layer):
    """The identity; counts the Python runs of `call`, i.e. the traces of functions calling it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.runs = 0

    def call(self, inputs):
        self.runs += 1
        return inputs
