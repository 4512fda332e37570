"""CAM: weights read from the GAP -> Dense head, the head search, and its errors."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers
from tiny_models import gap_model, split_model

import keras_cam as kc
from keras_cam.methods.cam import CAM, cam_weights
from keras_cam.surgery import find_gap_head

CLASSES = 4


def _images(n, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


def _last_conv_features(model, images):
    """The `last_conv` feature maps A of a model, computed outside keras_cam."""
    return keras.Model(model.inputs[0], model.get_layer("last_conv").output)(images).numpy()


def _conv_base(size=16, name="base"):
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    return keras.Model(inputs, x, name=name)


def _nested_base():
    """A conv base nested in a Sequential: base -> GAP -> Dropout -> Dense(softmax)."""
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            _conv_base(),
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.3),
            layers.Dense(CLASSES, activation="softmax", name="classifier"),
        ],
        name="nested_base",
    )


def _nested_head():
    """The head is its own model: conv layers -> Sequential([GAP, Dense, Softmax])."""
    head = keras.Sequential(
        [
            keras.Input((16, 16, 8)),
            layers.GlobalAveragePooling2D(),
            layers.Dense(CLASSES, name="classifier"),
            layers.Softmax(),
        ],
        name="head",
    )
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(inputs)
    return keras.Model(inputs, head(x), name="nested_head")


def _vgg16_in_sequential():
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    return keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            base,
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.5),
            layers.Dense(CLASSES, activation="softmax"),
        ]
    )


MODELS = {
    "dense_softmax": lambda: gap_model(classes=CLASSES, head="dense_softmax"),
    "softmax_layer": lambda: gap_model(classes=CLASSES, head="softmax_layer"),
    "activation_layer": lambda: gap_model(classes=CLASSES, head="activation"),
    "logits": lambda: gap_model(classes=CLASSES, head="logits"),
    "dropout": lambda: gap_model(classes=CLASSES, head="dropout"),
    "nested_base": _nested_base,
    "nested_head": _nested_head,
    "vgg16_in_sequential": _vgg16_in_sequential,
}


# ---------------------------------------------------------------- golden weight tests
def test_cam_weights_are_kernel_columns():
    kernel = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "float32")  # (C=2, classes=3)
    weights = cam_weights(kernel, tf.constant([2, 0, 2]))
    np.testing.assert_array_equal(weights.numpy(), [[3.0, 6.0], [1.0, 4.0], [3.0, 6.0]])


def test_cam_weights_expand_a_single_unit_like_the_logits():
    # surgery turns one unit z into logits [-z, z]: class 0 weighs -w, class 1 weighs +w
    kernel = np.array([[0.5], [-2.0]], "float32")
    weights = cam_weights(kernel, tf.constant([1, 0]))
    np.testing.assert_array_equal(weights.numpy(), [[0.5, -2.0], [-0.5, 2.0]])


def test_compute_weights_reads_the_dense_kernel():
    model = gap_model(classes=CLASSES)
    kernel = model.get_layer("classifier").kernel.numpy()
    weights = CAM(model).compute_weights(None, None, tf.constant([3, 1]))
    np.testing.assert_array_equal(weights.numpy(), kernel[:, [3, 1]].T)


# ---------------------------------------------------------------- maps
@pytest.mark.parametrize("variant", sorted(MODELS))
def test_cam_equals_gradcam_with_logit_score(variant):
    model = MODELS[variant]()
    size = model.inputs[0].shape[1]
    images = _images(3, size)
    cam = CAM(model)
    gradcam = kc.GradCAM(model, layer=cam.layer, score="logit")
    for targets in (None, 0, 2, [3, 1, 0]):
        np.testing.assert_allclose(cam(images, targets), gradcam(images, targets), atol=1e-5)


@pytest.mark.parametrize("classes", [0, 1, 3])
def test_cam_maps_are_the_kernel_weighted_sum_of_feature_maps(classes):
    model = gap_model(classes=CLASSES, head="dropout")
    images = _images(4)
    features = _last_conv_features(model, images)
    kernel = model.get_layer("classifier").kernel.numpy()
    # map_c = sum_k w_k^c A^k; BaseCAM then applies ReLU
    expected = np.maximum(np.einsum("bhwk,k->bhw", features, kernel[:, classes]), 0.0)
    maps = CAM(model)(images, classes, upsample=False, normalize=False)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)


def test_binary_sigmoid_head_explains_both_classes():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1, activation="sigmoid", name="classifier")(x)
    model = keras.Model(inputs, outputs)
    images = _images(2)
    features = _last_conv_features(model, images)
    positive = features @ model.get_layer("classifier").kernel.numpy()[:, 0]
    cam = CAM(model)
    assert cam.num_classes == 2
    np.testing.assert_allclose(
        cam(images, 1, upsample=False, normalize=False), np.maximum(positive, 0), rtol=1e-5
    )
    np.testing.assert_allclose(
        cam(images, 0, upsample=False, normalize=False), np.maximum(-positive, 0), rtol=1e-5
    )
    gradcam = kc.GradCAM(model)
    for target in (0, 1):
        np.testing.assert_allclose(cam(images, target), gradcam(images, target), atol=1e-5)


def test_cam_reads_the_kernel_at_call_time():
    model = gap_model(classes=CLASSES)
    cam = CAM(model)
    images = _images(2)
    before = cam(images, 0, normalize=False)
    dense = model.get_layer("classifier")
    dense.kernel.assign(-dense.kernel)
    features = _last_conv_features(model, images)
    expected = np.maximum(np.einsum("bhwk,k->bhw", features, dense.kernel.numpy()[:, 0]), 0)
    np.testing.assert_allclose(cam(images, 0, upsample=False, normalize=False), expected, rtol=1e-5)
    assert not np.allclose(before, cam(images, 0, normalize=False))


def test_default_maps_follow_the_shared_contract():
    model = gap_model(classes=CLASSES)
    maps = CAM(model)(_images(3))
    assert maps.shape == (3, 16, 16) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert CAM(model)(_images(1)[0]).shape == (16, 16)


# ---------------------------------------------------------------- the head search
def test_head_is_found_in_keras_applications_models():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=3)
    head = find_gap_head(model)
    assert (head.features.name, head.dense.name, head.head.kind) == (
        "out_relu",
        "predictions",
        "softmax",
    )
    assert CAM(model).layer.name == "out_relu"


@pytest.mark.parametrize(
    ("variant", "activation", "head_layers"),
    [
        ("dense_softmax", "softmax", ["GlobalAveragePooling2D", "Dense"]),
        ("softmax_layer", "softmax", ["GlobalAveragePooling2D", "Dense", "Softmax"]),
        ("activation_layer", "softmax", ["GlobalAveragePooling2D", "Dense", "Activation"]),
        ("logits", "logits", ["GlobalAveragePooling2D", "Dense"]),
        ("dropout", "softmax", ["GlobalAveragePooling2D", "Dropout", "Dense"]),
        ("nested_base", "softmax", ["GlobalAveragePooling2D", "Dropout", "Dense"]),
        ("nested_head", "softmax", ["GlobalAveragePooling2D", "Dense", "Softmax"]),
    ],
)
def test_find_gap_head_describes_the_head(variant, activation, head_layers):
    head = find_gap_head(MODELS[variant]())
    assert head.features.name == "last_conv"
    assert head.dense.name == "classifier"
    assert head.head.kind == activation
    assert [type(layer).__name__ for layer in head.layers] == head_layers


def test_layer_argument_must_be_the_pooled_layer():
    model = _nested_base()
    assert CAM(model, layer="last_conv").layer.name == "last_conv"
    assert CAM(model, layer=model.get_layer("base")).layer.name == "last_conv"  # its output
    with pytest.raises(ValueError, match=r"defined only on .*'last_conv'; received .*'conv2d"):
        CAM(model, layer=model.get_layer("base").layers[1])


def test_registry_and_display_name():
    assert kc.get_method("cam") is CAM
    assert CAM.display_name == "CAM" and CAM.requires_gradients is False


# ---------------------------------------------------------------- errors
def _global_max_pool_model():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    x = layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x))


def _relu_dense_model():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="relu")(x))


def _softmax_after_softmax_dense_model():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, layers.Softmax()(x))


@pytest.mark.parametrize(
    ("build", "found"),
    [
        (lambda: split_model()[0], r"'dense.*' \(Dense\) <- 'flatten.*' \(Flatten\)"),
        (
            lambda: keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=3),
            r"'predictions' \(Dense\) <- 'fc2' \(Dense\)",
        ),
        (_global_max_pool_model, r"\(GlobalMaxPooling2D\)"),
        (_relu_dense_model, r"'dense.*' \(Dense\)\. Build"),
        (_softmax_after_softmax_dense_model, r"\(Softmax\) <- 'dense.*' \(Dense\)\. Build"),
    ],
)
def test_model_without_gap_dense_head_names_retrofit_gap(build, found):
    model = build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=rf"GlobalAveragePooling2D.*{found}.*retrofit_gap"):
            CAM(model)
    # Only the relu head is unrecognised: it is said once, with how it was read.
    expected = 1 if build is _relu_dense_model else 0
    assert len([w for w in caught if "activation relu" in str(w.message)]) == expected


def test_callable_targets_are_refused():
    cam = CAM(gap_model(classes=CLASSES))
    with pytest.raises(ValueError, match=r"targets.*callable score.*GradCAM"):
        cam(_images(2), targets=lambda logits: logits[:, 0])


def test_subclassed_models_are_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="subclassed"):
        CAM(Net())
