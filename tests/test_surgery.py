"""Model surgery: automatic layer choice, nested models, the logits/probabilities split."""

import keras
import numpy as np
import pytest
from keras import layers
from tiny_models import gap_model

import keras_cam as kc
from keras_cam.surgery import build_cam_model

APPLICATIONS = {
    # model: (constructor, expected automatic pick at the default input size)
    "VGG16": (keras.applications.VGG16, "block5_conv3"),
    "VGG19": (keras.applications.VGG19, "block5_conv4"),
    "ResNet50": (keras.applications.ResNet50, "conv5_block3_out"),
    "MobileNetV2": (keras.applications.MobileNetV2, "out_relu"),
    "InceptionV3": (keras.applications.InceptionV3, "mixed10"),
    "DenseNet121": (keras.applications.DenseNet121, "relu"),
    "EfficientNetB0": (keras.applications.EfficientNetB0, "top_activation"),
    "Xception": (keras.applications.Xception, "block14_sepconv2_act"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_automatic_layer_matches_design_table(name):
    constructor, expected = APPLICATIONS[name]
    model = constructor(weights=None)
    assert kc.find_conv_layer(model).name == expected


def _vgg_base(size=32):
    return keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))


def _nested_sequential(size=32):
    base = _vgg_base(size)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            base,
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.3),
            layers.Dense(3, activation="softmax"),
        ]
    )
    return model, base


def _nested_functional(size=32):
    base = _vgg_base(size)
    inputs = keras.Input((size, size, 3))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(layers.Dropout(0.3)(x))
    return keras.Model(inputs, outputs), base


@pytest.mark.parametrize("builder", [_nested_sequential, _nested_functional])
def test_nested_base_features_and_predictions(builder):
    model, base = builder(64)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    cam_model = build_cam_model(model)
    assert cam_model.layer is base.get_layer("block5_conv3")
    features, _, probabilities = cam_model.model(images)
    base_input = images / 255.0 if builder is _nested_functional else images
    expected = keras.Model(base.input, base.get_layer("block5_conv3").output)(base_input)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probabilities, model(images), rtol=1e-5, atol=1e-6)


def test_layer_by_name_path_and_object_inside_nested_model():
    model, base = _nested_sequential()
    by_name = build_cam_model(model, "block4_conv3").layer
    by_path = build_cam_model(model, f"{base.name}/block4_conv3").layer
    by_object = build_cam_model(model, base.get_layer("block4_conv3")).layer
    assert by_name is by_path is by_object is base.get_layer("block4_conv3")
    assert build_cam_model(model, base).layer is base  # the nested model's own output


def test_user_model_is_not_modified_and_weights_are_shared():
    model, _ = _nested_sequential()
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    before_config = model.get_config()
    before_weights = [w.numpy().copy() for w in model.weights]
    before_prediction = model(images).numpy()
    cam_model = build_cam_model(model)
    assert model.get_config() == before_config
    assert len(model.layers) == 4 and len(model.weights) == len(before_weights)
    for old, new in zip(before_weights, model.weights):
        np.testing.assert_array_equal(old, new.numpy())
    np.testing.assert_array_equal(model(images), before_prediction)
    # shared, not copied: changing the user's weights changes the sub-model's output
    dense = model.layers[-1]
    dense.kernel.assign(dense.kernel * 3.0)
    np.testing.assert_allclose(cam_model.model(images)[2], model(images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", ["dense_softmax", "softmax_layer", "activation", "dropout"])
def test_softmax_heads_give_pre_softmax_logits(head):
    model = gap_model(head=head)
    images = np.random.default_rng(2).normal(size=(3, 16, 16, 3)).astype("float32")
    cam_model = build_cam_model(model)
    _, logits, probabilities = cam_model.model(images)
    dense = model.get_layer("classifier")
    pooled = keras.Model(model.input, dense.input)(images)
    expected_logits = pooled @ dense.kernel.numpy() + dense.bias.numpy()
    assert cam_model.head.kind == "softmax"
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probabilities, model(images), rtol=1e-5, atol=1e-6)


def test_model_without_softmax_outputs_logits_and_softmax_probabilities():
    model = gap_model(head="logits")
    images = np.random.default_rng(3).normal(size=(2, 16, 16, 3)).astype("float32")
    cam_model = build_cam_model(model)
    _, logits, probabilities = cam_model.model(images)
    assert cam_model.head.kind == "logits"
    np.testing.assert_allclose(logits, model(images), rtol=1e-6)
    np.testing.assert_allclose(probabilities, keras.ops.softmax(model(images)), rtol=1e-5)


def test_single_sigmoid_head_becomes_two_classes():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(4).normal(size=(3, 16, 16, 3)).astype("float32")
    cam_model = build_cam_model(model)
    _, logits, probabilities = cam_model.model(images)
    p = model(images).numpy()[:, 0]
    assert cam_model.head.kind == "sigmoid" and cam_model.num_classes == 2
    np.testing.assert_allclose(probabilities, np.stack([1 - p, p], axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits[:, 1], -logits[:, 0])
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[:, 1])), p, rtol=1e-5)


