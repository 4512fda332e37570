"""Give any convolutional base the GAP -> Dense head that CAM needs, and fine-tune it.

`retrofit_gap` builds `conv base -> GlobalAveragePooling2D -> (Dropout) -> Dense` around a
`keras.applications` base or the user's own convolutional model; `fine_tune_gap` trains the
new head, then optionally the top of the base at a lower learning rate (the usual two-stage
transfer-learning recipe).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Union

import keras
import numpy as np
import tensorflow as tf
from keras import layers as klayers

from keras_cam.surgery import (
    find_conv_layer,
    find_gap_head,
    is_graph_model,
    is_spatial,
    iter_layers,
    iter_nested_models,
    output_call,
    output_shape,
    spatial_layers,
)

Unfreeze = Union[bool, str, int]
"""Which base layers train: `False`, `True`, `"last_block"` or the number of top layers."""


class Backbone(NamedTuple):
    """A `keras.applications` base: its constructor, training input size and preprocessing.

    Attributes:
        constructor: e.g. `keras.applications.VGG16`.
        image_size: the side of the square images it was trained on (224, 299, ...).
        preprocess_input: its `keras.applications.<module>.preprocess_input`, which takes
            0-255 RGB images (an identity for the families that rescale inside the model).
    """

    constructor: Callable[..., keras.Model]
    image_size: int
    preprocess_input: Callable[..., Any]


_apps = keras.applications
BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone(_apps.VGG16, 224, _apps.vgg16.preprocess_input),
    "vgg19": Backbone(_apps.VGG19, 224, _apps.vgg19.preprocess_input),
    "resnet50": Backbone(_apps.ResNet50, 224, _apps.resnet.preprocess_input),
    "resnet101": Backbone(_apps.ResNet101, 224, _apps.resnet.preprocess_input),
    "resnet152": Backbone(_apps.ResNet152, 224, _apps.resnet.preprocess_input),
    "resnet50v2": Backbone(_apps.ResNet50V2, 224, _apps.resnet_v2.preprocess_input),
    "resnet101v2": Backbone(_apps.ResNet101V2, 224, _apps.resnet_v2.preprocess_input),
    "resnet152v2": Backbone(_apps.ResNet152V2, 224, _apps.resnet_v2.preprocess_input),
    "mobilenet": Backbone(_apps.MobileNet, 224, _apps.mobilenet.preprocess_input),
    "mobilenetv2": Backbone(_apps.MobileNetV2, 224, _apps.mobilenet_v2.preprocess_input),
    "efficientnetb0": Backbone(_apps.EfficientNetB0, 224, _apps.efficientnet.preprocess_input),
    "efficientnetb1": Backbone(_apps.EfficientNetB1, 240, _apps.efficientnet.preprocess_input),
    "efficientnetb2": Backbone(_apps.EfficientNetB2, 260, _apps.efficientnet.preprocess_input),
    "efficientnetb3": Backbone(_apps.EfficientNetB3, 300, _apps.efficientnet.preprocess_input),
    "efficientnetv2b0": Backbone(
        _apps.EfficientNetV2B0, 224, _apps.efficientnet_v2.preprocess_input
    ),
    "densenet121": Backbone(_apps.DenseNet121, 224, _apps.densenet.preprocess_input),
    "densenet169": Backbone(_apps.DenseNet169, 224, _apps.densenet.preprocess_input),
    "densenet201": Backbone(_apps.DenseNet201, 224, _apps.densenet.preprocess_input),
    "inceptionv3": Backbone(_apps.InceptionV3, 299, _apps.inception_v3.preprocess_input),
    "inceptionresnetv2": Backbone(
        _apps.InceptionResNetV2, 299, _apps.inception_resnet_v2.preprocess_input
    ),
    "xception": Backbone(_apps.Xception, 299, _apps.xception.preprocess_input),
    "convnexttiny": Backbone(_apps.ConvNeXtTiny, 224, _apps.convnext.preprocess_input),
}
"""`retrofit_gap` base names -> `Backbone` (constructor, input size, preprocessing)."""

_VGG = ("vgg16", "vgg19")
_POOLS = (klayers.MaxPooling2D, klayers.AveragePooling2D)


def _canonical(name: str) -> str:
    return "".join(name.lower().split()).replace("-", "").replace("_", "")


def retrofit_gap(
    base: str | keras.layers.Layer,
    num_classes: int,
    input_shape: Sequence[int | None] | None = None,
    weights: str | os.PathLike | None = "imagenet",
    train_base: Unfreeze = False,
    dropout: float = 0.0,
    remove_last_pool: bool | None = None,
    name: str | None = None,
) -> keras.Model:
    """Builds conv base -> GlobalAveragePooling2D -> (Dropout) -> Dense, the head CAM needs.

    The base is a `keras.applications` model without its old head (`include_top=False`) or
    your own convolutional model; it is called as a nested model, so its layers and weights
    are shared, never copied. The returned model is not compiled: use `fine_tune_gap`, or
    `compile` and `fit` it yourself.

    Preprocessing stays yours: pass 0-255 RGB images through the base's
    `keras.applications.<module>.preprocess_input` (also at `BACKBONES[name].preprocess_input`),
    with `<module>` one of `vgg16`, `vgg19`, `resnet` (resnet50/101/152), `resnet_v2`,
    `mobilenet`, `mobilenet_v2`, `densenet`, `inception_v3`, `inception_resnet_v2` or
    `xception`. EfficientNet, EfficientNetV2 and ConvNeXt rescale inside the model: give them
    the 0-255 pixels as they are (their `preprocess_input` is the identity).

    Args:
        base: a name from `BACKBONES` ("vgg16", "vgg19", "resnet50", "mobilenetv2",
            "efficientnetb0", "densenet121", "inceptionv3", "xception", ...; case, `-` and
            `_` are ignored), or a Keras model or layer that outputs spatial feature maps
            `(batch, height, width, channels)`, e.g. your own classifier cut at its last
            convolution: `keras.Model(m.inputs, m.get_layer("last_conv").output)`.
        num_classes: number of classes, at least 1. 2 or more give a softmax Dense layer;
            1 gives a single sigmoid unit (binary: the probability of the positive class;
            CAM then explains class 1 as the positive class and class 0 as its complement).
        input_shape: `(height, width, channels)` of the images. Defaults to `None`: the
            base's training size for a name (`(224, 224, 3)`, `(299, 299, 3)` for
            inceptionv3, inceptionresnetv2 and xception, ...), the model's own input shape
            for a model (a plain layer needs it).
        weights: for a name, `"imagenet"` (downloaded by Keras), `None` (random
            initialization) or the path of a weights file saved from the same base without
            its top (`base.save_weights("base.weights.h5")`). For a model or layer, a path
            loads that file into it; `"imagenet"` and `None` keep the weights it has.
            Defaults to `"imagenet"`.
        train_base: which base layers train. `False` freezes the base (only the new head
            trains), `True` trains all of it, `"last_block"` only its last resolution stage
            (the layers from the first one whose output has the final feature map's size:
            block5 of VGG, conv5 of ResNet, ...), and an int `n` the top `n` layers that
            carry weights. BatchNormalization layers stay frozen (inference mode, the Keras
            fine-tuning recipe) unless the whole base trains. Defaults to `False`.
        dropout: dropout rate between the pooling and the Dense layer, in [0, 1); 0 adds no
            Dropout layer. Defaults to `0.0`.
        remove_last_pool: cut the base's final pooling layer, as the CAM paper does for VGG
            (a 14x14 instead of 7x7 map at 224x224). The base is rebuilt as a Functional
            model ending at the pool's input (`block5_conv3` for VGG16, `block5_conv4` for
            VGG19), sharing its layers. Defaults to `None`: `True` for VGG names, `False`
            otherwise.
        name: name of the returned model. Defaults to `None`: `"<base name>_gap"`.

    Returns:
        An uncompiled Functional `keras.Model` `images -> class probabilities`, with layers
        `input -> <base> -> avg_pool -> [top_dropout] -> predictions`.

    Raises:
        ValueError: an unknown base name (the known ones are listed), `num_classes < 1`,
            bad `dropout`, `train_base` or `input_shape`, `remove_last_pool=True` on a base
            that does not end with a pooling layer, a weights file for a plain layer, or a
            base whose output is not a spatial feature map.
        FileNotFoundError: `weights` is a path to a file that does not exist.
        TypeError: `base` is neither a name nor a Keras layer.

    Example:
    ```python
    model = keras_cam.retrofit_gap("vgg16", num_classes=10, input_shape=(224, 224, 3))
    model.get_layer("vgg16").output.shape    # (None, 14, 14, 512): last pool removed
    keras_cam.fine_tune_gap(model, (x_train, y_train), epochs=5)
    maps = keras_cam.CAM(model)(images)
    ```
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"`num_classes` must be an int; received {num_classes!r}.")
    if num_classes < 1:
        raise ValueError(
            f"`num_classes` must be at least 1 (1 gives a binary sigmoid head); "
            f"received {num_classes}."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be a rate in [0, 1); received {dropout!r}.")
    _check_unfreeze(train_base, "train_base")
    if weights not in (None, "imagenet"):
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"`weights` must be 'imagenet', None or the path of a weights file; the file "
                f"{weights!r} does not exist."
            )
    if isinstance(base, str):
        base, input_shape, remove_last_pool = _application_base(
            base, input_shape, weights, remove_last_pool
        )
    elif isinstance(base, keras.layers.Layer):
        input_shape = _user_input_shape(base, input_shape)
        if weights not in (None, "imagenet"):
            if not isinstance(base, keras.Model):
                raise ValueError(
                    f"`weights`={weights!r} can only be loaded into a keras.Model base; the base "
                    f"{base.name!r} is a {type(base).__name__} layer. Load its weights first."
                )
            base.load_weights(weights)
    else:
        raise TypeError(
            "`base` must be a keras.applications name (e.g. 'vgg16') or a Keras model or layer "
            f"that outputs spatial feature maps; received {type(base).__name__}."
        )
    if remove_last_pool:
        base = _without_last_pool(base)

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    features = base(inputs)
    _check_features(base, features)
    x = klayers.GlobalAveragePooling2D(name="avg_pool")(features)
    if dropout > 0:
        x = klayers.Dropout(dropout, name="top_dropout")(x)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    outputs = klayers.Dense(num_classes, activation=activation, name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name or f"{base.name}_gap")
    set_base_trainable(model, train_base)
    return model


