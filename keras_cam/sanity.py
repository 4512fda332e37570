"""Sanity checks: do a method's maps depend on what the model learned?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018
(https://arxiv.org/abs/1810.03292): an explanation that stays the same when the model's
weights are destroyed explains the image, not the model. `model_parameter_randomisation`
re-initialises the layers of a **copy** of the model (the user's model is never touched) and
compares the maps of the trained and the randomised copy per step, by Spearman rank
correlation (`spearman`) and SSIM (`ssim`); `randomisation` is the one-number form `evaluate`
puts in its table. `random_maps` and `centred_gaussian_maps` are the baselines that ignore the
model entirely: every verdict shows them, and a method should beat them.

Data (label) randomisation, the paper's other check, needs a model trained on shuffled
labels; README's "Which explanation to trust" section gives the recipe.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from keras_cam._checks import check_choice, check_images, check_maps, check_positive_int
from keras_cam.methods import BaseCAM, get_method, method_name
from keras_cam.metrics import MetricResult, map_shape
from keras_cam.surgery import select_output
from keras_cam.targets import Targets, explained_classes, resolve_targets

Explain = Callable[[keras.Model, np.ndarray, np.ndarray], np.ndarray]
"""A map function `(model, images, classes) -> (B, H, W) maps in [0, 1]`."""

MethodLike = Union[str, type[BaseCAM], Explain]
"""A registered method name, a `BaseCAM` subclass, or a map function (`Explain`)."""

Mode = Literal["cascading", "layer"]
MODES: tuple[str, ...] = ("cascading", "layer")

UNCHANGED_CORRELATION = 0.5
"""Mean Spearman correlation between the trained and the fully randomised model's maps at or
above which a method is flagged: its maps survive the destruction of every learned weight.
An edge detector (a map of the image alone) scores 1; Adebayo et al.'s Grad-CAM maps lose
their structure (their Fig. 2), and so do ours on the demo model (README)."""

GAUSSIAN_SIGMA = 0.25
"""Standard deviation of `centred_gaussian_maps`, as a share of the image's height and width."""


# ------------------------------------------------------------------------------ similarity
def _average_ranks(flat: np.ndarray) -> np.ndarray:
    """Ranks (1..N) of each row's values, ties given their average rank (as `rankdata`)."""
    order = np.argsort(flat, axis=1, kind="stable")
    ordered = np.take_along_axis(flat, order, axis=1)
    ranks = np.empty(flat.shape, np.float64)
    count = flat.shape[1]
    for row, values in enumerate(ordered):
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        ends = np.r_[starts[1:], count]
        group = np.repeat(np.arange(len(starts)), ends - starts)
        ranks[row, order[row]] = ((starts + ends + 1) / 2.0)[group]
    return ranks


def spearman(maps_a: ArrayLike, maps_b: ArrayLike) -> np.ndarray:
    """Spearman rank correlation between two batches of maps, one value per pair.

    `rho = cov(r_a, r_b) / (std(r_a) std(r_b))`, the Pearson correlation of the pixels' ranks,
    ties given their average rank (Spearman, 1904; `scipy.stats.spearmanr`; the measure of
    Adebayo et al., 2018, Sec. 3). A constant map has no order: paired with a map that has
    one, it scores 0 (no shared order); two constant maps score 1 (nothing changed).

    Args:
        maps_a: `(B, H, W)` maps of any finite values.
        maps_b: `(B, H, W)` maps of any finite values, the same shape.

    Returns:
        float64 `(B,)` in [-1, 1]; 1 for maps in the same pixel order.

    Raises:
        ValueError: maps of different shapes, or not finite.

    Example:
    ```python
    spearman(trained_maps, randomised_maps).mean()
    ```
    """
    first = check_maps(maps_a, order_only=True)
    second = check_maps(maps_b, first.shape, order_only=True)
    ranks = [_average_ranks(maps.reshape(len(maps), -1)) for maps in (first, second)]
    centred = [rank - rank.mean(axis=1, keepdims=True) for rank in ranks]
    spread = [np.sqrt(np.sum(rank**2, axis=1)) for rank in centred]
    product = spread[0] * spread[1]
    rho = np.divide(
        np.sum(centred[0] * centred[1], axis=1), product,
        out=np.zeros(len(first)), where=product > 0,
    )
    both_constant = (spread[0] == 0) & (spread[1] == 0)
    return np.where(both_constant, 1.0, np.clip(rho, -1.0, 1.0))


