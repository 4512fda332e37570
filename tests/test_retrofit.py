"""retrofit_gap and fine_tune_gap: the rebuilt model, freezing, weights, training, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_cam as kc
from keras_cam.datasets import shapes
from keras_cam.methods.cam import CAM
from keras_cam.retrofit import BACKBONES, fine_tune_gap, retrofit_gap, set_base_trainable
from keras_cam.surgery import find_gap_head


def _conv_base(size=16, pool=True, batch_norm=False, name="my_base"):
    """A user's own small convolutional model, ending with a max-pool when `pool`."""
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inputs)
    if batch_norm:
        x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(x)
    if pool:
        x = layers.MaxPooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


def _trainable_layers(model):
    return sorted({w.path.split("/")[-2] for w in model.trainable_weights})


def _data(n=16, size=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, size, size, 3)).astype("float32")
    return images, (np.arange(n) % classes).astype("int32")


# ---------------------------------------------------------------- VGG16 retrofit
def test_vgg16_gets_a_gap_dense_head_and_a_frozen_base():
    model = retrofit_gap("vgg16", num_classes=10, input_shape=(224, 224, 3), weights=None)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer",
        "Functional",
        "GlobalAveragePooling2D",
        "Dense",
    ]
    base = model.get_layer("vgg16")
    assert not any(isinstance(layer, (layers.Flatten, layers.Dense)) for layer in base.layers)
    assert not {"fc1", "fc2", "flatten", "block5_pool"} & {layer.name for layer in base.layers}
    head = model.get_layer("predictions")
    assert head.units == 10 and head.activation.__name__ == "softmax"
    assert _trainable_layers(model) == ["predictions"]  # only the new head trains
    assert model.compiled is False


def test_vgg_last_pool_is_removed_by_default_for_a_14x14_map():
    model = retrofit_gap("vgg16", 10, input_shape=(224, 224, 3), weights=None)
    assert model.get_layer("vgg16").output.shape == (None, 14, 14, 512)
    cam = CAM(model)
    assert cam.layer.name == "block5_conv3"
    image = np.zeros((224, 224, 3), "float32")
    assert cam(image, 0, upsample=False).shape == (14, 14)

    kept = retrofit_gap("vgg16", 10, input_shape=(224, 224, 3), weights=None,
                        remove_last_pool=False)
    assert kept.get_layer("vgg16").output.shape == (None, 7, 7, 512)
    assert CAM(kept).layer.name == "block5_pool"

    vgg19 = retrofit_gap("VGG-19", 10, input_shape=(224, 224, 3), weights=None)
    assert find_gap_head(vgg19).features.name == "block5_conv4"
    assert vgg19.get_layer("vgg19").output.shape == (None, 14, 14, 512)


def test_defaults_to_the_base_training_size_and_other_families_keep_their_last_layer():
    assert retrofit_gap("vgg16", 2, weights=None).input_shape == (None, 224, 224, 3)
    model = retrofit_gap("mobilenet_v2", 2, input_shape=(64, 64, 3), weights=None)
    assert find_gap_head(model).features.name == "out_relu"  # no pool to remove


@pytest.mark.parametrize(
    ("train_base", "expected"),
    [
        (False, ["predictions"]),
        ("last_block", ["block5_conv1", "block5_conv2", "block5_conv3", "predictions"]),
        (2, ["block5_conv2", "block5_conv3", "predictions"]),
    ],
)
def test_vgg16_train_base(train_base, expected):
    model = retrofit_gap("vgg16", 3, input_shape=(64, 64, 3), weights=None,
                         train_base=train_base)
    assert _trainable_layers(model) == expected


def test_train_base_true_trains_everything():
    model = retrofit_gap("vgg16", 3, input_shape=(64, 64, 3), weights=None, train_base=True)
    assert len(model.trainable_weights) == len(model.weights) == 2 * 13 + 2


def test_dropout_and_binary_heads():
    model = retrofit_gap(_conv_base(), 1, dropout=0.25)
    assert [layer.name for layer in model.layers][2:] == ["avg_pool", "top_dropout", "predictions"]
    assert model.get_layer("top_dropout").rate == 0.25
    head = model.get_layer("predictions")
    assert head.units == 1 and head.activation.__name__ == "sigmoid"
    images = _data(2)[0]
    cam = CAM(model)
    gradcam = kc.GradCAM(model, layer=cam.layer)
    np.testing.assert_allclose(cam(images, 1), gradcam(images, 1), atol=1e-5)


