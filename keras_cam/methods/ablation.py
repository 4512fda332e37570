"""Ablation-CAM: channel weights from the score drop when a channel is zeroed.

A member of the perturbation family (`keras_cam.methods.perturbation`): the engine streams the
(image, channel) pairs in chunks; Ablation-CAM perturbs the explained layer's features, not
the image, so each pass restarts from that layer (`keras_cam.surgery.build_head_model`) and
costs only the layers after it.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_cam.methods.perturbation import PerturbationCAM
from keras_cam.surgery import Head, build_head_model
from keras_cam.targets import ScoreFn, target_scores


def ablation_weights(reference: Any, ablated: Any) -> tf.Tensor:
    """Ablation-CAM weights: the relative score drop `(y^c - y^c_k) / y^c` (pure).

    Desai & Ramaswamy 2020 (https://openaccess.thecvf.com/content_WACV_2020/papers/
    Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_
    Localization_WACV_2020_paper.pdf), Eq. 3: `w_k^c = (y^c - y^c_k) / y^c`, where `y^c` is the
    target score of the image and `y^c_k` the score with channel `k` of the explained layer
    zeroed. A zero `y^c` gives weights 0 (no relative drop is defined).

    Args:
        reference: float `(B,)`, the score `y^c` of each image.
        ablated: float `(B, K)`, the score `y^c_k` with channel `k` zeroed.

    Returns:
        float32 weights `(B, K)`.

    Example:
    ```python
    ablation_weights([2.0], [[1.5, 2.0, 3.0]])   # [[0.25, 0.0, -0.5]]
    ```
    """
    reference = tf.cast(reference, tf.float32)[:, tf.newaxis]
    return tf.math.divide_no_nan(reference - tf.cast(ablated, tf.float32), reference)


class AblationCAM(PerturbationCAM):
    """Ablation-CAM (Desai & Ramaswamy, WACV 2020): the score drop when a channel is zeroed.

    For each image and each channel `k` of the explained layer, the layer's output is set to
    `A` with channel `k` zeroed and the network runs **from that layer on** (the head
    sub-model of `keras_cam.surgery.build_head_model`, so a pass costs only the layers after
    the explained one). With `y^c` the target score and `y^c_k` the score of the ablated
    features, the weights are `w_k = (y^c - y^c_k) / y^c` (`ablation_weights`, Eq. 3 of the
    paper) and the map is `ReLU(sum_k w_k A^k)`.

    On a conv -> GlobalAveragePooling2D -> Dense head, zeroing channel `k` lowers the logit by
    `w_k^c mean(A^k)`, so the weights are exactly `w_k^c mean(A^k) / y^c`: CAM's map divided
    by the logit.

    Variant: the channel is zeroed, as in the paper. pytorch-grad-cam zeroes it only when the
    layer's minimum is 0 and otherwise sets it to `min - 1e7`. A channel that is zero
    everywhere changes nothing (weight 0): it is skipped (`last_stats.skipped`); a constant
    non-zero channel is ablated like any other. The scores are the pre-softmax logits
    (`score="logit"`, the paper's `y^c`) or the probabilities (`score="probability"`); a
    target score near 0 makes the weights large (the paper's normalization).

    The (image, channel) pairs are streamed by the engine of `PerturbationCAM` (chunks of
    `batch_size`, the memory budget when `None`, progress, `max_channels`, `last_stats`).

    Targets: `None`, an int, one int per image, or a callable applied to the head's logits
    (or probabilities with `score="probability"`) `(n, num_classes)`, one score per row.

    Args:
        model: a Functional or Sequential Keras classifier (nested models supported). It is
            not modified.
        layer: the layer to explain: a name, a layer object, or `None` for the automatic
            choice. Every path from the input to the output must go through it (the network
            restarts from its features). Defaults to `None`.
        batch_size: ablated feature maps per head pass, at least 1, or `None` for the memory
            budget of `PerturbationCAM`. Defaults to `None`.
        max_channels: ablate only the `k` channels of largest variance per image (the others
            get weight 0), `1 <= k <= K`; `None` ablates all. Defaults to `None`.
        score: `"logit"` or `"probability"`, see above. Defaults to `"logit"`.
        skip_constant: skip the passes of all-zero channels, whose outcome is known. Defaults
            to `True`.
        verbose: 0, 1 (progress bar when the stream takes more than 2 s) or 2. Defaults to
            `1`.
        layer_call: which call of `layer` to explain (see `keras_cam.BaseCAM`). Defaults to
            `None`.
        head: how to read the model's output (see `keras_cam.BaseCAM`). Defaults to `None`.
        output: the output to explain of a model with several (see `keras_cam.BaseCAM`).
            Defaults to `None`.
        input: the explained input of a model with several; refused when the model has other
            inputs, which join the network where the features cannot carry them. Defaults
            to `None`.
        token_grid: the patch grid of a token layer (see `keras_cam.BaseCAM`). Defaults to
            `None`.

    Attributes:
        last_stats: a `PerturbationStats` of the last call (`masked_passes` counts head
            passes).

    Raises:
        ValueError: at construction: a layer the network cannot restart from (a path around
            it, e.g. inside a residual block; the message names the fix), `batch_size < 1`,
            `max_channels` outside `[1, K]`, an unknown `score` or `verbose`.

    Example:
    ```python
    cam = keras_cam.AblationCAM(model, batch_size=64)
    maps = cam(images, targets=[3, 7])        # (2, H, W)
    ```
    """

    display_name = "Ablation-CAM"

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        batch_size: int | None = None,
        max_channels: int | None = None,
        score: str = "logit",
        skip_constant: bool = True,
        verbose: int = 1,
        layer_call: int | None = None,
        head: str | Head | None = None,
        output: int | str | None = None,
        input: int | str | None = None,
        token_grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(
            model,
            layer,
            batch_size=batch_size,
            max_channels=max_channels,
            skip_constant=skip_constant,
            verbose=verbose,
            layer_call=layer_call,
            head=head,
            score=score,
            output=output,
            input=input,
            token_grid=token_grid,
        )
        if self._cam.other_inputs:
            raise ValueError(
                f"Ablation-CAM restarts the network from the features of layer "
                f"{self.layer.name!r}, but model {model.name!r} also takes other inputs "
                f"({', '.join(repr(t.name) for t in self._cam.other_inputs)}) that join it "
                "elsewhere. Use keras_cam.ScoreCAM (it masks only the explained input) or "
                "keras_cam.GradCAM for a model with several inputs."
            )
        self._head = build_head_model(self._cam)

    def pair_scores(
        self,
        images: tf.Tensor,
        others: tuple[tf.Tensor, ...],
        maps: tf.Tensor,
        pairs: tf.Tensor,
        classes: tf.Tensor,
        placement: tf.Tensor,
        score_fn: ScoreFn | None,
    ) -> tf.Tensor:
        """`y^c_k`: the head's score of each pair's features with its channel zeroed."""
        rank = maps.shape.rank
        features = tf.transpose(maps, (0, *range(2, rank), 1))  # the B images' maps, channels last
        kept = 1.0 - tf.one_hot(pairs[:, 1], self.num_channels)  # (n, K), over every cell
        for _ in range(rank - 2):
            kept = kept[:, tf.newaxis]
        ablated = tf.gather(features, pairs[:, 0]) * kept
        return self._head_scores(ablated, classes, score_fn, pairs[:, 0])

    def known_channels(self, flat: tf.Tensor) -> tf.Tensor:
        """Channels zero everywhere: zeroing them changes nothing."""
        return tf.reduce_max(tf.abs(flat), axis=-1) == 0.0

    def reference_scores(
        self,
        features: tf.Tensor,
        classes: tf.Tensor,
        score_fn: ScoreFn | None,
        image_index: tf.Tensor,
    ) -> tf.Tensor:
        """`y^c`: the head's score of the unablated features (with the first pass)."""
        return self._head_scores(features, classes, score_fn, image_index)

    def relative_scores(self, scores: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
        """`ablation_weights` of the unablated score `y^c` and the ablated ones."""
        return ablation_weights(reference, scores)

    def weights_from_scores(
        self, scores: tf.Tensor, selected: tf.Tensor, constant: tf.Tensor
    ) -> tf.Tensor:
        """The relative drops of the ablated channels; 0 for all-zero or unselected ones."""
        return tf.where(selected & ~constant, scores, tf.zeros_like(scores))

    def needs_constant_scores(self) -> bool:
        """All-zero channels get weight 0: no baseline pass."""
        return False

    def _head_scores(
        self,
        features: tf.Tensor,
        classes: tf.Tensor,
        score_fn: ScoreFn | None,
        image_index: tf.Tensor,
    ) -> tf.Tensor:
        logits, probabilities = self._head(
            tf.cast(features, self._head.inputs[0].dtype), training=False
        )
        outputs = logits if self.score == "logit" else probabilities
        return target_scores(tf.cast(outputs, tf.float32), classes, score_fn, image_index)