def _application_base(
    base: str,
    input_shape: Sequence[int | None] | None,
    weights: str | None,
    remove_last_pool: bool | None,
) -> tuple[keras.Model, tuple, bool]:
    """Builds a named `keras.applications` base; returns it, its input shape and the pool cut."""
    key = _canonical(base)
    if key not in BACKBONES:
        raise ValueError(
            f"Unknown base {base!r}. Known keras.applications bases: {sorted(BACKBONES)}; "
            "or pass a Keras model that outputs spatial feature maps."
        )
    constructor, size, _ = BACKBONES[key]
    input_shape = tuple(input_shape) if input_shape is not None else (size, size, 3)
    model = constructor(include_top=False, weights=weights, input_shape=input_shape)
    return model, input_shape, key in _VGG if remove_last_pool is None else remove_last_pool


def _user_input_shape(
    base: keras.layers.Layer, input_shape: Sequence[int | None] | None
) -> tuple:
    """The input shape for a user's base: `input_shape`, checked against a model's own."""
    try:
        own = tuple(base.inputs[0].shape[1:]) if isinstance(base, keras.Model) else None
    except (AttributeError, ValueError):
        own = None
    if input_shape is None:
        if own is None:
            raise ValueError(
                f"`input_shape` is needed: the base {base.name!r} has no defined input shape. "
                "Pass `input_shape=(height, width, channels)`."
            )
        return own
    input_shape = tuple(input_shape)
    if own is not None and (
        len(own) != len(input_shape)
        or any(o is not None and o != i for o, i in zip(own, input_shape))
    ):
        raise ValueError(
            f"`input_shape`={input_shape} does not match the input shape {own} of the base "
            f"{base.name!r}. Pass `input_shape=None` to use the base's own."
        )
    return input_shape


