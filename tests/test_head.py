"""Tests of how the model's head is read (keras_cam/surgery/head.py `read_head`, and its users).

Every spelling of a softmax / sigmoid head must give the same maps and probabilities as the
plain `activation="softmax"` / `"sigmoid"` twin with the same weights; a single linear unit is
a raw score; an unknown activation warns and `head=` states the reading.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, ops

import keras_cam as kc
from keras_cam import metrics
from keras_cam.surgery import HEADS, build_cam_model, read_head

HEIGHT, WIDTH = 24, 40  # non-square: a swapped axis fails
CHANNELS = 5


def _model(activation=None, after=None, units: int = 4, bias: float = 0.0) -> keras.Model:
    """conv -> conv "feat" -> GAP -> Dense(units, activation), then optionally `after(x)`."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(CHANNELS, 3, strides=2, padding="same", activation="relu", name="feat")(x)
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(units, activation=activation, name="classifier")
    x = dense(x)
    if after is not None:
        x = after(x)
    model = keras.Model(inputs, x)
    dense.bias.assign(np.full((units,), bias, np.float32))
    return model


def _twin(model: keras.Model, activation: str, units: int) -> keras.Model:
    """The plain `Dense(activation=activation)` model with `model`'s weights."""
    twin = _model(activation, units=units)
    twin.set_weights(model.get_weights())
    return twin


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype("float32")


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


SOFTMAX_SPELLINGS = {
    "dense_str": lambda: _model("softmax"),
    "dense_keras_activations": lambda: _model(keras.activations.softmax),
    "dense_keras_ops": lambda: _model(ops.softmax),
    "dense_keras_ops_nn": lambda: _model(ops.nn.softmax),
    "dense_tf_nn": lambda: _model(tf.nn.softmax),
    "dense_tf_math": lambda: _model(tf.math.softmax),
    "dense_softmax_layer_instance": lambda: _model(layers.Softmax()),
    "dense_log_softmax": lambda: _model("log_softmax"),
    "softmax_layer": lambda: _model(after=layers.Softmax()),
    "activation_str": lambda: _model(after=layers.Activation("softmax")),
    "activation_tf_nn": lambda: _model(after=layers.Activation(tf.nn.softmax)),
    "activation_tf_math": lambda: _model(after=layers.Activation(tf.math.softmax)),
    "activation_keras_ops": lambda: _model(after=layers.Activation(ops.softmax)),
    "lambda_tf_nn": lambda: _model(after=layers.Lambda(tf.nn.softmax)),
    "functional_keras_ops": lambda: _model(after=ops.softmax),
    "functional_keras_ops_nn": lambda: _model(after=ops.nn.softmax),
    "functional_log_softmax": lambda: _model(after=ops.log_softmax),
    # Layers after the activation that pass its values through: the mixed-precision guide's
    # `Activation("linear", dtype="float32")`, reshapes, identities and inference-time noise.
    "dense_then_mixed_precision_linear": lambda: _model(
        "softmax", after=layers.Activation("linear", dtype="float32")
    ),
    "dense_then_flatten": lambda: _model("softmax", after=layers.Flatten()),
    "dense_then_reshape_dropout": lambda: _model(
        "softmax", after=lambda x: layers.Dropout(0.5)(layers.Reshape((4,))(x))
    ),
    "softmax_layer_then_identity": lambda: _model(
        after=lambda x: layers.Identity()(layers.Softmax()(x))
    ),
}
SIGMOID_SPELLINGS = {
    "dense_str": lambda: _model("sigmoid", units=1),
    "dense_keras_activations": lambda: _model(keras.activations.sigmoid, units=1),
    "dense_keras_ops": lambda: _model(ops.sigmoid, units=1),
    "dense_tf_nn": lambda: _model(tf.nn.sigmoid, units=1),
    "dense_tf_math": lambda: _model(tf.math.sigmoid, units=1),
    "dense_tf_sigmoid": lambda: _model(tf.sigmoid, units=1),
    "activation_tf_sigmoid": lambda: _model(units=1, after=layers.Activation(tf.sigmoid)),
    "lambda_tf_nn": lambda: _model(units=1, after=layers.Lambda(tf.nn.sigmoid)),
    "functional_keras_ops": lambda: _model(units=1, after=ops.sigmoid),
    "dense_then_flatten": lambda: _model("sigmoid", units=1, after=layers.Flatten()),
    "activation_then_gaussian_noise": lambda: _model(
        units=1, after=lambda x: layers.GaussianNoise(0.1)(layers.Activation("sigmoid")(x))
    ),
}