def test_one_by_one_maps_are_never_picked_and_preprocessing_layers_are_skipped():
    inputs = keras.Input((8, 8, 3))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(4, 3, padding="same", name="spatial")(x)
    x = layers.Conv2D(4, 8, name="one_by_one")(x)  # 8x8 kernel on 8x8 -> 1x1 map
    outputs = layers.Dense(2)(layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    assert kc.find_conv_layer(model).name == "spatial"
    only_rescaling = keras.Sequential(
        [keras.Input((8, 8, 3)), layers.Rescaling(2.0), layers.Flatten(), layers.Dense(2)]
    )
    with pytest.raises(ValueError, match="no convolutional layer with a spatial output"):
        kc.find_conv_layer(only_rescaling)


def test_trailing_pooling_layer_is_stepped_over():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(4, 3, padding="same", name="conv"),
            layers.MaxPooling2D(name="pool"),
            layers.Flatten(),
            layers.Dense(2),
        ]
    )
    assert kc.find_conv_layer(model).name == "conv"


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = layers.Conv2D(4, 3)
        self.pool = layers.GlobalAveragePooling2D()
        self.dense = layers.Dense(2)

    def call(self, inputs):
        return self.dense(self.pool(self.conv(inputs)))


def test_bad_models_and_layers_raise_clear_errors():
    model = gap_model()
    with pytest.raises(ValueError, match=r"'nope' is not a layer.*last_conv"):
        build_cam_model(model, "nope")
    with pytest.raises(ValueError, match="not a 4-D feature map"):
        build_cam_model(model, "classifier")
    with pytest.raises(ValueError, match="is not part of model"):
        build_cam_model(model, layers.Conv2D(2, 3))
    with pytest.raises(TypeError, match="`layer` must be a layer name"):
        build_cam_model(model, 3)
    subclassed = _Subclassed()
    subclassed(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed Keras model.*Functional API"):
        kc.GradCAM(subclassed)
    with pytest.raises(TypeError, match="must be a keras.Model"):
        kc.GradCAM(lambda x: x)
    unbuilt = keras.Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2)])
    with pytest.raises(ValueError, match="no defined inputs yet"):
        kc.GradCAM(unbuilt)
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    two_inputs = keras.Model([a, b], layers.Dense(2)(layers.Flatten()(layers.Add()([a, b]))))
    with pytest.raises(ValueError, match=r"has 2 inputs \(0: .*choose the input.*`input=`"):
        kc.GradCAM(two_inputs)
    c = keras.Input((8, 8, 3))
    conv = layers.Conv2D(2, 3)(c)
    two_outputs = keras.Model(c, [layers.Flatten()(conv), layers.GlobalAveragePooling2D()(conv)])
    with pytest.raises(ValueError, match=r"has 2 outputs \(0: .*choose the output.*`output=`"):
        kc.GradCAM(two_outputs)
    flat = keras.Sequential([keras.Input((12,)), layers.Dense(2)])
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        kc.GradCAM(flat)


def test_reloaded_keras_file_gives_the_same_maps(tmp_path):
    model = gap_model()
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    images = np.random.default_rng(5).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        kc.GradCAM(reloaded)(images), kc.GradCAM(model)(images), rtol=1e-5, atol=1e-6
    )