def _without_last_pool(base: keras.layers.Layer) -> keras.Model:
    """The base rebuilt to end at the input of its final pooling layer (layers shared)."""
    last, pool_input = output_call(base) if is_graph_model(base) else (base, None)
    if not isinstance(last, _POOLS):
        raise ValueError(
            "`remove_last_pool=True` needs a Functional or Sequential base that ends with a "
            f"MaxPooling2D or AveragePooling2D layer; the base {base.name!r} ends with "
            f"{type(last).__name__}. Pass `remove_last_pool=False`."
        )
    return keras.Model(base.inputs, pool_input, name=base.name)


def _check_features(base: keras.layers.Layer, features: Any) -> None:
    """Raises unless the base's output is one spatial feature map."""
    shape = tuple(features.shape) if isinstance(features, keras.KerasTensor) else None
    if is_spatial(shape):
        return
    if shape is not None and len(shape) == 4:
        hint = "Use a larger `input_shape` (or `remove_last_pool=True`)"
    elif is_graph_model(base) and spatial_layers(base):
        last = find_conv_layer(base).name
        hint = (
            f"Its last layer with a spatial output is {last!r}: pass "
            f"`keras.Model(base.inputs, base.get_layer({last!r}).output)`"
        )
    else:
        hint = "Pass a convolutional base that ends at its last convolution"
    raise ValueError(
        f"The base {base.name!r} must output spatial feature maps (batch, height, width, "
        f"channels) with height and width > 1; its output has shape "
        f"{shape if shape is not None else type(features).__name__}. {hint}."
    )