def ssim(maps_a: ArrayLike, maps_b: ArrayLike) -> np.ndarray:
    """Structural similarity (SSIM) between two batches of maps on the [0, 1] scale.

    `SSIM = (2 mu_a mu_b + C1)(2 sigma_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(sigma_a^2 +
    sigma_b^2 + C2))` averaged over Gaussian windows (Wang et al., "Image Quality Assessment:
    From Error Visibility to Structural Similarity", IEEE TIP 2004), computed by
    `tf.image.ssim` with `max_val=1` and its defaults (11x11 window, sigma 1.5, k1 0.01,
    k2 0.03); the window shrinks to the map's side when a map is smaller than 11 pixels.

    Args:
        maps_a: `(B, H, W)` maps on the [0, 1] scale (see `keras_cam.metrics`' soft masks).
        maps_b: `(B, H, W)` maps on the [0, 1] scale, the same shape.

    Returns:
        float64 `(B,)`, at most 1 (identical maps).

    Example:
    ```python
    ssim(trained_maps, randomised_maps)
    ```
    """
    first = check_maps(maps_a)
    second = check_maps(maps_b, first.shape)
    window = min(11, *first.shape[1:])
    values = tf.image.ssim(
        first[..., np.newaxis], second[..., np.newaxis], max_val=1.0, filter_size=window
    )
    return values.numpy().astype(np.float64)