def test_weights_file_is_loaded_into_the_base(tmp_path):
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "vgg16_notop.weights.h5")
    source.save_weights(path)
    model = retrofit_gap("vgg16", 3, input_shape=(32, 32, 3), weights=path)
    np.testing.assert_array_equal(
        model.get_layer("vgg16").get_layer("block5_conv3").kernel.numpy(),
        source.get_layer("block5_conv3").kernel.numpy(),
    )


# ---------------------------------------------------------------- a user's own base
def test_user_base_is_shared_not_copied_and_its_last_pool_can_go():
    base = _conv_base()
    model = retrofit_gap(base, 3, name="mine")
    assert model.name == "mine" and model.input_shape == (None, 16, 16, 3)
    assert model.get_layer("my_base") is base
    assert find_gap_head(model).features.name == "pool"
    assert _trainable_layers(model) == ["predictions"]

    cut = retrofit_gap(base, 3, remove_last_pool=True)
    assert cut.get_layer("my_base").get_layer("conv_b") is base.get_layer("conv_b")
    assert find_gap_head(cut).features.name == "conv_b"
    assert cut.get_layer("my_base").output.shape == (None, 16, 16, 8)


def test_user_base_cam_equals_gradcam():
    model = retrofit_gap(_conv_base(), 3, remove_last_pool=True, dropout=0.5)
    images = _data(3)[0]
    for target in (0, 1, 2):
        np.testing.assert_allclose(
            CAM(model)(images, target), kc.GradCAM(model)(images, target), atol=1e-5
        )


def test_a_plain_layer_is_a_base_too():
    model = retrofit_gap(layers.Conv2D(5, 3, name="conv"), 2, input_shape=(12, 12, 3))
    assert find_gap_head(model).features.name == "conv"
    assert model.output_shape == (None, 2)


def test_batch_norm_stays_frozen_unless_the_whole_base_trains():
    model = retrofit_gap(_conv_base(batch_norm=True, pool=False), 3, train_base=2)
    assert _trainable_layers(model) == ["conv_a", "conv_b", "predictions"]
    set_base_trainable(model, True)
    assert _trainable_layers(model) == ["bn", "conv_a", "conv_b", "predictions"]
    set_base_trainable(model, False)
    assert _trainable_layers(model) == ["predictions"]