def _check_unfreeze(value: Any, argument: str) -> None:
    is_count = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
    if not (isinstance(value, bool) or value == "last_block" or is_count):
        raise ValueError(
            f"`{argument}` must be True, False, 'last_block' or a number of layers >= 1; "
            f"received {value!r}."
        )


def set_base_trainable(model: keras.Model, train_base: Unfreeze) -> None:
    """Sets which layers of a GAP-head model's base train; the head always trains.

    Args:
        model: a conv -> GlobalAveragePooling2D -> Dense model (see `retrofit_gap`).
        train_base: `False` (base frozen), `True` (everything trains), `"last_block"` (the
            base's last resolution stage: the layers from the first one whose output has the
            size of the last spatial feature map) or an int `n` (the top `n` base layers that
            carry weights). BatchNormalization layers stay frozen unless `train_base=True`.

    Raises:
        ValueError: a bad `train_base`, a model without a GAP -> Dense head, or
            `"last_block"` on a model whose feature map size is not fixed.
    """
    _check_unfreeze(train_base, "train_base")
    head = find_gap_head(model)
    # Keras skips `layer.trainable = value` when the flag already has that value (it would not
    # reach the sublayers), so every container and every layer is set explicitly.
    for container in (model, *(nested for _, nested in iter_nested_models(model))):
        container.trainable = True
    base_layers = [
        layer
        for _, layer in iter_layers(model)
        if not isinstance(layer, klayers.InputLayer) and layer not in head.layers
    ]
    trained: list[keras.layers.Layer] = []
    if train_base is True:
        trained = base_layers
    elif train_base == "last_block":
        size = output_shape(find_conv_layer(model))[1:3]
        if None in size:
            raise ValueError(
                f"`'last_block'` needs a fixed input size, but model {model.name!r} has feature "
                f"maps of size {size}. Build it with a fixed `input_shape`, or pass a number of "
                "layers instead."
            )
        start = next(
            i
            for i, layer in enumerate(base_layers)
            if (output_shape(layer) or ())[1:3] == size
        )
        trained = base_layers[start:]
    elif train_base is not False:
        weighted = [
            layer
            for layer in base_layers
            if layer.weights and not isinstance(layer, klayers.BatchNormalization)
        ]
        trained = weighted[-train_base:]
    for layer in base_layers:
        layer.trainable = layer in trained and (
            train_base is True or not isinstance(layer, klayers.BatchNormalization)
        )
    for layer in head.layers:
        layer.trainable = True