def _assert_same_explanations(model, twin, images, targets, num_classes):
    """Probabilities, and Grad-CAM / Score-CAM / CAM maps, of `model` equal those of `twin`."""
    cam_model, twin_cam_model = build_cam_model(model), build_cam_model(twin)
    assert cam_model.num_classes == num_classes
    _, logits, probabilities = cam_model.model(images)
    _, twin_logits, twin_probabilities = twin_cam_model.model(images)
    np.testing.assert_allclose(probabilities, twin_probabilities, atol=1e-6)
    np.testing.assert_allclose(logits, twin_logits, atol=1e-5)
    for method in (kc.GradCAM, kc.ScoreCAM, kc.CAM):
        maps = method(model)(images, targets)
        expected = method(twin)(images, targets)
        np.testing.assert_allclose(maps, expected, atol=1e-5, err_msg=method.__name__)


@pytest.mark.parametrize("spelling", list(SOFTMAX_SPELLINGS))
def test_every_softmax_spelling_explains_like_activation_softmax(spelling, no_warnings):
    model = SOFTMAX_SPELLINGS[spelling]()
    twin = _twin(model, "softmax", 4)
    head = read_head(model)
    assert head.kind == ("logits" if "log_softmax" in spelling else "softmax")
    assert head.pre_activation is not None  # the logits are read before the activation
    _assert_same_explanations(model, twin, _images(), [0, 2, 3], num_classes=4)


@pytest.mark.parametrize("spelling", list(SIGMOID_SPELLINGS))
def test_every_sigmoid_spelling_explains_like_activation_sigmoid(spelling, no_warnings):
    model = SIGMOID_SPELLINGS[spelling]()
    twin = _twin(model, "sigmoid", 1)
    head = read_head(model)
    assert (head.kind, head.num_classes) == ("sigmoid", 2)
    _assert_same_explanations(model, twin, _images(), [1, 0, 1], num_classes=2)


