"""`HeatmapCallback`: watch where a model looks while it trains.

On the epochs it is due, the callback explains a fixed batch of images with each requested
method on the model's *current* weights and writes a grid (image | overlay, with the predicted
class and its probability) to TensorBoard and/or an epoch-numbered PNG. The explainers are built
once, in `on_train_begin`: they share the model's weights and run compiled functions with fixed
input signatures, so nothing is rebuilt or retraced from one epoch, or one `fit` call, to the next.
"""

from __future__ import annotations

import functools
import os
import pathlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from keras_cam import metrics, visualize
from keras_cam._checks import as_numeric_array, check_boxes, check_images, check_positive_int
from keras_cam._files import encode_png, write_png
from keras_cam.methods import BaseCAM, resolve_methods
from keras_cam.methods.base import check_normalize
from keras_cam.surgery import check_head, read_head, select_output
from keras_cam.targets import TARGET_FORMS, Target, Targets, class_indices, resolve_targets

PathLike = str | os.PathLike[str]
_T = TypeVar("_T")

RUN_NAME = "cam"
"""TensorBoard run (sub-directory of `log_dir`) the callback writes to, next to Keras' `train`."""


class HeatmapCallback(keras.callbacks.Callback):
    """Logs class activation maps of a fixed batch of images while a model trains.

    On the epochs it is due, each method in `methods` explains `images` with the model's current
    weights, and the callback writes:

    - to TensorBoard (`log_dir`), in the run `<log_dir>/cam`: one image per method under the tag
      `cam/<method>` (e.g. `cam/gradcam`): a grid with one row per image, the image and its
      overlay side by side, the predicted class and its probability under the image, and the
      explained class and its probability under the overlay; and,
      when `boxes` are given, the scalars `cam/<method>/box_iou` and
      `cam/<method>/pointing_game` (see `keras_cam.metrics`). The step is the 0-based epoch
      index, as for the loss curves of `keras.callbacks.TensorBoard`, which may write to the same
      `log_dir`: step `s` is the PNG `epoch_<s + 1>`;
    - to `out_dir`: one PNG per epoch holding every method, named after the 1-based epoch shown
      in the progress bar (`epoch_003.png` after "Epoch 3/..."), written atomically (a temporary
      file renamed into place), so a reader never sees a partial file.

    The explainers are built once, in `on_train_begin`, and share the model's weights, so
    nothing is rebuilt or retraced per epoch, and the same instance can be passed to several
    `fit` calls. Its epoch numbering then continues: after a first `fit` of `N` epochs, a second
    `fit` of `M` epochs writes epochs `N + 1 .. N + M` (PNG names and TensorBoard steps),
    whether or not it passes `initial_epoch=N`; nothing of the first `fit` is overwritten. Image
    shapes, targets and class names are checked against the model in `on_train_begin`, before
    the first epoch. A model that `fit` builds in its first training step (a `keras.Sequential`
    without `keras.Input`) has no inputs yet at `on_train_begin`: its explainers are built, and
    the arguments checked, at the end of the first epoch, where an error warns like the ones
    below. An error while building an explainer (a method that does not apply to the model)
    while another method can be built, or while explaining or writing, warns once (a
    `RuntimeWarning` with its reason) and training goes on, unless `raise_errors=True`. When no
    method can be built at `on_train_begin` (e.g. `layer` is called twice by the model and
    `layer_call` is not given), the arguments do not fit the model and the error is raised
    before the first epoch, so that they can be fixed before training.

    Args:
        images: the fixed images to explain: a batch `(B, H, W, C)` or one image `(H, W, C)`,
            preprocessed the way the model expects (images outside [0, 1] and [0, 255] are
            min-max rescaled for display only).
        targets: what to explain: `None` (each image's top-1 class at that epoch), an int (one
            class for every image), one class per image (any integer array-like: list, NumPy
            array, tensor, pandas Series), or a callable `f(logits) -> (B,)` (see
            `keras_cam.BaseCAM`). Defaults to `None`.
        methods: method names looked up in `keras_cam.METHODS` (e.g. `"gradcam"`,
            `"gradcam++"`, `"scorecam"`), or a single name. Defaults to `("gradcam",)`.
        log_dir: directory of the TensorBoard logs, or `None` to write no summaries. Defaults to
            `None`.
        out_dir: directory for the per-epoch PNG files, or `None` to write none. Defaults to
            `None`. At least one of `log_dir` and `out_dir` is required.
        every_n_epochs: log after the epochs whose 0-based index is a multiple of this (the first
            epoch, then every `every_n_epochs`-th, as `keras.callbacks.TensorBoard`'s
            `histogram_freq`). Defaults to `1`.
        class_names: one name per class of the model, shown instead of class indices. Defaults to
            `None`.
        boxes: ground-truth boxes of the objects in `images`, int `(B, 4)` as
            `(x0, y0, x1, y1)` with `x1`/`y1` exclusive; enables the box IoU and pointing-game
            scalars. Defaults to `None`.
        max_images: explain only the first `max_images` images (and their targets and boxes).
            Defaults to `8`.
        raise_errors: raise errors that happen while explaining or writing, instead of warning
            once and letting training go on. Defaults to `False`.
        head: how the model's output is read, for the explainers and the captions'
            probabilities: `None` for automatic (`keras_cam.surgery.read_head`), or one of
            `keras_cam.surgery.HEADS` (e.g. `"logits"`). Defaults to `None`.
        layer: the layer every method explains: a name, a layer object, or `None` for each
            method's automatic choice (see `keras_cam.BaseCAM`). Defaults to `None`.
        layer_call: which call of the explained layer every method explains when the model
            calls it (or a nested model holding it) more than once, e.g. a backbone run on an
            image and on its flip (test-time augmentation): an int from 0, as the refusal
            message lists the calls (Keras' execution order). `None` requires a single call; a layer called several times is then refused
            before the first epoch, the message listing its calls. Defaults to `None`.
        normalize: how each epoch's maps are scaled (see `keras_cam.normalize_maps`): `True`
            or `"image"` (each map min-max normalized on its own: every map looks strong) or
            `"batch"` (one scale for the epoch's images, so a weak map looks weak). Defaults
            to `True`.
        output: the output to explain of a model with several (an auxiliary head, a
            multi-task model): its name or index (see `keras_cam.surgery.select_output`). One
            that does not exist is refused before the first epoch, the message listing the
            outputs. Defaults to `None` (the only output).

    Attributes:
        last_epoch: the 0-based epoch of the latest computed maps (counted on across `fit`
            calls), or `None`.
        last_maps: `{method: maps}` computed at `last_epoch`, float32 `(B, H, W)` in [0, 1],
            exactly what `keras_cam.get_method(method)(model, layer=layer,
            layer_call=layer_call)(images, targets, normalize=normalize)` returned.
        last_scores: `{"cam/<method>/box_iou": value, ...}` at `last_epoch` (empty without
            `boxes`).

    Raises:
        ValueError: no images, images that are not a batch of finite values, no `log_dir` and no
            `out_dir`, an unknown or repeated method name, an invalid `head`, `every_n_epochs`
            or `max_images` below 1, or `boxes` that are not one box per image inside it. At
            `on_train_begin`: images whose shape the model does not take, targets out of
            range, `class_names` of the wrong length, or a model none of the methods can
            explain: one with no spatial layer, a `layer` it does not have, a layer it calls
            several times and no `layer_call`, or a `layer_call` out of range (the first
            method's error is raised, whatever `raise_errors`: no epoch could be explained).
        TypeError: arguments of the wrong type. (A subclassed model, which has no inputs to
            trace, warns at the end of the first epoch and training goes on.)

    Example:

    ```python
    images, labels, boxes = keras_cam.datasets.shapes(8, image_size=64)
    heatmaps = keras_cam.HeatmapCallback(
        images,
        methods=("gradcam", "gradcam++"),
        log_dir="logs",
        out_dir="heatmaps",
        class_names=keras_cam.datasets.SHAPE_NAMES,
        boxes=boxes,
    )
    model.fit(x_train, y_train, epochs=10,
              callbacks=[heatmaps, keras.callbacks.TensorBoard("logs")])
    # Then run `tensorboard --logdir logs`: the Images tab shows cam/gradcam and
    # cam/gradcam++ with a step slider, the Scalars tab cam/<method>/box_iou.

    # A model that runs its backbone on the image and on its flip (test-time augmentation)
    # calls the explained layer twice: choose the call from the listing the refusal prints.
    heatmaps = keras_cam.HeatmapCallback(images, out_dir="heatmaps", layer_call=1)
    ```
    """

    def __init__(
        self,
        images: ArrayLike,
        targets: Targets = None,
        methods: str | Sequence[str] = ("gradcam",),
        log_dir: PathLike | None = None,
        out_dir: PathLike | None = None,
        every_n_epochs: int = 1,
        class_names: Sequence[str] | None = None,
        boxes: ArrayLike | None = None,
        max_images: int = 8,
        raise_errors: bool = False,
        head: str | None = None,
        layer: str | keras.layers.Layer | None = None,
        layer_call: int | None = None,
        normalize: bool | str = True,
        output: int | str | None = None,
    ) -> None:
        super().__init__()
        self.normalize = check_normalize(normalize)
        check_head(head)
        self.head = head
        self.output = output  # Checked against the model in `on_train_begin`.
        self.layer = layer  # Both checked against the model in `on_train_begin`.
        self.layer_call = layer_call
        if log_dir is None and out_dir is None:
            raise ValueError(
                "Pass `log_dir` (TensorBoard summaries), `out_dir` (PNG files) or both; with "
                "neither, HeatmapCallback would compute maps and write them nowhere."
            )
        self.every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)
        self.max_images = check_positive_int("max_images", max_images)
        all_images = _check_images(images)
        self.images = all_images[: self.max_images]
        self.targets = _truncate_targets(targets, len(all_images), self.max_images)
        self.methods = resolve_methods(methods)
        self.log_dir = None if log_dir is None else pathlib.Path(log_dir)
        self.out_dir = None if out_dir is None else pathlib.Path(out_dir)
        self.class_names = _check_class_names(class_names)
        self.boxes = None
        if boxes is not None:
            # The metrics' own check: one (x0, y0, x1, y1) int box per image, inside the image
            # (of either layout here; `on_train_begin` checks the model's).
            all_boxes = _check_boxes_either_layout(boxes, all_images.shape)
            self.boxes = all_boxes[: self.max_images]
        self.raise_errors = bool(raise_errors)

        self.last_epoch: int | None = None
        self.last_maps: dict[str, np.ndarray] = {}
        self.last_scores: dict[str, float] = {}
        self._display_images: np.ndarray | None = None
        self._explained_model: keras.Model | None = None
        self._explainers: dict[str, BaseCAM] = {}
        self._predict: Callable[[np.ndarray], np.ndarray] | None = None
        self._explained_classes: np.ndarray | None = None
        self._writer: Any = None
        self._warned: set[str] = set()
        self._epochs_done = 0  # epochs seen over every `fit` so far
        self._epoch_offset = 0  # added to this `fit`'s epoch indices to continue the numbering
        self._fit_started = False

    # ---------------------------------------------------------------- Keras hooks
    def on_train_begin(self, logs: dict | None = None) -> None:
        self._fit_started = False
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if self._explained_model is self.model:
            return  # Built for this model in an earlier `fit`: reuse, don't retrace.
        self._explainers = {}
        if _has_inputs(self.model):
            self._build_explainers()
        # Otherwise the model is built by its first training step (a Sequential without
        # `keras.Input`): the explainers are built at the end of the first epoch.

    def _build_explainers(self) -> None:
        """Builds one explainer per method and checks the arguments against the model.

        Raises:
            The first method's error when no method can be built (e.g. a model with no
            spatial layer); `ValueError` for arguments that do not fit the model.
        """
        # The head reading made once (and warned about once, if unsure) for every method.
        explained = select_output(self.model, self.output)
        reading = read_head(explained, self.head)
        explainers: dict[str, BaseCAM] = {}
        failures: dict[str, Exception] = {}
        for tag, method in self.methods.items():
            try:
                # A method's own progress bar (Score-CAM) would interleave with fit's.
                explainers[tag] = method(
                    explained, layer=self.layer, layer_call=self.layer_call, verbose=0,
                    head=reading,
                )
            except Exception as error:
                if self.raise_errors:
                    raise
                failures[f"building {method.display_name} ({tag!r})"] = error
        if not explainers:
            raise next(iter(failures.values()))
        for what, error in failures.items():
            self._warn_once(what, None, error)
        first = next(iter(explainers.values()))
        self._explained_classes = self._check_against_model(first.input_shape, first.num_classes)
        channels_last = self.images
        if first.data_format == "channels_first":
            channels_last = np.moveaxis(self.images, 1, -1)
        if self.boxes is not None:
            check_boxes(self.boxes, channels_last.shape[:3])
        self._display_images = visualize.display_images(channels_last)
        self._predict = first.predict
        self._explainers = explainers
        self._explained_model = self.model

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._fit_started:  # The first epoch of a `fit`: continue the numbering.
            self._fit_started = True
            self._epoch_offset = max(0, self._epochs_done - epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        epoch += self._epoch_offset  # numbered on from the earlier `fit` calls
        self._epochs_done = max(self._epochs_done, epoch + 1)
        if self._explained_model is not self.model:  # A model built by its first step.
            self._explained_model = self.model  # Tried once, even if it fails.
            self._attempt("building the explainers", epoch, self._build_explainers)
        if epoch % self.every_n_epochs != 0 or not self._explainers:
            return
        probabilities = self._attempt("predicting the images' classes", epoch, self._probabilities)
        if probabilities is None:
            return
        maps = {}
        for tag, explainer in self._explainers.items():
            what = f"computing {explainer.display_name} ({tag!r})"
            explain = functools.partial(explainer, normalize=self.normalize)
            result = self._attempt(what, epoch, explain, self.images, self.targets)
            if result is not None:
                maps[tag] = result
        self.last_epoch, self.last_maps, self.last_scores = epoch, maps, {}
        if not maps:
            return
        if self.boxes is not None:
            scores = self._attempt("scoring the maps with `boxes`", epoch, self._box_scores, maps)
            self.last_scores = scores or {}
        columns = self._attempt(
            "drawing the heatmap grid", epoch, self._columns, epoch, maps, probabilities
        )
        if columns is None:
            return
        if self.log_dir is not None:
            self._attempt("writing to TensorBoard", epoch, self._write_summaries, epoch, *columns)
        if self.out_dir is not None:
            self._attempt("writing the PNG file", epoch, self._write_png, epoch, *columns)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None  # Created again, lazily, by the next `fit`.

    # ------------------------------------------------------------------ internals
    def _check_against_model(
        self, input_shape: tuple[int | None, ...], num_classes: int
    ) -> np.ndarray | None:
        """Raises unless the images, targets and class names fit the model.

        Returns:
            The class explained for each image when `targets` fixes them, else `None`.
        """
        given = self.images.shape[1:]
        if any(size != expected for size, expected in zip(given, input_shape) if expected):
            raise ValueError(
                f"HeatmapCallback: `images` have shape {given} per image, but model "
                f"{self.model.name!r} takes images of shape {tuple(input_shape)} (None: any "
                "size). Pass images preprocessed and resized the way the model expects."
            )
        if self.class_names is not None and len(self.class_names) != num_classes:
            raise ValueError(
                f"HeatmapCallback: `class_names` has {len(self.class_names)} names, but model "
                f"{self.model.name!r} has {num_classes} classes; pass one name per class."
            )
        resolved = resolve_targets(self.targets, len(self.images), num_classes)
        return None if self.targets is None or callable(resolved) else resolved

    def _attempt(
        self, what: str, epoch: int | None, function: Callable[..., _T], *args: Any
    ) -> _T | None:
        """Returns `function(*args)`; on an error, raises it or warns once per `what`."""
        try:
            return function(*args)
        except Exception as error:
            if self.raise_errors:
                raise
            self._warn_once(what, epoch, error)
            return None

    def _warn_once(self, what: str, epoch: int | None, error: Exception) -> None:
        """Warns that `what` failed with `error`, once per `what`."""
        if what in self._warned:
            return
        self._warned.add(what)
        when = "" if epoch is None else f" after epoch {epoch + 1}"
        warnings.warn(
            f"HeatmapCallback: {what} failed{when}: {type(error).__name__}: {error}. "
            "Training goes on and this warning is not repeated; pass `raise_errors=True` "
            "to stop on the error instead.",
            RuntimeWarning,
            stacklevel=4,
        )

    def _probabilities(self) -> np.ndarray:
        return self._predict(self.images)

    def _box_scores(self, maps: Mapping[str, np.ndarray]) -> dict[str, float]:
        return {
            f"{RUN_NAME}/{tag}/{metric.__name__}": metric(method_maps, self.boxes).mean
            for tag, method_maps in maps.items()
            for metric in (metrics.box_iou, metrics.pointing_game)
        }

    def _columns(
        self, epoch: int, maps: Mapping[str, np.ndarray], probabilities: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The grid's columns: the images with their predictions, and each method's overlays."""
        predicted = probabilities.argmax(axis=-1)
        image_captions = [
            f"pred: {self._class_name(index)} {probabilities[row, index]:.2f}"
            for row, index in enumerate(predicted)
        ]
        explained = predicted if self.targets is None else self._explained_classes
        if explained is None:  # a score function: no single class to name
            map_captions = ["cam: custom score"] * len(self.images)
        else:
            map_captions = [
                f"cam: {self._class_name(index)} {probabilities[row, index]:.2f}"
                for row, index in enumerate(explained)
            ]
        image_column = visualize.grid_column(
            f"Epoch {epoch + 1}", list(self._display_images), image_captions
        )
        method_columns = {
            tag: visualize.grid_column(
                self.methods[tag].display_name,
                [visualize.overlay(*pair) for pair in zip(self._display_images, method_maps)],
                map_captions,
            )
            for tag, method_maps in maps.items()
        }
        return image_column, method_columns

    def _class_name(self, index: int) -> str:
        return str(index) if self.class_names is None else self.class_names[index]

    def _write_summaries(
        self, epoch: int, image_column: np.ndarray, method_columns: Mapping[str, np.ndarray]
    ) -> None:
        from tensorboard.plugins.image import metadata as image_metadata

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / RUN_NAME))
        # `record_if(True)`: an enclosing `record_if` (Keras' TensorBoard pushes one) must not
        # silence these summaries.
        with self._writer.as_default(step=epoch), tf.summary.record_if(True):
            for tag, column in method_columns.items():
                # What `tf.summary.image` writes, with OpenCV's PNG encoder: several times
                # faster than TensorFlow's, whose default compression dominated the callback.
                grid = visualize.join_columns([image_column, column])
                description = (
                    f"{self.methods[tag].display_name} of {len(self.images)} fixed images: "
                    "image | overlay, with the predicted class and its probability."
                )
                tf.summary.write(
                    f"{RUN_NAME}/{tag}",
                    tf.constant([str(grid.shape[1]), str(grid.shape[0]), encode_png(grid)]),
                    metadata=image_metadata.create_summary_metadata(None, description),
                )
            for name, value in self.last_scores.items():
                tf.summary.scalar(name, value)
        self._writer.flush()

    def _write_png(
        self, epoch: int, image_column: np.ndarray, method_columns: Mapping[str, np.ndarray]
    ) -> None:
        grid = visualize.join_columns([image_column, *method_columns.values()])
        write_png(self.out_dir / f"epoch_{epoch + 1:03d}.png", grid)  # atomically


# ---------------------------------------------------------------------- argument checks
def _check_images(images: ArrayLike) -> np.ndarray:
    """A float32 copy of the batch `(B, H, W, C)` (one image `(H, W, C)` gets a batch axis)."""
    if images is None:
        raise ValueError(
            "`images` is required: the fixed batch (B, H, W, C) to explain at each epoch."
        )
    array = as_numeric_array("images", images, "(B, H, W, C) or (H, W, C)")
    return np.array(check_images(array[np.newaxis] if array.ndim == 3 else array), copy=True)


def _has_inputs(model: keras.Model) -> bool:
    """Whether `model` has defined inputs (an unbuilt Sequential or a subclassed model has not)."""
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False


def _check_boxes_either_layout(boxes: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """`check_boxes` for images `(B, H, W, C)`, or `(B, C, H, W)` if only that fits."""
    try:
        return check_boxes(boxes, shape[:3])
    except ValueError:
        try:
            return check_boxes(boxes, (shape[0], *shape[2:4]))
        except ValueError:
            pass
        raise


def _truncate_targets(targets: Targets, count: int, max_images: int) -> Targets:
    """Keeps the targets of the first `max_images` images; per-image targets must match `count`.

    Class indices of any array-like type (see `keras_cam.targets.class_indices`) become an int
    or an int64 array; `None`, callables and target objects are kept as they are, and a list of
    class targets (`ClassTarget`, ...) is cut like the images.
    """
    if targets is None or callable(targets):
        return targets
    if isinstance(targets, (list, tuple)) and any(isinstance(t, Target) for t in targets):
        if len(targets) != count:
            raise ValueError(
                f"`targets` must give one class target per image: {count} images were passed, "
                f"but `targets` holds {len(targets)}."
            )
        return list(targets[:max_images])
    indices = class_indices(targets, "targets", TARGET_FORMS)
    if indices.ndim == 0:
        return int(indices)  # Checked against the model's classes in `on_train_begin`.
    if len(indices) != count:
        raise ValueError(
            f"`targets` must give one class per image: {count} images were passed, but `targets` "
            f"has shape {indices.shape}. Pass a single int to use one class for all."
        )
    return indices[:max_images]


def _check_class_names(class_names: Sequence[str] | None) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(
            f"`class_names` must be a sequence of strings, one per class; received {class_names!r}."
        )
    return tuple(str(name) for name in class_names)