def _label_shape(train_data: Any) -> tuple[tuple, tuple]:
    """Shapes of the images and labels of `(x, y)` arrays or a `tf.data.Dataset`."""
    if isinstance(train_data, tf.data.Dataset):
        spec = train_data.element_spec
        if not isinstance(spec, tuple) or len(spec) < 2:
            raise ValueError(
                "`train_data` must be a tf.data.Dataset of (images, labels) or (images, labels, "
                f"sample_weights) batches; its elements are {spec}."
            )
        return tuple(spec[0].shape), tuple(spec[1].shape)
    if isinstance(train_data, tuple) and len(train_data) == 2:
        return tuple(np.shape(train_data[0])), tuple(np.shape(train_data[1]))
    raise TypeError(
        "`train_data` must be a tuple (images, labels) of arrays or a batched tf.data.Dataset "
        f"of (images, labels); received {type(train_data).__name__}."
    )


def _loss_for(model: keras.Model, train_data: Any, head: str | None) -> keras.losses.Loss:
    """The cross-entropy matching the model's head (as `head` reads it) and the labels' form."""
    head = find_gap_head(model, head).head
    units = head.units
    if head.kind in ("sigmoid", "sigmoid_logits") and units > 1:
        raise ValueError(
            f"`fine_tune_gap` trains single-label classifiers, but model {model.name!r} has "
            f"{units} sigmoid outputs (multi-label): compile and fit it yourself."
        )
    if head.kind == "linear":
        raise ValueError(
            f"`fine_tune_gap` trains classifiers, but model {model.name!r} ends with a single "
            "linear unit, read as a raw score (a regression): compile and fit it yourself with "
            "a regression loss, or pass `head='logits'` if it is a binary logit."
        )
    from_logits = head.kind in ("logits", "sigmoid_logits")
    image_shape, label_shape = _label_shape(train_data)
    per_image = label_shape[len(image_shape) - 3 :]  # drop the batch axis, if any
    if per_image in ((), (1,)):
        if units == 1:
            return keras.losses.BinaryCrossentropy(from_logits=from_logits)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    if per_image == (units,) and units > 1:
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
    raise ValueError(
        f"The labels must be integer classes (one per image) or one-hot vectors of length "
        f"{units} (the model's classes); received labels of shape {label_shape} for images of "
        f"shape {image_shape}."
    )


