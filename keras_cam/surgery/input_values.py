"""The explained input's dtype and the check that images hold values the model can take."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def explained_input_dtype(dtype: str) -> str:
    """The input dtype of the sub-model that explains a model whose input is `dtype`.

    A float input keeps its dtype. An integer or bool input (e.g. `keras.Input(shape,
    dtype="uint8")` followed by `Rescaling`) becomes float32: a gradient tape records nothing
    before a cast from an integer, and Score-CAM's masked inputs are fractional. The layers
    behind such an input cast it to float themselves, so integer-valued float32 images give
    exactly the model's own outputs (`check_input_values` makes sure they are integer-valued).

    Args:
        dtype: the model's input dtype, e.g. `"uint8"`, `"float16"`.

    Returns:
        `dtype` itself for floating dtypes, else `"float32"`.

    Example:
    ```python
    explained_input_dtype("uint8")    # "float32"
    explained_input_dtype("float16")  # "float16"
    ```
    """
    dtype = keras.backend.standardize_dtype(dtype)
    return dtype if keras.backend.is_float_dtype(dtype) else "float32"


def check_input_values(images: Any, dtype: str, model_name: str) -> None:
    """Raises unless `images` hold values a model whose input is `dtype` can take.

    For a float input nothing is checked. For an integer or bool input the images are
    explained through a float32 input (`explained_input_dtype`); they must then be integers
    within the dtype's range (0 or 1 for bool), else the map would explain values the model
    never sees (it truncates or wraps them when it casts).

    Args:
        images: float32 tensor or array of images.
        dtype: the model's input dtype.
        model_name: the model's name, for the error message.

    Raises:
        ValueError: non-integer values, or values outside the dtype's range.

    Example:
    ```python
    check_input_values(images, model.inputs[0].dtype, model.name)
    ```
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if keras.backend.is_float_dtype(dtype):
        return
    low, high = (0, 1) if dtype == "bool" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    values = np.asarray(images, dtype=np.float64)
    smallest, largest = float(values.min()), float(values.max())
    integral = bool(np.all(values == np.round(values)))
    if integral and low <= smallest and largest <= high:
        return
    found = "values" if integral else "non-integer values"
    raise ValueError(
        f"`images` hold {found} in [{smallest:g}, {largest:g}], but model {model_name!r} takes "
        f"{dtype} images, which hold integers in [{low}, {high}]: its cast to {dtype} would "
        "change them, so no map could explain them as given. Pass the images as the model "
        "takes them (e.g. raw uint8 pixels, not pixels already scaled to [0, 1])."
    )