# ---------------------------------------------------------------- training
@pytest.mark.slow
def test_retrofitted_vgg16_loss_falls_within_a_few_steps():
    images, labels, _ = shapes(32, image_size=32, seed=0)
    model = retrofit_gap("vgg16", 4, input_shape=(32, 32, 3), weights=None)
    before = [w.numpy() for w in model.get_layer("vgg16").weights]
    history = fine_tune_gap(model, (images, labels), epochs=5, learning_rate=1e-2,
                            batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    for weight, old in zip(model.get_layer("vgg16").weights, before):
        np.testing.assert_array_equal(weight.numpy(), old)  # the frozen base did not move


@pytest.mark.slow
def test_two_stage_fine_tuning_unfreezes_the_top_and_continues_the_epochs():
    model = retrofit_gap(_conv_base(), 3)
    base = model.get_layer("my_base")
    before = {layer.name: layer.kernel.numpy() for layer in base.layers[1:3]}
    images, labels = _data()
    history = fine_tune_gap(model, (images, labels), validation_data=(images, labels),
                            epochs=2, fine_tune_epochs=2, unfreeze=1, batch_size=8, verbose=0)
    assert history.epoch == [0, 1, 2, 3]
    assert {len(values) for values in history.history.values()} == {4}
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    assert _trainable_layers(model) == ["conv_b", "predictions"]
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-5)
    np.testing.assert_array_equal(base.get_layer("conv_a").kernel.numpy(), before["conv_a"])
    assert not np.array_equal(base.get_layer("conv_b").kernel.numpy(), before["conv_b"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("classes", "one_hot", "as_dataset", "loss"),
    [
        (3, False, False, keras.losses.SparseCategoricalCrossentropy),
        (3, True, False, keras.losses.CategoricalCrossentropy),
        (3, True, True, keras.losses.CategoricalCrossentropy),
        (3, False, True, keras.losses.SparseCategoricalCrossentropy),
        (1, False, False, keras.losses.BinaryCrossentropy),
    ],
)
def test_loss_follows_the_labels(classes, one_hot, as_dataset, loss):
    model = retrofit_gap(_conv_base(), classes)
    images, labels = _data(8, classes=max(classes, 2))
    if one_hot:
        labels = keras.utils.to_categorical(labels, classes)
    data = (images, labels)
    if as_dataset:
        data = tf.data.Dataset.from_tensor_slices(data).batch(4)
    history = fine_tune_gap(model, data, epochs=1, verbose=0)
    assert isinstance(model.loss, loss) and model.loss.from_logits is False
    assert len(history.history["loss"]) == 1


# ---------------------------------------------------------------- errors
def test_unknown_base_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown base 'vgg15'.*'resnet50'.*'vgg16'"):
        retrofit_gap("vgg15", 3, weights=None)
    assert {"vgg16", "vgg19", "resnet50", "mobilenetv2", "efficientnetb0"} <= set(BACKBONES)


@pytest.mark.parametrize("num_classes", [0, -2])
def test_num_classes_must_be_positive(num_classes):
    with pytest.raises(ValueError, match=rf"`num_classes` must be at least 1.*{num_classes}"):
        retrofit_gap(_conv_base(), num_classes)


def test_num_classes_must_be_an_int():
    with pytest.raises(TypeError, match=r"`num_classes` must be an int; received 2\.5"):
        retrofit_gap(_conv_base(), 2.5)


def test_base_without_spatial_output_is_refused():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, name="features")(inputs)
    x = layers.Flatten()(x)
    classifier = keras.Model(inputs, layers.Dense(3)(x), name="flat")
    with pytest.raises(ValueError, match=r"'flat' must output spatial.*\(None, 3\).*'features'"):
        retrofit_gap(classifier, 3)
    with pytest.raises(ValueError, match=r"\(None, 1, 1, 512\).*larger `input_shape`"):
        retrofit_gap("vgg16", 3, input_shape=(32, 32, 3), weights=None, remove_last_pool=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dropout": 1.0}, ValueError, r"`dropout` must be a rate in \[0, 1\); received 1\.0"),
        ({"train_base": "top"}, ValueError, r"`train_base` must be True, False, 'last_block'"),
        ({"train_base": 0}, ValueError, r"`train_base` must be .*received 0"),
        ({"weights": "missing.weights.h5"}, FileNotFoundError, r"'missing\.weights\.h5' does not"),
        ({"input_shape": (32, 32, 3)}, ValueError, r"\(32, 32, 3\) does not match .*\(16, 16, 3\)"),
        ({"remove_last_pool": True, "base": None}, ValueError, r"ends with Conv2D"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    base = kwargs.pop("base", _conv_base())
    if base is None:
        base = _conv_base(pool=False)
    with pytest.raises(error, match=message):
        retrofit_gap(base, 3, **kwargs)


def test_bad_base_type_input_shape_and_weights_for_a_layer(tmp_path):
    with pytest.raises(TypeError, match=r"`base` must be .*received int"):
        retrofit_gap(16, 3)
    with pytest.raises(ValueError, match=r"`input_shape` is needed.*'conv'"):
        retrofit_gap(layers.Conv2D(4, 3, name="conv"), 3)
    path = tmp_path / "some.weights.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"only be loaded into a keras.Model base.*Conv2D"):
        retrofit_gap(layers.Conv2D(4, 3), 3, input_shape=(8, 8, 3), weights=path)


def test_fine_tune_gap_bad_arguments():
    model = retrofit_gap(_conv_base(), 3)
    data = _data()
    with pytest.raises(ValueError, match=r"`epochs` must be an int >= 1; received 0"):
        fine_tune_gap(model, data, epochs=0)
    with pytest.raises(ValueError, match=r"`fine_tune_learning_rate` must be > 0"):
        fine_tune_gap(model, data, fine_tune_learning_rate=0.0)
    with pytest.raises(ValueError, match=r"`unfreeze` must be .*received False"):
        fine_tune_gap(model, data, fine_tune_epochs=1, unfreeze=False)
    with pytest.raises(TypeError, match=r"`train_data` must be a tuple.*received list"):
        fine_tune_gap(model, list(data))
    with pytest.raises(ValueError, match=r"one-hot vectors of length 3.*\(16, 5\)"):
        fine_tune_gap(model, (data[0], np.zeros((16, 5), "float32")))
    flat = keras.Sequential([keras.Input((16, 16, 3)), layers.Flatten(), layers.Dense(3)])
    with pytest.raises(ValueError, match="retrofit_gap"):
        fine_tune_gap(flat, data)
