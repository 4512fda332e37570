"""CAM: the original class activation map, read straight from a GAP -> Dense head.

The head is found by `keras_cam.surgery.find_gap_head`, which walks the model's graph back
from its output: an optional softmax / sigmoid layer, the `Dense` classifier, any layers that
are the identity at inference (`Dropout` and its relatives, `Flatten`), and the
`GlobalAveragePooling2D` layer whose input is the explained feature map. Nested models (a
`keras.applications` base inside a Sequential, or a head built as its own model) are walked
through.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_cam.methods.base import BaseCAM
from keras_cam.surgery import (
    Head,
    final_layer,
    find_gap_head,
    is_graph_model,
    resolve_layer,
    select_output,
)

def cam_weights(kernel: Any, class_idx: Any, binary: bool = True) -> tf.Tensor:
    """CAM's channel weights: the Dense kernel's column of each image's class.

    A single-unit kernel of a binary head is expanded to two classes the way
    `build_cam_model` expands the logits to `[-z, z]`: class 1 gets `+w`, class 0 gets `-w`.

    Args:
        kernel: the Dense kernel `w`, `(C, num_units)`.
        class_idx: int `(B,)` class of each image, in `[0, num_classes)`.
        binary: whether a single-unit kernel is a binary classifier (expanded to two
            classes) rather than one raw score (`head="linear"`, kept as one class).
            Defaults to `True`.

    Returns:
        float32 `(B, C)` with row `b` equal to `w[:, class_idx[b]]`.

    Example:
    ```python
    cam_weights([[1.0, 2.0], [3.0, 4.0]], [1, 0])   # [[2., 4.], [1., 3.]]
    ```
    """
    kernel = tf.cast(kernel, tf.float32)
    if binary and kernel.shape[-1] == 1:
        kernel = tf.concat([-kernel, kernel], axis=-1)
    return tf.gather(tf.transpose(kernel), class_idx)


class CAM(BaseCAM):
    """CAM (Zhou et al., 2016, https://arxiv.org/abs/1512.04150).

    For a model whose logits are `z_c = sum_k w_k^c * mean_ij(A^k_ij) + b_c` (convolutional
    feature maps `A`, then GlobalAveragePooling2D, then a Dense layer with kernel `w`), the
    map of class `c` is

        map_c = ReLU(sum_k w_k^c A^k)

    read directly from the Dense kernel: one forward pass, no gradient. The bias `b_c` is the
    same at every position, so it is left out, as in the paper (the spatial mean of the map
    before the ReLU, plus `b_c`, is exactly the logit `z_c`); the ReLU and the min-max
    normalization are those of every method here. On such a model CAM equals Grad-CAM with
    the logit score (whose weights are `w_k^c / (h * w)`) after normalization.

    The head is found automatically, also through Dropout, a separate Softmax/Activation
    layer and nested models (see `find_gap_head`). For a single-unit sigmoid head, class 1 is
    the positive class (weights `+w`) and class 0 its complement (weights `-w`).

    Args:
        model: a Functional or Sequential classifier ending with conv feature maps ->
            GlobalAveragePooling2D -> Dense. `keras_cam.retrofit_gap` builds one from any
            convolutional base.
        layer: the layer whose output feeds the pooling (a name or the layer object; a nested
            model whose output it is also works), or `None` to find it. CAM is defined only
            on that layer. Defaults to `None`.
        layer_call: which call of that layer to explain when the model makes several (see
            `keras_cam.BaseCAM`). Defaults to `None`.
        head: how to read the model's output: `None` for automatic, or one of
            `keras_cam.surgery.HEADS` (see `keras_cam.BaseCAM`). Defaults to `None`.
        verbose: accepted like every method's (see `keras_cam.BaseCAM`); CAM runs a single
            pass and shows no progress. Defaults to `0`.
        output: the output to explain of a model with several (see `keras_cam.BaseCAM`); its
            head must be GAP -> Dense. Defaults to `None`.
        input: the explained input of a model with several (see `keras_cam.BaseCAM`).
            Defaults to `None`.

    Attributes:
        head: the `GapHead` found (`cam.head.dense.kernel` holds the class weights).

    Raises:
        ValueError: the model has no GAP -> Dense head, `layer` is not the pooled layer, or
            (when called) `targets` is a callable: CAM needs class indices.

    Example:
    ```python
    model = keras_cam.retrofit_gap("vgg16", num_classes=10, weights="imagenet")
    ...  # keras_cam.fine_tune_gap(model, train_data)
    cam = keras_cam.CAM(model)
    maps = cam(images, targets=[3, 7])   # (2, 224, 224) float32 in [0, 1]
    ```
    """

    requires_gradients = False
    supports_callable_targets = False
    display_name = "CAM"

    def __init__(
        self,
        model: keras.Model,
        layer: str | keras.layers.Layer | None = None,
        *,
        layer_call: int | None = None,
        head: str | Head | None = None,
        verbose: int = 0,
        output: int | str | None = None,
        input: int | str | None = None,
    ) -> None:
        model = select_output(model, output)
        self.head = find_gap_head(model, head)
        features = self.head.features
        if layer is not None:
            chosen = resolve_layer(model, layer, input=input)
            if chosen is not features and not (
                is_graph_model(chosen) and final_layer(chosen) is features
            ):
                raise ValueError(
                    f"CAM is defined only on the feature maps that feed the "
                    f"GlobalAveragePooling2D layer {self.head.pooling.name!r}, i.e. layer "
                    f"{features.name!r}; received `layer`={chosen.name!r}. Pass `layer=None`, or "
                    "use `keras_cam.GradCAM` to explain another layer."
                )
        super().__init__(
            model, features, layer_call=layer_call, head=self.head.head, verbose=verbose,
            input=input,
        )

    def compute_weights(
        self, features: tf.Tensor, grads: tf.Tensor | None, class_idx: tf.Tensor
    ) -> tf.Tensor:
        """Returns the Dense kernel's column of each image's class, `(B, C)`."""
        return cam_weights(self.head.dense.kernel, class_idx, self.head.head.binary)
