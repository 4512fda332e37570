"""Breaking commit 23847f1: the rebatched stream, the finite check inside the fused pass and a
fixed-size model's geometry held as constants. Every answer is computed here independently
(a Grad-CAM and a bilinear placement written in the test, `model.predict`)."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cam as kc

HEIGHT, WIDTH, CLASSES = 24, 40, 3
BAD = 4  # the non-finite image of a batch of 6
NAMED = r"NaN or infinite values \(first in image 4\)"


def rgb_model(dtype: str = "float32", name: str = "rgb") -> keras.Model:
    """Conv -> conv("last") -> GAP -> softmax Dense on 24x40 RGB images of `dtype`."""
    inputs = keras.Input((HEIGHT, WIDTH, 3), dtype=dtype)
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs) if dtype != "float32" else inputs
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def bad_images(value: float = np.nan, integers: bool = False) -> np.ndarray:
    """Six 24x40 RGB images; image `BAD` holds one `value` pixel."""
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (6, HEIGHT, WIDTH, 3)).astype(np.float32)
    if integers:
        images = np.round(images * 255.0)
    images[BAD, 3, 5, 1] = value
    return images


# ------------------------------------------------------------ non-finite images, refused
@pytest.mark.parametrize("kind", ["numpy", "tensor"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_an_integer_input_model_names_the_non_finite_image(kind, value):
    """A uint8 model checks its images' values on the host; a NaN there is a NaN, named, not
    'non-integer values in [nan, nan]'."""
    images = bad_images(value, integers=True)
    given = images if kind == "numpy" else tf.constant(images)
    with pytest.raises(ValueError, match=NAMED):
        kc.GradCAM(rgb_model("uint8"))(given)


class CheckNumerics(keras.layers.Layer):
    """`tf.debugging.check_numerics`: an op that refuses a NaN at run time (identity else)."""

    def call(self, x):
        return tf.debugging.check_numerics(x, "features")


def checked_model() -> keras.Model:
    """A conv -> GAP -> softmax model that checks its input for NaN itself, inside the pass."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(
        CheckNumerics()(inputs)
    )
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_an_op_of_the_model_failing_on_a_nan_image_inside_the_pass_still_names_it(kind):
    images = bad_images()
    given = images if kind == "numpy" else tf.constant(images)
    cam = kc.GradCAM(checked_model(), layer="last")
    assert cam(images[:BAD]).shape == (BAD, HEIGHT, WIDTH)  # finite images: maps
    with pytest.raises(ValueError, match=NAMED):
        cam(given)


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_an_op_of_the_method_failing_on_an_infinite_image_still_names_it(kind):
    """KPCA-CAM's eigendecomposition refuses infinite features inside the pass."""
    images = bad_images(np.inf)
    given = images if kind == "numpy" else tf.constant(images, tf.float64)
    with pytest.raises(ValueError, match=NAMED):
        kc.KPCACAM(rgb_model())(given)