def fine_tune_gap(
    model: keras.Model,
    train_data: Any,
    validation_data: Any = None,
    epochs: int = 5,
    learning_rate: float = 1e-3,
    fine_tune_epochs: int = 0,
    fine_tune_learning_rate: float = 1e-5,
    unfreeze: Unfreeze = "last_block",
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    verbose: str | int = "auto",
    batch_size: int | None = None,
    head: str | None = None,
) -> keras.callbacks.History:
    """Trains a GAP-head model in two stages: the model as it is, then the top of the base.

    Stage 1 compiles with Adam(`learning_rate`) and trains `epochs` epochs with the
    trainable flags the model has (for a default `retrofit_gap` model: the new head only).
    Stage 2, when `fine_tune_epochs > 0`, unfreezes the base as `unfreeze` says (see
    `set_base_trainable`), recompiles with Adam(`fine_tune_learning_rate`) and continues
    for `fine_tune_epochs` more epochs, numbered on from stage 1 (`initial_epoch`). The
    model's trainable flags stay as stage 2 left them.

    The loss is chosen from the head and the labels: sparse categorical cross-entropy for
    integer labels `(B,)` or `(B, 1)`, categorical cross-entropy for one-hot labels
    `(B, num_classes)`, binary cross-entropy for a single-unit sigmoid head or binary logit
    (labels 0/1); `from_logits=True` when the head outputs logits (see
    `keras_cam.surgery.read_head`: several linear units, or `head="logits"`). A single linear
    unit is a raw score (a regression) unless `head="logits"` says it is a binary logit.
    Accuracy is reported too.
    Progress is Keras' own `fit` progress bar.

    Args:
        model: a conv -> GlobalAveragePooling2D -> Dense model, e.g. from `retrofit_gap`.
        train_data: a tuple `(images, labels)` of NumPy arrays or tensors, or a batched
            `tf.data.Dataset` of `(images, labels)` (or `(images, labels, sample_weights)`).
        validation_data: the same forms, passed to `fit`. Defaults to `None`.
        epochs: stage 1 epochs, at least 1. Defaults to `5`.
        learning_rate: stage 1 Adam learning rate. Defaults to `1e-3`.
        fine_tune_epochs: stage 2 epochs; 0 skips stage 2. Defaults to `0`.
        fine_tune_learning_rate: stage 2 Adam learning rate. Defaults to `1e-5`.
        unfreeze: the base layers stage 2 trains: `"last_block"`, `True` (all) or an int
            number of top layers with weights. Defaults to `"last_block"`.
        callbacks: Keras callbacks for both stages. Defaults to `None`.
        verbose: `fit`'s verbosity (`"auto"`, 0, 1 or 2). Defaults to `"auto"`.
        batch_size: batch size for array data (a dataset is already batched). Defaults to
            `None`: Keras' default, 32.
        head: how the model's output is read: `None` for automatic, or one of
            `keras_cam.surgery.HEADS`. Defaults to `None`.

    Returns:
        One `keras.callbacks.History` covering both stages: `history.epoch` runs from 0 to
        `epochs + fine_tune_epochs - 1` and `history.history[metric]` has one value per
        epoch.

    Raises:
        ValueError: a model without a GAP -> Dense head, a multi-label or raw-score (single
            linear unit) head, labels that fit neither form, or bad epoch counts, learning
            rates, `unfreeze` or `head`.
        TypeError: `train_data` of another type.

    Example:
    ```python
    model = keras_cam.retrofit_gap("vgg16", num_classes=4, input_shape=(128, 128, 3))
    x = keras.applications.vgg16.preprocess_input(images * 255.0)
    history = keras_cam.fine_tune_gap(
        model, (x, labels), epochs=5, fine_tune_epochs=3, unfreeze="last_block"
    )
    ```
    """
    for value, argument, minimum in (
        (epochs, "epochs", 1),
        (fine_tune_epochs, "fine_tune_epochs", 0),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"`{argument}` must be an int >= {minimum}; received {value!r}.")
    for value, argument in (
        (learning_rate, "learning_rate"),
        (fine_tune_learning_rate, "fine_tune_learning_rate"),
    ):
        if not value > 0:
            raise ValueError(f"`{argument}` must be > 0; received {value!r}.")
    if unfreeze is False:
        raise ValueError(
            "`unfreeze` must be True, 'last_block' or a number of layers >= 1; received False "
            "(to train the head only, set `fine_tune_epochs=0`)."
        )
    _check_unfreeze(unfreeze, "unfreeze")
    loss = _loss_for(model, train_data, head)
    x, y = train_data if isinstance(train_data, tuple) else (train_data, None)
    fit_args = dict(
        x=x,
        y=y,
        batch_size=batch_size,
        validation_data=validation_data,
        shuffle=not isinstance(train_data, tf.data.Dataset),  # a dataset shuffles itself
        callbacks=list(callbacks or []),
        verbose=verbose,
    )

    def run(rate: float, first_epoch: int, last_epoch: int) -> keras.callbacks.History:
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss, metrics=["accuracy"])
        return model.fit(**fit_args, epochs=last_epoch, initial_epoch=first_epoch)

    history = run(learning_rate, 0, epochs)
    if fine_tune_epochs:
        first = history
        set_base_trainable(model, unfreeze)
        history = run(fine_tune_learning_rate, epochs, epochs + fine_tune_epochs)
        history.epoch = first.epoch + history.epoch
        history.history = {
            key: first.history.get(key, []) + values for key, values in history.history.items()
        }
    return history
