"""Non-square test models with known answers, and slow reference maps written from the papers.

Everything here is independent of keras_cam: the references read the model's own layers,
differentiate with their own `GradientTape`, and resize with `tf.image.resize` to `(H, W)`.
The models are conv -> 2x2 average pooling -> conv -> GlobalAveragePooling2D -> Dense, so the
explained layer sits on an exact 2x grid of the input (each feature cell covers 2x2 pixels),
where bilinear resizing to the input size is the right placement.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers

HEIGHT, WIDTH = 24, 40
"""Input size of the oriented models: height != width, so a swapped axis changes the answer."""

BLOB = (slice(2, 8), slice(30, 38))
"""Rows and columns of the bright blob in `corner_images`: the top-right corner."""

BLOB_BOX = (30, 2, 38, 8)
"""`BLOB` as an `(x0, y0, x1, y1)` box, `x1`/`y1` exclusive."""

GRADIENT_METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam")


def corner_model(
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    channels: int = 3,
    classes: int = 3,
    filters: int = 12,
    positive: bool = True,
    seed: int = 0,
) -> keras.Model:
    """conv -> AveragePooling2D(2) -> conv "last_conv" -> GAP -> Dense "classifier" (softmax).

    Args:
        height, width: the input size; `None` takes images of any size.
        positive: non-negative conv kernels, zero biases, and a classifier whose class 0
            has positive weights and the other classes zero weights: every feature map then
            grows with the input's brightness, so each method's map of class 0 peaks on the
            brightest region. With `False`, Keras' default random weights.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((height, width, channels))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.AveragePooling2D(2, name="pool")(x)
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(classes, activation="softmax", name="classifier")(x)
    model = keras.Model(inputs, outputs, name="corner")
    if positive:
        make_positive(model)
    return model


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies the weights of each named layer of `source` to the layer of that name in
    `target`, searching nested models of `target` too."""
    targets = {}
    stack = [target]
    while stack:
        for layer in stack.pop().layers:
            targets[layer.name] = layer
            if isinstance(layer, keras.Model):
                stack.append(layer)
    for layer in source.layers:
        if layer.weights:
            targets[layer.name].set_weights(layer.get_weights())


def make_positive(model: keras.Model) -> None:
    """Sets the weights described in `corner_model(positive=True)` (by layer name)."""
    rng = np.random.default_rng(0)
    for name in ("conv1", "last_conv"):
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights(
            [rng.uniform(0.05, 0.3, kernel.shape).astype("float32"), np.zeros_like(bias)]
        )
    kernel, bias = model.get_layer("classifier").get_weights()
    head = np.zeros_like(kernel)
    head[:, 0] = rng.uniform(0.5, 1.5, kernel.shape[0])
    model.get_layer("classifier").set_weights([head, np.zeros_like(bias)])


def corner_images(
    n: int = 3, height: int = HEIGHT, width: int = WIDTH, channels: int = 3, seed: int = 0
) -> np.ndarray:
    """Dim noise with one bright blob at `BLOB` (top right), float32 `(n, height, width, C)`."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.2, (n, height, width, channels)).astype("float32")
    images[:, BLOB[0], BLOB[1]] = 1.0
    return images


def blob_mask(height: int = HEIGHT, width: int = WIDTH, margin: int = 2) -> np.ndarray:
    """Where a map of a blob image may peak: the blob grown by `margin` pixels."""
    mask = np.zeros((height, width), bool)
    rows, cols = BLOB
    mask[max(rows.start - margin, 0) : rows.stop + margin,
         max(cols.start - margin, 0) : cols.stop + margin] = True
    return mask


