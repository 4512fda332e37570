"""Score-CAM and Faster Score-CAM: channel weights from forward passes of masked inputs.

Both are members of the perturbation family (`keras_cam.methods.perturbation`): the engine
streams the masked inputs of all (image, channel) pairs in chunks; Score-CAM only says what a
masked input is (`perturb`: the image times the channel's mask) and how the scores become
channel weights (`channel_weights`, pure).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_cam.methods.perturbation import PerturbationCAM, PerturbationStats
from keras_cam.surgery import Head

WEIGHTINGS = ("reference", "softmax")
"""Known values of `ScoreCAM(weighting=...)`."""

ScoreCAMStats = PerturbationStats
"""What the last call of a `ScoreCAM` computed (`cam.last_stats`); see `PerturbationStats`."""


def channel_weights(
    scores: Any, selected: Any, constant: Any, weighting: str = "reference"
) -> tf.Tensor:
    """Turns the masked-input scores into Score-CAM channel weights (pure, tensors in and out).

    Args:
        scores: float `(B, K)` score `s_k` of each image's input masked with channel `k`. For
            constant channels (softmax weighting) this is the blank-input baseline score.
        selected: bool `(B, K)`, the channels taking part (all, or the top-k by variance).
        constant: bool `(B, K)`, the channels constant over the map.
        weighting: `"reference"`: `w_k = s_k` for selected non-constant channels, 0 otherwise
            (the authors' code); `"softmax"`: softmax of `s_k` over the selected channels, 0
            for the others (the paper). Defaults to `"reference"`.

    Returns:
        float32 weights `(B, K)`.

    Example:
    ```python
    channel_weights([[0.9, 0.1]], [[True, True]], [[False, False]], "softmax")
    # [[0.69, 0.31]]
    ```
    """
    scores = tf.cast(scores, tf.float32)
    selected = tf.cast(selected, tf.bool)
    if weighting == "reference":
        counted = tf.logical_and(selected, tf.logical_not(tf.cast(constant, tf.bool)))
        return tf.where(counted, scores, tf.zeros_like(scores))
    if weighting == "softmax":
        return tf.nn.softmax(tf.where(selected, scores, -np.inf), axis=-1)
    raise ValueError(f"`weighting` must be one of {WEIGHTINGS}; received {weighting!r}.")


class ScoreCAM(PerturbationCAM):
    """Score-CAM (Wang et al., 2020, https://arxiv.org/abs/1910.01279), and its top-k variant.

    Each channel `A^k` of the explained layer is upsampled to the input size (bilinear) and
    min-max normalized to a mask `H^k` in [0, 1]; the input `X` masked with it is scored by
    the model's scores as the head is read (`keras_cam.surgery.read_head`):
    `s_k = p_c(X * H^k)`, the probability of the target class `c` for a classifier (for a
    single-sigmoid head, the sigmoid probability; for a model that outputs logits, their
    softmax), and the raw output itself for a raw-score head (a single linear unit, e.g. a
    regression, or `head="linear"`). The map is `ReLU(sum_k w_k A^k)`, with one of two
    weightings:

    - `"reference"` (the authors' code, the default): `w_k = s_k`. Channels constant over the
      map have no mask to normalize and are left out, as in the authors' code (for the usual
      all-zero channel after a ReLU the term `s_k A^k` is zero anyway).
    - `"softmax"` (the paper, Eq. 4-5): `w = softmax_k(s_k - s_b)`, where `s_b` is the score of
      the blank baseline input (all zeros, in the model's preprocessed input space). A
      constant channel's mask is all zeros, so its masked input *is* the blank input: its
      score is exactly `s_b` (increase of confidence 0), and all constant channels share that
      one baseline pass. (The softmax is shift-invariant, so `s_b` matters only as the score
      of the constant channels.)

    With `max_channels=k` only the `k` channels of each image with the largest spatial
    variance take part (Faster Score-CAM; `FasterScoreCAM` sets `k=10`). Constant channels
    never need a forward pass: they are counted and skipped (`last_stats`). The maps are
    computed at the layer's resolution and upsampled afterwards like every method's
    (`ReLU(sum_k w_k A^k)` then bilinear resize), which equals the authors' upsample-then-sum
    up to the ReLU at the borders of positive regions.

    The masked inputs are streamed by the engine of `keras_cam.methods.perturbation.
    PerturbationCAM`: all images' (image, channel) pairs in chunks of `batch_size`, so at most
    `batch_size` masked copies exist at a time; with `batch_size=None` the chunk size follows
    a 256 MiB memory budget (see `PerturbationCAM`).

    Targets: `None`, an int or one int per image, as everywhere. A callable target is applied
    to the **scores** (probabilities, or raw outputs) `(n, num_classes)` of each chunk of
    masked inputs and must return one score per row, computed from that row alone (e.g.
    `lambda p: p[:, 3] - p[:, 5]`).

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported). It is
            not modified.
        layer: the layer to explain: a name, a layer object, or `None` for the automatic
            choice. Defaults to `None`.
        batch_size: masked inputs per forward pass, at least 1, or `None` for the memory
            budget. Defaults to `None`.
        max_channels: keep only the `k` channels of largest variance per image (Faster
            Score-CAM), `1 <= k <= K` channels of the layer; `None` keeps all. Defaults to
            `None`.
        weighting: `"reference"` or `"softmax"`, see above. Defaults to `"reference"`.
        skip_constant: skip the forward passes of constant channels, whose outcome is known.
            Turning it off only costs time; it exists to verify that. Defaults to `True`.
        verbose: 0 (silent), 1 (progress bar) or 2 (one line at the end); a `keras.utils.
            Progbar` is shown only when the stream is expected to take more than 2 seconds.
            Defaults to `1`.
        layer_call: which call of `layer` to explain when the model makes several (see
            `keras_cam.BaseCAM`). Defaults to `None`.
        head: how to read the model's output, hence what the masked inputs are scored with:
            `None` for automatic, or one of `keras_cam.surgery.HEADS` (see
            `keras_cam.BaseCAM`). Defaults to `None`.
        output: the output to explain of a model with several (see `keras_cam.BaseCAM`).
            Defaults to `None`.
        input: the explained input of a model with several (see `keras_cam.BaseCAM`); only
            it is masked, the other inputs reach the model unchanged. Defaults to `None`.
        token_grid: the patch grid of a token layer (see `keras_cam.BaseCAM`). Defaults to
            `None`.

    Attributes:
        last_stats: a `ScoreCAMStats` (`PerturbationStats`) describing the last call (passes
            run, channels skipped and `skipped_fraction`, chunking, time), or `None` before
            the first call.

    Returns:
        Calling the instance returns float32 maps, `(H, W)` for one image or `(B, H, W)` for a
        batch, min-max normalized to [0, 1] (see `BaseCAM.__call__`).

    Raises:
        ValueError: at construction: `batch_size < 1`, `max_channels` outside `[1, K]`, an
            unknown `weighting` or `verbose`.

    Example:
    ```python
    cam = keras_cam.ScoreCAM(model, batch_size=32)
    maps = cam(images, targets=[3, 7])        # (2, H, W)
    cam.last_stats.skipped_fraction           # share of constant channels skipped
    fast = keras_cam.ScoreCAM(model, max_channels=10, weighting="softmax")
    ```
    """

    display_name = "Score-CAM"

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        batch_size: int | None = None,
        max_channels: int | None = None,
        weighting: str = "reference",
        skip_constant: bool = True,
        verbose: int = 1,
        layer_call: int | None = None,
        head: str | Head | None = None,
        output: int | str | None = None,
        input: int | str | None = None,
        token_grid: tuple[int, int] | None = None,
    ) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"`weighting` must be one of {WEIGHTINGS}; received {weighting!r}.")
        self.weighting = weighting
        super().__init__(
            model,
            layer,
            batch_size=batch_size,
            max_channels=max_channels,
            skip_constant=skip_constant,
            verbose=verbose,
            layer_call=layer_call,
            head=head,
            output=output,
            input=input,
            token_grid=token_grid,
        )

    def perturb(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """The image times the channel's mask: `X * H^k`."""
        return images * masks

    def weights_from_scores(
        self, scores: tf.Tensor, selected: tf.Tensor, constant: tf.Tensor
    ) -> tf.Tensor:
        """`channel_weights` with this instance's `weighting`."""
        return channel_weights(scores, selected, constant, self.weighting)

    def needs_constant_scores(self) -> bool:
        """Only the softmax weighting counts constant channels (at the blank input's score)."""
        return self.weighting == "softmax"

    def blank_inputs(self, images: tf.Tensor) -> tf.Tensor:
        """One blank (all-zero) input shared by every image: a zero mask blanks any image."""
        return tf.zeros_like(images[:1])


class FasterScoreCAM(ScoreCAM):
    """Faster Score-CAM: Score-CAM on the 10 channels of largest variance per image.

    The same as `ScoreCAM(model, layer, max_channels=10, ...)` (fewer if the layer has fewer
    channels); all `ScoreCAM` arguments apply.

    Example:
    ```python
    maps = keras_cam.FasterScoreCAM(model)(images)
    ```
    """

    display_name = "Faster Score-CAM"
    default_max_channels = 10


def _check_count(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{argument}` must be an int >= 1; received {value!r}.")
    return int(value)


class SSCAM(ScoreCAM):
    """SS-CAM (Wang et al., 2020, https://arxiv.org/abs/2006.14255): Score-CAM, smoothed masks.

    Each channel's mask `H^k` (as Score-CAM's) is perturbed with `n_samples` draws of Gaussian
    noise, `X * (H^k + delta_i)`, `delta_i ~ N(0, noise_std^2)` of the mask's size (one value
    per pixel, shared by the image's channels); the channel's score is the mean over the draws,
    `s_k = 1/N sum_i p_c(X * (H^k + delta_i))`, weighted as in `ScoreCAM` (`weighting`). This
    is the paper's "smoothing the mask" variant and torch-cam's `SSCAM` (there the weighting
    is softmax over the logit increase).

    The noise is seeded: the draws depend only on `seed` and the image size, and every
    (image, channel) pair of every call gets the same `N` draws, so the maps are deterministic,
    a batch gives the maps of its images one at a time and chunking (`batch_size`) changes
    nothing. (torch-cam draws fresh noise per channel and per call.) A constant channel's
    inputs are `X * delta_i` (its mask is all zeros).

    Args:
        model, layer, batch_size, max_channels, weighting, skip_constant, verbose, layer_call,
            head: as `ScoreCAM`.
        n_samples: noisy copies `N` per (image, channel) pair. Defaults to `35` (torch-cam).
        noise_std: standard deviation `sigma` of the noise, in mask units (masks are in
            [0, 1]). Defaults to `2.0` (torch-cam).
        seed: the noise's seed. Defaults to `0`.

    Raises:
        ValueError: `n_samples < 1`, a negative `noise_std`, and everything `ScoreCAM` refuses.

    Example:
    ```python
    maps = keras_cam.SSCAM(model, n_samples=16, noise_std=0.5)(images)
    ```
    """

    display_name = "SS-CAM"
    expensive = True

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        n_samples: int = 35,
        noise_std: float = 2.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.perturbations = _check_count(n_samples, "n_samples")
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not (
            noise_std >= 0
        ):
            raise ValueError(f"`noise_std` must be a number >= 0; received {noise_std!r}.")
        self.n_samples = self.perturbations
        self.noise_std = float(noise_std)
        self.seed = int(seed)
        super().__init__(model, layer, **kwargs)

    def perturb(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """`X * (H^k + delta_i)` for the `N` seeded draws, sample-major."""
        shape = tf.concat([[self.perturbations], tf.shape(masks)[1:]], axis=0)
        noise = tf.random.stateless_normal(shape, seed=[self.seed, 0], stddev=self.noise_std)
        inputs = images[tf.newaxis] * (masks[tf.newaxis] + noise[:, tf.newaxis])
        return tf.reshape(inputs, tf.concat([[-1], tf.shape(images)[1:]], axis=0))

    blank_inputs = PerturbationCAM.blank_inputs
    """A constant channel's inputs: `perturb` with an all-zero mask, one set per image."""


class ISCAM(ScoreCAM):
    """IS-CAM (Naidu et al., 2020, https://arxiv.org/abs/2010.03023): integrated Score-CAM.

    The masked input is scaled along a path from the blank input: step `i` of `N` scores
    `X * (c_i H^k)` with the cumulative coefficient `c_i = sum_{j=1..i} j / N` (torch-cam's
    `ISCAM`, the paper's `M_i`), and the channel's score is the mean over the steps,
    `s_k = 1/N sum_i p_c(X * c_i H^k)`, weighted as in `ScoreCAM` (`weighting`; torch-cam uses
    the softmax of the logit increase). No randomness: the maps are deterministic.

    Args:
        model, layer, batch_size, max_channels, weighting, skip_constant, verbose, layer_call,
            head: as `ScoreCAM`.
        n_steps: integration steps `N`. Defaults to `10` (torch-cam).

    Raises:
        ValueError: `n_steps < 1`, and everything `ScoreCAM` refuses.

    Example:
    ```python
    maps = keras_cam.ISCAM(model, n_steps=10)(images)
    ```
    """

    display_name = "IS-CAM"
    expensive = True

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        n_steps: int = 10,
        **kwargs: Any,
    ) -> None:
        self.perturbations = _check_count(n_steps, "n_steps")
        self.n_steps = self.perturbations
        super().__init__(model, layer, **kwargs)

    def coefficients(self) -> np.ndarray:
        """The path coefficients `c_i = sum_{j<=i} j / N`, float32 `(N,)`."""
        steps = np.arange(1, self.n_steps + 1, dtype=np.float64) / self.n_steps
        return np.cumsum(steps).astype(np.float32)

    def perturb(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """`X * c_i H^k` for the `N` steps, step-major."""
        scale = tf.reshape(tf.constant(self.coefficients()), [-1] + [1] * images.shape.rank)
        inputs = images[tf.newaxis] * (scale * masks[tf.newaxis])
        return tf.reshape(inputs, tf.concat([[-1], tf.shape(images)[1:]], axis=0))
