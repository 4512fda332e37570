"""The demo model: a small CNN with a GAP -> Dense(softmax) head, trained on built-in shapes.

`keras-cam demo`, the benchmarks and the quickstart notebook explain the same model: a few
convolutions, `GlobalAveragePooling2D` and a softmax `Dense` classifier, so every method,
CAM included, applies to it. `train_demo_model` fits it on `keras_cam.datasets.shapes` in
seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from keras_cam.datasets import SHAPE_NAMES, shapes

LAST_CONV_LAYER = "last_conv"
"""Name of the demo model's last convolution, the layer every method explains by default."""


def build_demo_model(
    image_size: int = 64, num_classes: int = len(SHAPE_NAMES), *, filters: int = 16
) -> keras.Model:
    """Builds the demo classifier: four convolutions, then GAP -> Dense(softmax).

    The layers are `Conv(f) -> MaxPool -> Conv(2f) -> MaxPool -> Conv(4f) -> Conv(4f)`, each
    convolution 3x3 with batch normalization and ReLU, then `GlobalAveragePooling2D` and a
    softmax `Dense` layer. The last convolution, named `"last_conv"`, has a quarter of the
    input resolution (16x16 for 64x64 images) and is the layer the CAM methods pick.

    Args:
        image_size: side of the square RGB input images, at least 8. Defaults to `64`.
        num_classes: number of classes, at least 2. Defaults to `4` (the classes of
            `keras_cam.datasets.shapes`).
        filters: channels `f` of the first convolution, at least 1. Defaults to `16`.

    Returns:
        An uncompiled Functional `keras.Model` taking float images in [0, 1], shape
        `(B, image_size, image_size, 3)`, and returning class probabilities `(B, num_classes)`.

    Example:
    ```python
    model = build_demo_model(64, num_classes=4)
    kc.CAM(model).layer.name   # "last_conv"
    ```
    """
    for name, value, minimum in (
        ("image_size", image_size, 8),
        ("num_classes", num_classes, 2),
        ("filters", filters, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"`{name}` must be an int >= {minimum}; received {value!r}.")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for index, width in enumerate((filters, 2 * filters, 4 * filters, 4 * filters)):
        name = LAST_CONV_LAYER if index == 3 else f"conv{index + 1}"
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
        if index < 2:
            x = layers.MaxPooling2D(name=f"pool{index + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="demo_cnn")


def train_demo_model(
    epochs: int = 4,
    n_train: int = 2048,
    image_size: int = 64,
    seed: int = 0,
    *,
    num_classes: int = len(SHAPE_NAMES),
    batch_size: int = 32,
    verbose: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Trains `build_demo_model` on `keras_cam.datasets.shapes(n_train, image_size, seed=seed)`.

    Adam with a learning rate of 3e-3, sparse categorical cross-entropy. The global random
    seeds (Python, NumPy, TensorFlow) are set from `seed` with `keras.utils.set_random_seed`
    first, so a run is repeatable. Evaluate on images drawn with another seed, e.g.
    `shapes(256, image_size, seed=seed + 1)`: those the model never saw.

    Args:
        epochs: passes over the training images, at least 1. Defaults to `4`.
        n_train: number of training images, at least 1. Defaults to `2048`.
        image_size: side of the square images. Defaults to `64`.
        seed: seed of the training images and of the weights' initialization. Defaults to `0`.
        num_classes: number of shape classes, from 2 to 4. Defaults to `4`.
        batch_size: images per training step. Defaults to `32`.
        verbose: Keras' `fit` verbosity: 0 silent, 1 progress bar, 2 one line per epoch.
            Defaults to `0`.
        callbacks: Keras callbacks passed to `fit`, e.g. a `keras_cam.HeatmapCallback`.
            Defaults to `None`.

    Returns:
        `(model, history)`: the trained, compiled model (its metric is `"accuracy"`) and the
        `keras.callbacks.History` of `fit`.

    Example:
    ```python
    model, history = train_demo_model(epochs=4, n_train=2048)
    images, labels, boxes = kc.datasets.shapes(256, seed=1)
    loss, accuracy = model.evaluate(images, labels, verbose=0)
    ```
    """
    images, labels, _ = shapes(n_train, image_size, seed=seed, num_classes=num_classes)
    keras.utils.set_random_seed(seed)
    model = build_demo_model(image_size, num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        images,
        labels,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=verbose,
        callbacks=callbacks,
    )
    return model, history