# ----------------------------------------------------------------------------- references
def upsample_and_normalize(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of `(B, h, w)` maps to `size = (H, W)`, then per-map min-max to [0, 1]."""
    maps = tf.image.resize(np.asarray(raw, np.float32)[..., None], size, "bilinear")[..., 0]
    maps = maps.numpy().astype(np.float64)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)


def feature_model(model: keras.Model, layer: str = "last_conv") -> keras.Model:
    """`inputs -> the output of `layer``, built from the user model's own layers."""
    return keras.Model(model.inputs[0], model.get_layer(layer).output)


def gap_head(dense: keras.layers.Layer) -> Callable[[tf.Tensor], tf.Tensor]:
    """The logits of a GAP -> Dense head, from the Dense layer's kernel and bias."""
    kernel, bias = (tf.constant(w, tf.float32) for w in dense.get_weights())
    return lambda features: tf.reduce_mean(features, axis=(1, 2)) @ kernel + bias


def gradient_weights(method: str, features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Per-channel `(B, 1, 1, C)` or per-position `(B, h, w, C)` weights, from the papers."""
    if method == "gradcam":
        return grads.mean(axis=(1, 2), keepdims=True)
    if method == "gradcam++":  # Eq. 19 as written, no renormalization
        total = features.sum(axis=(1, 2), keepdims=True)
        denominator = 2 * grads**2 + total * grads**3
        safe = np.where(denominator == 0, 1.0, denominator)
        alpha = np.where(denominator == 0, 0.0, grads**2 / safe)
        return (alpha * np.maximum(grads, 0)).sum(axis=(1, 2), keepdims=True)
    if method == "xgradcam":
        total = features.sum(axis=(1, 2), keepdims=True)
        summed = (features * grads).sum(axis=(1, 2), keepdims=True)
        return np.where(total == 0, 0.0, summed / np.where(total == 0, 1.0, total))
    if method == "hirescam":
        return grads
    if method == "layercam":
        return np.maximum(grads, 0)
    raise ValueError(method)


def reference_gradient_maps(
    features_of: Callable[[tf.Tensor], tf.Tensor],
    logits_of: Callable[[tf.Tensor], tf.Tensor],
    images: np.ndarray,
    classes: np.ndarray,
    method: str = "gradcam",
) -> np.ndarray:
    """A gradient method's maps `(B, H, W)`, computed one image at a time in float64."""
    maps = []
    for image, cls in zip(images, classes):
        features = features_of(tf.constant(image[None]))
        features = tf.cast(features, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(features)
            score = logits_of(features)[0, int(cls)]
        grads = tape.gradient(score, features).numpy().astype(np.float64)
        values = features.numpy().astype(np.float64)
        weights = gradient_weights(method, values, grads)
        maps.append(np.maximum((weights * values).sum(axis=-1), 0)[0])
    return upsample_and_normalize(np.stack(maps), images.shape[1:3])


def reference_cam_maps(
    features: np.ndarray, kernel: np.ndarray, classes: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """CAM (Zhou et al. 2016): `ReLU(sum_k W[k, c] A^k)`, upsampled and normalized."""
    raw = np.einsum("bhwk,kb->bhw", features.astype(np.float64), kernel[:, classes])
    return upsample_and_normalize(np.maximum(raw, 0), size)


def reference_score_maps(
    model: keras.Model,
    features: np.ndarray,
    images: np.ndarray,
    classes: np.ndarray,
    max_channels: int | None = None,
    scales: tuple[float, ...] = (1.0,),
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """Score-CAM with the authors' weighting `w_k = p_c(X * H^k)`, one image at a time.

    `H^k` is channel `k` resized to the input's `(H, W)` and min-max normalized; constant
    channels are left out; `max_channels` keeps the channels of largest variance. With
    `scales` and `noise` `(N, H, W)`, `w_k` is the mean of `p_c(X * (scales[i] H^k + noise[i]))`
    (SS-CAM: scales of 1 and Gaussian noise; IS-CAM: the path coefficients, no noise).
    """
    if noise is None:
        noise = np.zeros((len(scales), *images.shape[1:3]), np.float32)
    views = np.asarray(scales, np.float32)[:, None, None, None]
    size = images.shape[1:3]
    maps = []
    for image, values, cls in zip(images, features.astype(np.float64), classes):
        channels = values.shape[-1]
        order = np.argsort(-values.reshape(-1, channels).var(axis=0), kind="stable")
        kept = order[: max_channels or channels]
        weights = np.zeros(channels)
        for k in kept:
            channel = values[..., k]
            if channel.max() == channel.min():
                continue
            mask = tf.image.resize(channel[..., None].astype("float32"), size, "bilinear").numpy()
            mask = (mask - mask.min()) / (mask.max() - mask.min())
            masked = image[None] * (views * mask[None] + noise[..., None])
            probabilities = model(masked, training=False)
            weights[k] = float(np.asarray(probabilities, np.float64)[:, cls].mean())
        maps.append(np.maximum((values * weights).sum(axis=-1), 0))
    return upsample_and_normalize(np.stack(maps), size)


def reference_ablation_maps(
    features: np.ndarray, logits_of: Callable[[tf.Tensor], tf.Tensor], classes: np.ndarray,
    size: tuple[int, int],
) -> np.ndarray:
    """Ablation-CAM (Desai & Ramaswamy 2020): `w_k = (y^c - y^c_k) / y^c` with channel `k` of
    the features zeroed, `y` the logit; one image and one channel at a time."""
    maps = []
    for values, cls in zip(features.astype(np.float64), classes):
        reference = float(logits_of(tf.constant(values[None], tf.float32))[0, int(cls)])
        total = np.zeros(values.shape[:2])
        for k in range(values.shape[-1]):
            ablated = values.copy()
            ablated[..., k] = 0.0
            score = float(logits_of(tf.constant(ablated[None], tf.float32))[0, int(cls)])
            total += (reference - score) / reference * values[..., k]
        maps.append(np.maximum(total, 0.0))
    return upsample_and_normalize(np.stack(maps), size)


def reference_fullgrad_maps(
    model: keras.Model, images: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """FullGrad (Srinivas & Fleuret 2019, pytorch-grad-cam's post-processing) of a
    `corner_model`: an unfused twin (linear convs, then ReLU layers; linear classifier) gives
    the logit's gradients w.r.t. the input and the conv pre-activations."""
    height, width = images.shape[1:3]
    inputs = keras.Input((height, width, images.shape[-1]))
    c1 = layers.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    x = layers.AveragePooling2D(2)(layers.ReLU()(c1))
    c2 = layers.Conv2D(model.get_layer("last_conv").filters, 3, padding="same",
                       name="last_conv")(x)
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(c2))
    logits = layers.Dense(model.get_layer("classifier").units, name="classifier")(x)
    twin = keras.Model(inputs, [logits, c1, c2])
    copy_weights(model, twin)
    biases = [twin.get_layer(name).bias.numpy() for name in ("conv1", "last_conv")]

    def normalized(channel: np.ndarray) -> np.ndarray:
        span = channel.max() - channel.min()
        return (channel - channel.min()) / span if span > 0 else np.zeros_like(channel)

    maps = []
    for image, cls in zip(images, classes):
        x = tf.constant(image[None])
        with tf.GradientTape() as tape:
            tape.watch(x)
            out, *pre = twin(x)
            score = out[0, int(cls)]
        grads = [g.numpy()[0].astype(np.float64) for g in tape.gradient(score, [x, *pre])]
        total = sum(normalized(np.abs(image * grads[0])[..., c]) for c in range(image.shape[-1]))
        for bias, grad in zip(biases, grads[1:]):
            term = sum(normalized(np.abs(bias[c] * grad[..., c])) for c in range(grad.shape[-1]))
            total += tf.image.resize(term[None, ..., None], (height, width)).numpy()[0, ..., 0]
        maps.append(total)
    maps = np.stack(maps)
    low, high = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / (high - low)


def reference_maps(
    name: str,
    model: keras.Model,
    images: np.ndarray,
    classes: np.ndarray,
) -> np.ndarray:
    """The reference maps of any registered method on a model ending in GAP -> "classifier"."""
    features_of = feature_model(model)
    dense = model.get_layer("classifier")
    if name in GRADIENT_METHODS:
        return reference_gradient_maps(features_of, gap_head(dense), images, classes, name)
    features = np.asarray(features_of(images), np.float32)
    if name == "cam":
        return reference_cam_maps(features, dense.get_weights()[0], classes, images.shape[1:3])
    if name in ("scorecam", "fasterscorecam"):
        max_channels = 10 if name == "fasterscorecam" else None
        return reference_score_maps(model, features, images, classes, max_channels)
    if name in ISSUE_13_METHODS:
        return reference_issue_13_maps(name, model, images, classes)
    if name == "ablationcam":
        return reference_ablation_maps(features, gap_head(dense), classes, images.shape[1:3])
    if name == "sscam":  # its defaults: 35 draws of N(0, 2^2) noise, seed 0
        shape = (35, *images.shape[1:3])
        noise = tf.random.stateless_normal(shape, seed=[0, 0], stddev=2.0).numpy()
        return reference_score_maps(model, features, images, classes, None, (1.0,) * 35, noise)
    if name == "iscam":  # its default: 10 steps, c_i = sum_{j <= i} j / 10
        scales = tuple(np.cumsum(np.arange(1, 11) / 10.0))
        return reference_score_maps(model, features, images, classes, None, scales)
    if name == "fullgrad":
        return reference_fullgrad_maps(model, images, classes)
    raise ValueError(f"no reference for {name!r}: add one when registering a method")


# ------------------------------------------------ activation / second-order / guided methods
ISSUE_13_METHODS = (
    "eigencam", "kpcacam", "fem", "randomcam", "eigengradcam", "gradcamelementwise",
    "smoothgradcam++", "shapleycam", "finercam", "guidedbackprop", "guidedgradcam",
)


def oriented(projection: np.ndarray, centred: np.ndarray) -> np.ndarray:
    """The sign rule of the principal-component methods, written out: the projection `(N,)`
    must agree with the summed centred activations `(N, C)`."""
    return -projection if (projection * centred.sum(axis=1)).sum() < 0 else projection


def eigen_map(values: np.ndarray) -> np.ndarray:
    """Eigen-CAM of one `(h, w, C)` tensor with NumPy's SVD: `ReLU(X_centred v_1)`, oriented."""
    h, w, c = values.shape
    x = values.reshape(h * w, c)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x)
    return np.maximum(oriented(x @ vt[0], x), 0).reshape(h, w)


def kpca_map(values: np.ndarray, gamma: float | None = None, kernel: str = "sigmoid") -> np.ndarray:
    """KPCA-CAM of one `(h, w, C)` tensor: scikit-learn's sigmoid `tanh(gamma x.y + 1)` or RBF
    `exp(-gamma |x - y|^2)` kernel by explicit loops, centred, top eigenpair."""
    h, w, c = values.shape
    gamma = 1.0 / c if gamma is None else gamma
    x = values.reshape(h * w, c)
    x = x - x.mean(axis=0)
    n = len(x)
    kernel_name, matrix = kernel, np.empty((n, n))
    for i in range(n):
        if kernel_name == "rbf":
            matrix[i] = np.exp(-gamma * ((x[i] - x) ** 2).sum(axis=1))
        else:
            matrix[i] = np.tanh(gamma * (x @ x[i]) + 1.0)
    ones = np.full((n, n), 1.0 / n)
    centred = matrix - ones @ matrix - matrix @ ones + ones @ matrix @ ones
    eigenvalues, eigenvectors = np.linalg.eigh(centred)
    projection = eigenvectors[:, -1] * np.sqrt(max(eigenvalues[-1], 0.0))
    return np.maximum(oriented(projection, x), 0).reshape(h, w)


def fem_map(values: np.ndarray, k: float = 2.0) -> np.ndarray:
    """FEM of one `(h, w, C)` tensor: channels weighted by their share of k-sigma outliers."""
    weights = np.zeros(values.shape[-1])
    for c in range(values.shape[-1]):
        channel = values[..., c]
        weights[c] = (channel > channel.mean() + k * channel.std()).mean()
    return np.maximum((values * weights).sum(-1), 0)


def _first_and_second_order(features_of, logits_of, image, score_of):
    """Features, `g = dS/dA` and `H A` for one image, float64, by nested tapes."""
    features = tf.cast(features_of(tf.constant(image[None])), tf.float32)
    with tf.GradientTape() as outer:
        outer.watch(features)
        with tf.GradientTape() as inner:
            inner.watch(features)
            score = score_of(logits_of(features)[0])
        grads = inner.gradient(score, features)
        directional = tf.reduce_sum(grads * tf.stop_gradient(features))
    hvp = outer.gradient(directional, features, unconnected_gradients="zero")
    return tuple(t.numpy()[0].astype(np.float64) for t in (features, grads, hvp))


def _finer_score(cls: int, alpha: float = 1.0, comparisons: int = 3):
    def score(logits):
        values = logits.numpy()
        distance = np.abs(values - values[cls])
        distance[cls] = np.inf
        similar = np.argsort(distance, kind="stable")[: min(comparisons, len(values) - 1)]
        e = [tf.exp(logits[j] - tf.reduce_max(logits)) for j in similar]
        total = tf.add_n([e_j * (logits[cls] - alpha * logits[j]) for e_j, j in zip(e, similar)])
        return total / tf.add_n(e)

    return score


def guided_gradients(model: keras.Model, image: np.ndarray, cls: int) -> np.ndarray:
    """Guided backprop of a `corner_model`, written out from its layers' weights: a guided
    ReLU (gradient `dy * [z > 0] * [dy > 0]`) on each pre-activation; `(H, W, C)`."""

    @tf.custom_gradient
    def guided_relu(z):
        def gradient(dy):
            return dy * tf.cast(z > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)

        return tf.nn.relu(z), gradient

    k1, b1 = find_layer(model, "conv1").get_weights()
    k2, b2 = find_layer(model, "last_conv").get_weights()
    w, b = find_layer(model, "classifier").get_weights()
    x = tf.constant(image[None])
    with tf.GradientTape() as tape:
        tape.watch(x)
        a1 = guided_relu(tf.nn.conv2d(x, k1, 1, "SAME") + b1)
        pooled = tf.nn.avg_pool2d(a1, 2, 2, "VALID")
        a2 = guided_relu(tf.nn.conv2d(pooled, k2, 1, "SAME") + b2)
        score = (tf.reduce_mean(a2, axis=(1, 2)) @ w + b)[0, cls]
    return tape.gradient(score, x).numpy()[0].astype(np.float64)


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called `name`, searching nested models too."""
    stack = [model]
    while stack:
        for layer in stack.pop().layers:
            if layer.name == name:
                return layer
            if isinstance(layer, keras.Model):
                stack.append(layer)
    raise ValueError(name)


def reference_issue_13_maps(
    name: str, model: keras.Model, images: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """The maps of the methods of issue 13 with their default options, one image at a time."""
    features_of = feature_model(model)
    logits_of = gap_head(model.get_layer("classifier"))
    size = images.shape[1:3]
    drawn = None
    maps = []
    for image, cls in zip(images, classes):
        cls = int(cls)
        values, grads, hvp = _first_and_second_order(
            features_of, logits_of, image, (lambda y, c=cls: y[c])
        )
        if name == "eigencam":
            raw = eigen_map(values)
        elif name == "eigengradcam":
            raw = eigen_map(values * grads)
        elif name == "kpcacam":
            raw = kpca_map(values)
        elif name == "fem":
            raw = fem_map(values)
        elif name == "randomcam":
            if drawn is None:
                drawn = tf.random.stateless_uniform([values.shape[-1]], [0, 0], -1.0, 1.0)
            raw = np.maximum((values * drawn.numpy()).sum(-1), 0)
        elif name == "gradcamelementwise":
            raw = np.maximum(values * grads, 0).sum(-1)
        elif name == "shapleycam":
            raw = np.maximum((values * (grads - 0.5 * hvp).mean(axis=(0, 1))).sum(-1), 0)
        elif name == "finercam":
            _, finer, _ = _first_and_second_order(features_of, logits_of, image, _finer_score(cls))
            raw = np.maximum((values * finer.mean(axis=(0, 1))).sum(-1), 0)
        elif name == "smoothgradcam++":
            raw = _smooth_plus_plus(features_of, logits_of, image, cls, values)
        else:  # guided methods: pixel resolution
            guided = np.abs(guided_gradients(model, image, cls)).max(axis=-1)
            if name == "guidedgradcam":
                coarse = np.maximum((values * grads.mean(axis=(0, 1))).sum(-1), 0)
                placed = tf.image.resize(coarse[..., None], size, "bilinear")[..., 0].numpy()
                guided = guided * placed
            raw = guided
        maps.append(raw)
    return upsample_and_normalize(np.stack(maps), size)


def _smooth_plus_plus(features_of, logits_of, image, cls, values, n=8, std=0.15, seed=0):
    """Smooth Grad-CAM++ with keras_cam's defaults: the same seeded noise patterns for every
    image, scaled by its value range; Eq. 19 of the averaged derivatives."""
    noise = tf.random.stateless_normal([n, 1, *image.shape], seed=[seed, 0]).numpy()
    samples = []
    for s in range(n):
        noisy = (image + std * (image.max() - image.min()) * noise[s, 0]).astype(np.float32)
        _, grads, _ = _first_and_second_order(features_of, logits_of, noisy, lambda y: y[cls])
        samples.append(grads)
    g = np.stack(samples)
    d1, d2, d3 = g.mean(0), (g**2).mean(0), (g**3).mean(0)
    denominator = 2 * d2 + values.sum(axis=(0, 1)) * d3
    alpha = np.divide(d2, denominator, out=np.zeros_like(d2), where=denominator != 0)
    weights = (alpha * np.maximum(d1, 0)).sum(axis=(0, 1))
    return np.maximum((values * weights).sum(-1), 0)