def test_confident_tf_nn_softmax_model_gives_nonzero_maps_and_true_probabilities():
    model = _model(tf.nn.softmax)
    dense = model.get_layer("classifier")
    dense.kernel.assign(dense.kernel * 1e5)  # saturated: the softmax is one-hot
    images = _images()
    outputs = model(images).numpy()
    assert outputs.max(axis=1).min() > 1.0 - 1e-6
    _, _, probabilities = build_cam_model(model).model(images)
    # Read as logits, the probabilities would be softmax(one-hot) = 0.475 for the top class.
    np.testing.assert_allclose(probabilities, outputs, atol=1e-6)
    for method in (kc.GradCAM, kc.GradCAMPlusPlus, kc.CAM):
        maps = method(model)(images)
        assert (maps.reshape(3, -1).max(axis=1) == 1.0).all(), method.__name__
    twin = _twin(model, "softmax", 4)
    np.testing.assert_allclose(kc.GradCAM(model)(images), kc.GradCAM(twin)(images), atol=1e-5)
    np.testing.assert_allclose(
        metrics.average_drop(model, images, kc.GradCAM(model)(images)).per_image,
        metrics.average_drop(twin, images, kc.GradCAM(twin)(images)).per_image,
        atol=1e-4,
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _model("tanh"), r"Dense 'classifier' with activation tanh; its output is read "
                                 r"as logits.*pass `head="),
        (lambda: _model(lambda x: 2.0 * x), r"with activation <lambda>.*pass `head="),
        (lambda: _model(after=layers.ReLU()), r"ReLU .* keras_cam does not recognise.*`head="),
        (lambda: _model("relu", units=1), r"read as a raw score \(head='linear'\)"),
        (lambda: _model(after=layers.Softmax(axis=0)), r"over axis 0, not the class axis"),
    ],
)
def test_unknown_activation_warns_and_head_silences_it(make, match):
    model = make()
    with pytest.warns(UserWarning, match=match):
        kc.GradCAM(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cam = kc.GradCAM(model, head="linear")
        assert cam(_images(1)).shape == (1, HEIGHT, WIDTH)


def test_tanh_head_read_as_stated_logits_has_no_cam():
    model = _model("tanh")
    with pytest.raises(ValueError, match="another activation has no CAM"):
        kc.CAM(model, head="logits")


def _raw_score_model() -> keras.Model:
    """conv -> GAP -> Dense(1) linear: a regression whose outputs sit around 50."""
    model = _model(units=1, bias=50.0)
    dense = model.get_layer("classifier")
    dense.kernel.assign(np.array([[40.0], [-25.0], [60.0], [15.0], [-35.0]], np.float32) * 25)
    return model


def _placed(channel: np.ndarray) -> np.ndarray:
    """A `feat` channel placed on the input by hand: 3x3 'same' conv at stride 2 on even sizes
    pads 0 before, so cell `j` is centred on input coordinate `2 j + 1.5` (pixel centres at
    `y + 0.5`); linear interpolation between centres, clamped at the edges."""
    rows = np.arange(channel.shape[0]) * 2 + 1.5
    cols = np.arange(channel.shape[1]) * 2 + 1.5
    by_rows = np.stack([np.interp(np.arange(HEIGHT) + 0.5, rows, c) for c in channel.T], axis=1)
    return np.stack([np.interp(np.arange(WIDTH) + 0.5, cols, r) for r in by_rows], axis=0)


def _slow_raw_score_cam(model: keras.Model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference Score-CAM of a raw-score model: weights are the raw masked outputs.

    Returns the channel weights `(K,)` and the raw map `ReLU(sum_k w_k A^k)` at the layer's
    resolution.
    """
    features = keras.Model(model.input, model.get_layer("feat").output)(image[None])[0].numpy()
    weights = np.zeros(features.shape[-1])
    for k in range(features.shape[-1]):
        channel = features[..., k]
        if channel.max() == channel.min():
            continue  # constant channel: no mask to normalize; left out
        upsampled = _placed(channel)
        mask = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
        weights[k] = model.predict(image[None] * mask[..., None], verbose=0)[0, 0]
    return weights, np.maximum(0.0, np.tensordot(features, weights, axes=([2], [0])))


def test_one_linear_unit_is_a_raw_score_for_score_cam(no_warnings):
    model = _raw_score_model()
    image = _images(1, seed=3)[0]
    assert 40.0 < float(model(image[None])[0, 0]) < 100.0
    head = read_head(model)
    assert (head.kind, head.num_classes) == ("linear", 1)
    weights, expected = _slow_raw_score_cam(model, image)
    used = weights[weights != 0]
    assert len(used) >= 3 and np.ptp(used) > 1.0  # the raw scores differ across channels
    maps = kc.ScoreCAM(model)(image, upsample=False, normalize=False)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-3)
    _, _, scores = build_cam_model(model).model(image[None])
    np.testing.assert_allclose(scores, model(image[None]), rtol=1e-6)


def test_one_linear_unit_gradient_methods_differentiate_the_raw_output(no_warnings):
    model = _raw_score_model()
    images = _images(2, seed=4)
    features = keras.Model(model.input, model.get_layer("feat").output)(images).numpy()
    kernel = model.get_layer("classifier").kernel.numpy()[:, 0]
    h, w = features.shape[1:3]
    # d(mean_ij(A) . w + b)/dA^k_ij = w_k / (h w): Grad-CAM's map is ReLU(sum_k w_k A^k) / (h w)
    expected = np.maximum(0.0, features @ kernel) / (h * w)
    maps = kc.GradCAM(model)(images, upsample=False, normalize=False)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="out of range for a model with 1 classes"):
        kc.GradCAM(model)(images, targets=1)


def test_one_linear_unit_stated_as_logits_is_a_binary_classifier(no_warnings):
    model = _raw_score_model()
    model.get_layer("classifier").bias.assign([0.5])
    images = _images(2, seed=5)
    z = model(images).numpy()[:, 0]
    cam_model = build_cam_model(model, head="logits")
    assert (cam_model.head.kind, cam_model.num_classes) == ("logits", 2)
    _, logits, probabilities = cam_model.model(images)
    p = 1.0 / (1.0 + np.exp(-z))
    np.testing.assert_allclose(probabilities, np.stack([1 - p, p], axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, np.stack([-z, z], axis=1), rtol=1e-5)


def test_one_sigmoid_unit_stays_a_binary_classifier(no_warnings):
    model = _model("sigmoid", units=1)
    images = _images(2, seed=6)
    p = model(images).numpy()[:, 0]
    cam = kc.ScoreCAM(model)
    assert cam.num_classes == 2
    _, _, probabilities = build_cam_model(model).model(images)
    np.testing.assert_allclose(probabilities, np.stack([1 - p, p], axis=1), rtol=1e-5, atol=1e-6)
    # Grad-CAM differentiates the logit z (class 1) and -z (class 0, the complement).
    features = keras.Model(model.input, model.get_layer("feat").output)(images).numpy()
    evidence = features @ model.get_layer("classifier").kernel.numpy()[:, 0]
    pixels = features.shape[1] * features.shape[2]
    for target, sign in ((1, 1.0), (0, -1.0)):
        maps = kc.GradCAM(model)(images, targets=target, normalize=False, upsample=False)
        np.testing.assert_allclose(
            maps, np.maximum(0.0, sign * evidence) / pixels, rtol=1e-4, atol=1e-6
        )
    with pytest.raises(ValueError, match="out of range for a model with 2 classes"):
        cam(images, targets=2)


@pytest.mark.parametrize(
    "build",
    [
        lambda model, head: kc.GradCAM(model, head=head),
        lambda model, head: kc.ScoreCAM(model, head=head),
        lambda model, head: kc.CAM(model, head=head),
        lambda model, head: kc.HeatmapCallback(_images(1), out_dir="unused", head=head),
        lambda model, head: kc.evaluate(model, _images(1), head=head),
        lambda model, head: metrics.average_drop(model, _images(1), np.ones((1, HEIGHT, WIDTH)),
                                                 head=head),
        lambda model, head: read_head(model, head),
    ],
)
def test_bad_head_value_is_refused_with_the_valid_values(build):
    model = _model("softmax")
    with pytest.raises(ValueError, match=r"`head` must be None .* received 'probabilities'"):
        build(model, "probabilities")
    for valid in HEADS:
        assert valid in str(pytest.raises(ValueError, build, model, "probabilities").value)


def test_evaluate_refuses_head_and_activation_together():
    with pytest.raises(ValueError, match="`activation` is the metrics' older spelling of `head`"):
        kc.evaluate(_model(None), _images(1), head="logits", activation="softmax")


def test_softmax_over_one_unit_is_refused():
    with pytest.raises(ValueError, match="softmax over a single output unit is always 1"):
        read_head(_model("softmax", units=1))


def test_stated_head_reads_outputs_as_told(no_warnings):
    model = _model(None)  # linear Dense(4): logits by default
    images = _images(2, seed=7)
    z = model(images).numpy()
    _, _, default = build_cam_model(model).model(images)
    np.testing.assert_allclose(default, tf.nn.softmax(z), rtol=1e-5)
    _, _, multi_label = build_cam_model(model, head="sigmoid_logits").model(images)
    np.testing.assert_allclose(multi_label, 1 / (1 + np.exp(-z)), rtol=1e-5)
    _, _, raw = build_cam_model(model, head="linear").model(images)
    np.testing.assert_allclose(raw, z, rtol=1e-6)


def test_cli_reads_the_head_and_takes_head(tmp_path, capsys):
    from keras_cam import cli

    path = tmp_path / "logits.keras"
    _model(None).save(path)  # a linear Dense(4): logits by default
    assert cli.main(["info", str(path)]) == 0
    assert "classes      4 (logits output)" in capsys.readouterr().out
    assert cli.main(["info", str(path), "--head", "sigmoid_logits"]) == 0
    printed = capsys.readouterr().out
    assert "(sigmoid_logits output)" in printed and "stated by head='sigmoid_logits'" in printed
    assert cli.main(["info", str(path), "--head", "probabilities"]) == cli.EXIT_BAD_INPUT
    assert "argument --head: invalid choice: 'probabilities'" in capsys.readouterr().err


def test_callback_explains_a_tf_nn_softmax_model_like_its_twin(tmp_path, no_warnings):
    model = _model(tf.nn.softmax)
    twin = _twin(model, "softmax", 4)
    images = _images(2, seed=8)
    callback = kc.HeatmapCallback(images, methods=("gradcam", "scorecam"), out_dir=tmp_path)
    frozen = keras.optimizers.SGD(learning_rate=0.0)  # fit runs, the weights stay
    model.compile(optimizer=frozen, loss="categorical_crossentropy")
    model.fit(images, np.eye(4)[[0, 1]], epochs=1, verbose=0, callbacks=[callback])
    np.testing.assert_allclose(callback.last_maps["gradcam"], kc.GradCAM(twin)(images), atol=1e-5)
    np.testing.assert_allclose(
        callback.last_maps["scorecam"], kc.ScoreCAM(twin, verbose=0)(images), atol=1e-5
    )


def test_fine_tune_gap_refuses_a_raw_score_unit_unless_stated_a_binary_logit():
    model = _raw_score_model()
    data = (_images(2, seed=9), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"read as a raw score \(a regression\).*head='logits'"):
        kc.fine_tune_gap(model, data, epochs=1, verbose=0)
    history = kc.fine_tune_gap(model, data, epochs=1, verbose=0, head="logits")
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy) and model.loss.from_logits
    assert len(history.epoch) == 1