# ----------------------------------------------------------------------------- baselines
def random_maps(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Maps of independent uniform noise: the baseline of a method that knows nothing.

    Args:
        shape: `(B, H, W)`.
        seed: the NumPy generator's seed. Defaults to `0`.

    Returns:
        float32 `(B, H, W)` in [0, 1).
    """
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def centred_gaussian_maps(
    shape: tuple[int, int, int], sigma: float = GAUSSIAN_SIGMA
) -> np.ndarray:
    """A Gaussian blob at the image's centre: the "objects are in the middle" baseline.

    `exp(-((y - cy)^2 / (2 (sigma H)^2) + (x - cx)^2 / (2 (sigma W)^2)))` at pixel centres,
    the centre-bias prior that saliency benchmarks compare against (Judd et al., "Learning
    to Predict Where Humans Look", ICCV 2009).

    Args:
        shape: `(B, H, W)`.
        sigma: standard deviation as a share of the height and the width. Defaults to `0.25`.

    Returns:
        float32 `(B, H, W)`, 1 at the centre.
    """
    batch, height, width = shape
    rows = ((np.arange(height) + 0.5 - height / 2) / (sigma * height)) ** 2
    columns = ((np.arange(width) + 0.5 - width / 2) / (sigma * width)) ** 2
    blob = np.exp(-0.5 * (rows[:, np.newaxis] + columns[np.newaxis, :]))
    return np.broadcast_to(blob / blob.max(), shape).astype(np.float32)


def random_explain(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """`random_maps` as a map function (`Explain`): the same maps for any model."""
    return random_maps(map_shape(model, images.shape))


def gaussian_explain(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """`centred_gaussian_maps` as a map function (`Explain`): the same maps for any model."""
    return centred_gaussian_maps(map_shape(model, images.shape))


# --------------------------------------------------------------------------- randomisation
def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers that hold weights, from the output down to the input (nested models opened).

    Args:
        model: a Keras model.

    Returns:
        The layers in reverse order of `model.layers`, the layers of a nested model in place
        of the model.
    """
    found: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += reversed(weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found[::-1]


def shuffle_weights(layer: keras.layers.Layer, rng: np.random.Generator) -> None:
    """Re-initialises `layer` in place: each weight tensor's entries randomly permuted.

    Every entry of each variable (kernels, biases, batch-normalization statistics) is moved
    to a random position of the same tensor, so the layer keeps its weights' distribution
    (and its activations their scale, a variance stays positive) while all it learned is
    lost. Adebayo et al. re-draw from the initializer; Quantus' TensorFlow backend permutes
    the first axis only, which leaves most of a convolution kernel's structure.
    """
    for variable in layer.weights:
        values = keras.ops.convert_to_numpy(variable.value)
        variable.assign(rng.permutation(values.reshape(-1)).reshape(values.shape))


def model_copy(model: keras.Model) -> keras.Model:
    """A copy of `model` with its own weights (`keras.models.clone_model` + `set_weights`)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


@dataclasses.dataclass(frozen=True, eq=False)
class RandomisationResult:
    """How a method's maps change as a copy of the model is randomised.

    Attributes:
        method: the method's name.
        mode: `"cascading"` (step `k` has the top `k + 1` weighted layers randomised) or
            `"layer"` (one step: the explained layer alone).
        layers: the layer randomised at each step (cumulatively when cascading), `(S,)`.
        spearman: float64 `(S, B)` rank correlation of each image's trained and randomised maps.
        ssim: float64 `(S, B)` SSIM of the same pairs.
    """

    method: str
    mode: str
    layers: tuple[str, ...]
    spearman: np.ndarray
    ssim: np.ndarray

    @property
    def final_spearman(self) -> float:
        """The mean rank correlation after the last step (every layer, when cascading)."""
        return float(self.spearman[-1].mean())

    @property
    def flagged(self) -> bool:
        """Whether the maps barely change: `final_spearman >= UNCHANGED_CORRELATION`."""
        return self.final_spearman >= UNCHANGED_CORRELATION


def _explainer(method: MethodLike, options: Mapping[str, Any], batch_size: int) -> tuple[
    str, Callable[[keras.Model], Callable[[np.ndarray, np.ndarray], np.ndarray]]
]:
    """The method's name and `build(model) -> explain(images, classes) -> maps`."""
    if isinstance(method, (str, type)):
        cls = get_method(method)
        layer = options.get("layer")
        given = dict(options)
        if isinstance(layer, keras.layers.Layer):
            given["layer"] = layer.name  # the copy's layer of that name

        def build(model: keras.Model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
            cam = cls(model, **given)

            def explain(images: np.ndarray, classes: np.ndarray) -> np.ndarray:
                return np.concatenate([
                    cam(images[start : start + batch_size], classes[start : start + batch_size])
                    for start in range(0, len(images), batch_size)
                ])

            explain.layer = cam.layer  # type: ignore[attr-defined]
            return explain

        return method_name(cls), build
    if callable(method):
        if options:
            raise ValueError(
                f"`method_options` are constructor arguments of a method class; received "
                f"{dict(options)!r} with the map function {method!r}."
            )
        return getattr(method, "__name__", "maps"), lambda model: (
            lambda images, classes: np.asarray(method(model, images, classes), np.float32)
        )
    raise TypeError(
        "`method` must be a method name, a `BaseCAM` subclass or a function "
        f"`(model, images, classes) -> maps`; received {type(method).__name__}."
    )


def explained_for(
    model: keras.Model, images: np.ndarray, targets: Targets, output: int | str | None = None
) -> np.ndarray:
    """The class each image is explained for: `targets`, the model's top-1 class for `None`.

    Args:
        model: a Keras classifier.
        images: `(B, H, W, C)` images.
        targets: `None`, an int or one int per image.
        output: the explained output of a model with several (`select_output`). Defaults to
            `None` (the only output).

    Returns:
        int32 `(B,)`.

    Raises:
        ValueError: a model with several outputs and no `output` (the message lists them).
    """
    outputs = select_output(model, output).predict(images, verbose=0)
    num_classes = max(2, int(np.shape(outputs)[-1]))
    resolved = resolve_targets(targets, len(images), num_classes)
    if callable(resolved):
        raise TypeError(
            "The sanity checks explain one class per image: `targets` must be None, an int or "
            "one int per image, not a callable."
        )
    if np.shape(outputs)[-1] == 1:  # a single unit: class 1 above 0.5 / a positive logit
        outputs = np.concatenate([np.zeros_like(outputs), outputs], axis=-1)
    return explained_classes(resolved, outputs).numpy().astype(np.int32)


def model_parameter_randomisation(
    model: keras.Model,
    images: ArrayLike,
    method: MethodLike = "gradcam",
    targets: Targets = None,
    *,
    mode: Mode = "cascading",
    seed: int = 0,
    batch_size: int = 32,
    method_options: Mapping[str, Any] | None = None,
) -> RandomisationResult:
    """Model parameter randomisation test (Adebayo et al., 2018, Sec. 3.1) on a copy.

    The model is copied (`keras.models.clone_model` and its weights); the user's model is
    never modified. The method explains the images on the trained copy; then the copy's
    layers are re-initialised (`shuffle_weights`) and the same images are explained again for
    the same classes (those of the trained model), and each pair of maps is compared by
    `spearman` and `ssim`:

    - `mode="cascading"`: from the output layer down, one weighted layer more at each step,
      until every weight is random (the paper's cascading randomisation);
    - `mode="layer"`: the explained layer alone (or, when it holds no weights, e.g. a ReLU,
      the nearest weighted layer below it), the paper's independent randomisation.

    A method whose maps still correlate at `UNCHANGED_CORRELATION` or more after the last
    step does not depend on the model's weights: the result is `flagged` and a warning names
    the method.

    Args:
        model: a Keras classifier, as the methods take it.
        images: `(B, H, W, C)` images preprocessed for the model.
        method: a registered method name, a `BaseCAM` subclass, or a map function
            `(model, images, classes) -> (B, H, W) maps in [0, 1]`. Defaults to `"gradcam"`.
        targets: `None` (the trained model's top-1 class), an int or one int per image.
            Defaults to `None`.
        mode: `"cascading"` or `"layer"`. Defaults to `"cascading"`.
        seed: seed of the permutations. Defaults to `0`.
        batch_size: images per method call. Defaults to `32`.
        method_options: constructor arguments of the method class (e.g. `{"layer": "conv"}`;
            a layer object is looked up by name in the copy). Defaults to `None`.

    Returns:
        A `RandomisationResult`.

    Raises:
        ValueError: an unknown `mode` or method, or a model without weights.

    Example:
    ```python
    result = kc.sanity.model_parameter_randomisation(model, images, "gradcam")
    for layer, rho in zip(result.layers, result.spearman.mean(axis=1)):
        print(f"{layer}: {rho:.2f}")
    ```
    """
    check_choice("mode", mode, MODES)
    batch_size = check_positive_int("batch_size", batch_size)
    images = check_images(images)
    name, build = _explainer(method, method_options or {}, batch_size)
    classes = explained_for(model, images, targets, (method_options or {}).get("output"))
    copy = model_copy(model)
    explain = build(copy)
    trained = explain(images, classes)
    layers = weighted_layers(copy)
    if not layers:
        raise ValueError(f"`model` {model.name!r} has no weights to randomise.")
    if mode == "layer":
        layers = [_explained_weighted_layer(copy, getattr(explain, "layer", None), layers)]
    rng = np.random.default_rng(seed)
    correlations, similarities = [], []
    for layer in layers:
        shuffle_weights(layer, rng)
        randomised = explain(images, classes)
        correlations.append(spearman(trained, randomised))
        similarities.append(ssim(trained, randomised))
    result = RandomisationResult(
        name, mode, tuple(layer.name for layer in layers),
        np.stack(correlations), np.stack(similarities),
    )
    if mode == "cascading" and result.flagged:
        warnings.warn(
            f"keras_cam: the maps of {name!r} barely change when every weight of the model is "
            f"randomised (mean Spearman {result.final_spearman:.2f} >= "
            f"{UNCHANGED_CORRELATION}): they do not explain what the model learned.",
            stacklevel=2,
        )
    return result


def _explained_weighted_layer(
    model: keras.Model, layer: keras.layers.Layer | None, weighted: Sequence[keras.layers.Layer]
) -> keras.layers.Layer:
    """The explained layer if it has weights, else the nearest weighted layer below it."""
    if layer is None:
        raise ValueError(
            "`mode='layer'` randomises the explained layer, which a map function has none of; "
            "pass a method name or class, or use `mode='cascading'`."
        )
    if layer.weights:
        return layer
    flat = weighted[::-1]  # input -> output order
    order = [item.name for item in _all_layers(model)]
    position = order.index(layer.name)
    below = [item for item in flat if order.index(item.name) < position]
    if not below:
        raise ValueError(f"No layer with weights feeds the explained layer {layer.name!r}.")
    return below[-1]


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer in input -> output order, nested models opened."""
    found: list[keras.layers.Layer] = []
    for layer in model.layers:
        found += _all_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return found


def randomisation(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    targets: Targets = None,
    *,
    method: MethodLike,
    method_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> MetricResult:
    """Rank correlation of each map with the map of the fully randomised model.

    The last step of the cascading `model_parameter_randomisation`, in one step: every
    weighted layer of a copy of the model is re-initialised (`shuffle_weights`), the method
    explains the images again for the same classes, and each image scores the `spearman`
    correlation with its given map. Lower is better: a map that explains the model changes
    when everything the model learned is destroyed; a map that does not (an edge detector, a
    fixed prior) scores near 1.

    Args:
        model: a Keras classifier.
        images: `(B, H, W, C)` images preprocessed for the model.
        maps: `(B, H, W)` maps of the trained model by `method`, for `targets`.
        targets: the classes the maps explain: `None` (top-1), an int or one int per image.
            Defaults to `None`.
        method: the method that made `maps` (see `model_parameter_randomisation`).
        method_options: its constructor arguments. Defaults to `None`.
        seed: seed of the permutations. Defaults to `0`.
        batch_size: images per method call. Defaults to `32`.

    Returns:
        A `MetricResult` named `"randomisation"`, `unit="correlation"`, lower is better.

    Example:
    ```python
    maps = kc.GradCAM(model)(images)
    kc.sanity.randomisation(model, images, maps, method="gradcam").mean
    ```
    """
    batch_size = check_positive_int("batch_size", batch_size)
    images = check_images(images)
    trained = check_maps(maps, map_shape(model, images.shape), order_only=True)
    _, build = _explainer(method, method_options or {}, batch_size)
    classes = explained_for(model, images, targets, (method_options or {}).get("output"))
    copy = model_copy(model)
    explain = build(copy)
    rng = np.random.default_rng(seed)
    for layer in weighted_layers(copy):
        shuffle_weights(layer, rng)
    correlation = spearman(trained, explain(images, classes))
    return MetricResult("randomisation", correlation, "correlation", higher_is_better=False)


SANITY_METRICS: dict[str, Callable[..., MetricResult]] = {"randomisation": randomisation}
"""The sanity checks `evaluate` takes as metric names: they call
`(model, images, maps, targets, method=..., method_options=...)`."""
