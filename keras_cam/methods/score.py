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
