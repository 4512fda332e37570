"""Explain whole datasets: streaming, resumable shards on disk, and `tf.distribute`.

`explain_dataset` reads images from a `tf.data.Dataset`, NumPy arrays or a Python iterable of
batches, explains them batch by batch with explainers built once, and either yields the maps
(`ExplainedBatch`) or writes them to `out_dir` as shards. Memory holds one batch (plus what
`tf.data` prefetches), whatever the dataset's size.

The pipeline is `tf.data`: the dataset is rebatched into shards of `batch_size` images (shard
`s` holds images `s * batch_size ...`), the shards are numbered (`enumerate`), finished shards
and those of other workers are filtered out, and the next batches are prefetched while one is
explained. Each batch is split over the strategy's local replicas and explained under
`strategy.run`; the replicas' maps are gathered back in order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import math
import pathlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Union

import keras
import numpy as np
import tensorflow as tf

from keras_cam._checks import check_positive_int
from keras_cam._files import atomic_writer, write_png
from keras_cam.methods import BaseCAM, get_method, method_name
from keras_cam.methods.base import check_finite_images, check_real_dtype, finite_rows
from keras_cam.targets import TOP_PREDICTION
from keras_cam.visualize import display_images, overlay

MethodSpec = Union[str, type[BaseCAM], BaseCAM]
"""A method: a registered name, a `BaseCAM` subclass (built on `model`), or a built explainer."""

TargetsRule = Union[None, str, int]
"""What each map explains: `None` (top-1 class), `"labels"` (the dataset's labels) or a class."""

LABELS = "labels"
"""The `targets` rule that explains each image's label from the dataset."""

MANIFEST = "manifest.json"
"""File name of the merged manifest in `out_dir`."""

RUN_FILE = "run.json"
"""File name of the run's arguments in `out_dir` (compared on a rerun)."""


@dataclasses.dataclass(frozen=True)
class ExplainedBatch:
    """The maps of one batch of a dataset, as `explain_dataset` yields them.

    Attributes:
        shard: the batch's number (shard `s` holds images `s * batch_size ...`).
        index: int64 `(n,)` position of each image in the dataset.
        maps: `{method name: float32 (n, H, W) maps}`.
        classes: int64 `(n,)` the class every map of the image explains.
        predicted: int64 `(n,)` the model's top-1 class.
        scores: float32 `(n,)` the model's score of its top-1 class (as the first explainer
            reads the head: a probability for a classifier).
        labels: int64 `(n,)` labels from the dataset, or `None`.
        boxes: int64 `(n, 4)` boxes from the dataset, or `None`.
        images: float32 `(n, H, W, C)` the images (as the model takes them).
        seconds: `{method name: wall seconds of this batch's maps}` (NumPy maps, so the
            device is synchronized).
    """

    shard: int
    index: np.ndarray
    maps: dict[str, np.ndarray]
    classes: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    images: np.ndarray | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Elements:
    """A dataset as `dataset_elements` reads it.

    Attributes:
        dataset: `tf.data.Dataset` of images, or of tuples `(images,)`, `(images, labels)` or
            `(images, labels, boxes)`, images float32, labels int64 (float64 if they came
            as floats: `class_labels` checks them), boxes int64; batched (of any sizes)
            or, with `batched=False`, one image per element.
        batched: whether `dataset`'s elements are batches. Defaults to `True`.
        errors: exceptions a Python iterable raised; the stream re-raises them as they are
            (tf.data would wrap them) and never writes the short batch they cut off.
    """

    dataset: tf.data.Dataset
    batched: bool = True
    errors: list[Exception] = dataclasses.field(default_factory=list)

    @property
    def parts(self) -> int:
        """Components of an element: 1 (images), 2 (with labels) or 3 (with boxes)."""
        return len(as_tuple(self.dataset.element_spec))

    @property
    def image_shape(self) -> tuple[int | None, ...]:
        """The shape of one image (`None` for a size that varies)."""
        shape = tuple(as_tuple(self.dataset.element_spec)[0].shape)
        return shape[1:] if self.batched else shape

    def batches(self, batch_size: int) -> tf.data.Dataset:
        """The elements in batches of `batch_size` (the last one may be shorter), whatever
        the batches they came in: `tf.data`'s `rebatch`, which moves whole slices of batches
        (`unbatch().batch()` would copy image by image)."""
        if self.batched:
            return self.dataset.rebatch(batch_size)
        return self.dataset.batch(batch_size)

    def read(self, shards: Iterable[Any], batch_size: int) -> Iterator[Any]:
        """The elements of `shards` as they come; images of different sizes that fall into
        one shard are refused by name (tf.data's error chained).

        Args:
            shards: an iterable over `batches(batch_size)` (numbered, perhaps filtered).
            batch_size: the shards' size, named in the error.

        Returns:
            An iterator of the elements of `shards`.

        Raises:
            ValueError: images of different sizes in one shard.
        """
        iterator = iter(shards)
        while True:
            try:
                element = next(iterator)
            except StopIteration:
                return
            except (tf.errors.InvalidArgumentError, tf.errors.FailedPreconditionError) as error:
                if not _MIXED_SIZES.search(error.message):
                    raise
                raise ValueError(
                    f"`dataset` holds images of different sizes, which cannot share a shard of "
                    f"`batch_size`={batch_size} images (tf.data: "
                    f"{error.message.strip().splitlines()[-1]}). Resize them to one size in "
                    "the pipeline (e.g. with tf.image.resize), or give batches of one size "
                    "each with `batch_size` equal to their size."
                ) from error
            yield element

    def reraise(self) -> None:
        """Raises the first exception of the Python iterable, if it raised one."""
        if self.errors:
            raise self.errors[0]


_MIXED_SIZES = re.compile(r"different shapes|shapes are ?not compatible")
"""tf.data's errors for images of different sizes joined into one batch: `batch`'s
("Cannot batch tensors with different shapes") and `rebatch`'s ("source and dst shapes are
not compatible")."""


def as_tuple(element: Any) -> tuple[Any, ...]:
    """A dataset element (or its spec) as a tuple of its components: a lone image `(image,)`."""
    return element if isinstance(element, tuple) else (element,)


def explain_dataset(
    methods: MethodSpec | Sequence[MethodSpec] | Mapping[str, MethodSpec],
    dataset: Any,
    model: keras.Model | None = None,
    *,
    targets: TargetsRule = None,
    batch_size: int = 32,
    layer: str | keras.layers.Layer | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    out_dir: str | pathlib.Path | None = None,
    overlays: bool | Mapping[str, Any] = False,
    strategy: tf.distribute.Strategy | None = None,
    verbose: int = 1,
    metadata: Mapping[str, Any] | None = None,
) -> Iterator[ExplainedBatch] | dict[str, Any]:
    """Explains every image of a dataset, batch by batch, with bounded memory.

    Without `out_dir`, returns an iterator of `ExplainedBatch` (nothing runs until it is
    iterated). With `out_dir`, runs to the end and writes, per shard `s` of `batch_size`
    images, `shard-<s>.npz` (compressed: `index`, `classes`, `predicted`, `scores` and one
    `maps/<method>` array per method) and then `shard-<s>.json` (the per-image records; its
    presence marks the shard finished), optional overlay PNGs, and at the end `manifest.json`
    (model, methods and layers, targets rule, every image's predicted class and score). Every
    file appears by atomic rename, so no partial file is ever visible. A run started again with
    the same arguments skips the finished shards and ends with the same files as an
    uninterrupted run; other arguments (model, weights, methods, each method's layers and
    constructor arguments (`BaseCAM.settings`), targets, batch size, input shape) are refused,
    naming the difference.

    With a `tf.distribute.Strategy`, each batch is split over the replicas of this worker and
    explained under `strategy.run`; the maps are gathered in order (the same maps as on one
    device). Under `MultiWorkerMirroredStrategy` every worker reads the dataset, explains the
    shards `s` with `s % num_workers == worker` and writes them into the shared `out_dir`;
    after a barrier (an all-reduce of the image counts) the chief (worker 0) merges the
    manifest. TPUs: a `TPUStrategy` is accepted the same way; its replicas run the explainers'
    compiled passes, but this path is tested on CPUs only (`MirroredStrategy`,
    `MultiWorkerMirroredStrategy`).

    Args:
        methods: a method name (`keras_cam.METHODS`), a `BaseCAM` subclass or a built
            explainer, a sequence of them, or a `{name: method}` dict. Names and classes are
            built once on `model`.
        dataset: images `(N, H, W, C)` as a NumPy array, or a tuple `(images, labels)` /
            `(images, labels, boxes)` of arrays; a `tf.data.Dataset` whose elements are
            images or such tuples, batched or not; a Python iterable of batches (arrays or
            such tuples; an exception it raises is re-raised as it is); or `Elements`.
            Images are preprocessed the way the model expects.
        model: the Keras model, needed when `methods` holds names or classes. Defaults to
            `None`.
        targets: `None` (each image's top-1 class), `"labels"` (the dataset's labels) or an
            int (one class for every image). Defaults to `None`.
        batch_size: images per batch and per shard. Defaults to `32`.
        layer: the layer the methods built here explain. Defaults to `None` (automatic).
        method_options: extra constructor arguments per method name, e.g.
            `{"scorecam": {"max_channels": 16}}`. Defaults to `None`.
        out_dir: folder to write the shards and manifest into, or `None` to yield the maps.
            Defaults to `None`.
        overlays: also write `overlays/<method>/<index>.png` (the map over the image, as
            `keras_cam.overlay` blends it) with `out_dir`: `True`, or a dict of `overlay`'s
            options (`{"alpha": 0.5, "colormap": "turbo"}`). Defaults to `False`.
        strategy: the `tf.distribute.Strategy` to run on; `None` for the current one
            (`tf.distribute.get_strategy()`). Defaults to `None`.
        verbose: 0 (silent) or 1 (a `keras.utils.Progbar` of images, with images/s).
            Defaults to `1`.
        metadata: JSON-ready facts that identify the dataset (e.g. its file names and
            preprocessing), recorded in `run.json` and the manifest and compared on a rerun
            like the other arguments. Defaults to `None`.

    Returns:
        An iterator of `ExplainedBatch` without `out_dir`; the manifest (a dict, also in
        `out_dir/manifest.json`) with it.

    Raises:
        ValueError: an unknown method, targets rule, batch size or dataset structure;
            `"labels"` on a dataset without labels; an `out_dir` holding a run with other
            arguments; a worker that finished without every shard of the run.
        TypeError: a dataset of an unsupported type or of complex or string parts; names
            without `model`.

    Example:
    ```python
    images, labels, boxes = kc.datasets.shapes(256)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(64)
    for batch in kc.explain_dataset("gradcam", data, model, verbose=0):
        batch.maps["gradcam"]                       # (64, 64, 64) float32 in [0, 1]
    kc.explain_dataset(["gradcam", "scorecam"], data, model, out_dir="maps")   # resumable
    ```
    """
    check_one_input(model)
    explainers = build_explainers(methods, model, layer, method_options)
    for explainer in explainers.values():
        check_one_input(explainer.model)
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(targets, bool) or not (
        targets is None or targets == LABELS or isinstance(targets, int)
    ):
        raise ValueError(
            f"`targets` must be None (top-1 class), {LABELS!r} (the dataset's labels) or a "
            f"class index; received {targets!r}."
        )
    if verbose not in (0, 1):
        raise ValueError(f"`verbose` must be 0 or 1; received {verbose!r}.")
    first = next(iter(explainers.values()))
    elements = (
        dataset if isinstance(dataset, Elements)
        else dataset_elements(dataset, len(first.input_shape) + 1)
    )
    if targets == LABELS and elements.parts < 2:
        raise ValueError(
            "`targets='labels'` explains each image's label, but the dataset has none: pass "
            "(images, labels) elements, or `targets=None` for the top-1 class."
        )
    strategy = strategy or tf.distribute.get_strategy()
    stream = _Stream(explainers, targets, batch_size, strategy, verbose)
    if out_dir is None:
        return stream.batches(elements, skip=frozenset())
    arguments = {**run_arguments(stream, elements), "metadata": dict(metadata or {})}
    options = dict(overlays) if isinstance(overlays, Mapping) else ({} if overlays else None)
    return _write_run(stream, elements, pathlib.Path(out_dir), arguments, options)


def check_one_input(model: Any) -> None:
    """Raises a `ValueError` for a model with several inputs, which `explain_dataset` (a
    dataset of images) cannot feed.

    Args:
        model: the model, or `None`.
    """
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1:
        listing = ", ".join(f"{t.name!r} {tuple(t.shape)}" for t in inputs)
        raise ValueError(
            f"`explain_dataset` reads one image input from the dataset, but model "
            f"{model.name!r} takes {len(inputs)} inputs ({listing}). Explain its batches with "
            "an explainer instead, e.g. `kc.GradCAM(model, input=...)([images, metadata])`."
        )


def build_explainers(
    methods: MethodSpec | Sequence[MethodSpec] | Mapping[str, MethodSpec],
    model: keras.Model | None,
    layer: str | keras.layers.Layer | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, BaseCAM]:
    """`{name: explainer}`: built explainers kept, names and classes built once on `model`.

    Args:
        methods: see `explain_dataset`.
        model: the model names and classes are built on.
        layer: the layer they explain. Defaults to `None`.
        method_options: extra constructor arguments by method name. Defaults to `None`.

    Returns:
        The explainers by name (`keras_cam.methods.method_name`, or the dict's keys).

    Raises:
        TypeError: a name or class without `model`.
        ValueError: no method, or one named twice.
    """
    if isinstance(methods, Mapping):
        specs = list(methods.items())
    else:
        if isinstance(methods, (str, type, BaseCAM)):
            methods = [methods]
        specs = [(_spec_name(spec), spec) for spec in methods]
    if not specs:
        raise ValueError("`methods` is empty; name at least one method (e.g. 'gradcam').")
    explainers: dict[str, BaseCAM] = {}
    options = dict(method_options or {})
    for name, spec in specs:
        if name in explainers:
            raise ValueError(f"`methods` lists {name!r} more than once.")
        if isinstance(spec, BaseCAM):
            explainers[name] = spec
            continue
        if model is None:
            raise TypeError(
                f"`methods` names {name!r}, which is built on a model: pass `model=`, or pass a "
                "built explainer (e.g. `kc.GradCAM(model)`)."
            )
        kwargs = {"verbose": 0, **({} if layer is None else {"layer": layer})}
        explainers[name] = get_method(spec)(model, **{**kwargs, **options.pop(name, {})})
    if options:
        raise ValueError(
            f"`method_options` has options for {sorted(options)}, which are not among the "
            f"methods built here: {sorted(explainers)}."
        )
    return explainers


def _spec_name(spec: MethodSpec) -> str:
    if isinstance(spec, BaseCAM):
        return method_name(type(spec))
    return method_name(get_method(spec))


def is_dataset(value: Any) -> bool:
    """Whether `value` is streamed rather than held: a `tf.data.Dataset` or an iterator
    (e.g. a generator of batches); arrays, tensors and lists are in-memory batches."""
    return isinstance(value, (tf.data.Dataset, Iterator))


def dataset_elements(dataset: Any, batch_rank: int) -> Elements:
    """The dataset as unbatched elements `(image,)`, `(image, label)` or `(image, label, box)`.

    Args:
        dataset: see `explain_dataset`.
        batch_rank: the rank of a batch of images (4 for `(B, H, W, C)`).

    Returns:
        The `Elements`: a `tf.data.Dataset` of tuples of images (float32) and their labels
        and boxes (int64), if any, in the batches they came in (or one image per element),
        and the exceptions a Python iterable raises.

    Raises:
        TypeError: a dataset of an unsupported type, or of parts that are not real numbers.
        ValueError: elements that are not images or tuples of 1-3 components.
    """
    errors: list[Exception] = []
    if isinstance(dataset, np.ndarray) or (
        isinstance(dataset, tuple) and all(isinstance(part, np.ndarray) for part in dataset)
    ):
        dataset = tf.data.Dataset.from_tensor_slices(dataset)
    elif not isinstance(dataset, tf.data.Dataset):
        if not isinstance(dataset, Iterable) or isinstance(dataset, (str, bytes)):
            raise TypeError(
                "`dataset` must be a tf.data.Dataset, a NumPy array (or tuple of arrays) or an "
                f"iterable of batches; received {type(dataset).__name__}."
            )
        dataset = _from_iterable(dataset, errors)
    spec = dataset.element_spec
    parts = as_tuple(spec)
    if not 1 <= len(parts) <= 3 or not all(isinstance(part, tf.TensorSpec) for part in parts):
        raise ValueError(
            "`dataset` elements must be images, (images, labels) or (images, labels, boxes); "
            f"received elements of spec {spec}."
        )
    rank = parts[0].shape.rank
    if rank not in (batch_rank - 1, batch_rank):
        raise ValueError(
            f"`dataset` images must have rank {batch_rank - 1} (one image) or {batch_rank} (a "
            f"batch); received spec {parts[0]}."
        )
    for name, part in zip(("dataset images", "dataset labels", "dataset boxes"), parts):
        check_real_dtype(name, part.dtype)  # a cast would drop an imaginary part silently
    if len(parts) > 2 and not parts[2].dtype.is_integer:  # as `check_boxes` in memory
        raise TypeError(
            "`dataset` boxes must hold integer pixel coordinates (x0, y0, x1, y1), as in "
            f"memory; received dtype {parts[2].dtype.name} (a cast would truncate them)."
        )
    dtypes = [tf.float32, *[tf.int64] * (len(parts) - 1)]
    if len(parts) > 1 and parts[1].dtype.is_floating:
        dtypes[1] = tf.float64  # a cast would truncate a fraction: `class_labels` refuses it
    if [part.dtype for part in parts] != dtypes:
        # One traced function (each costs a trace per call), only where a dtype differs.
        dataset = dataset.map(
            lambda *element: tuple(tf.cast(part, dtype) for part, dtype in zip(element, dtypes)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return Elements(dataset, rank == batch_rank, errors)


def class_labels(labels: np.ndarray, index: np.ndarray) -> np.ndarray:
    """A batch's labels as int64 class indices `(n,)`, from `(n,)` or `(n, 1)`.

    Args:
        labels: the batch's labels, integer or float.
        index: int64 `(n,)` the images' positions in the dataset (named in errors).

    Returns:
        int64 `(n,)`.

    Raises:
        ValueError: not one label per image (e.g. one-hot rows), or a label that is not a
            whole number (a cast would truncate it to another class).

    Example:
    ```python
    class_labels(np.array([[2.0], [0.0]]), np.arange(2))   # array([2, 0])
    ```
    """
    if labels.ndim == 0 or labels.shape[0] != len(index) or labels.size != len(index):
        raise ValueError(
            f"`dataset` labels of images {int(index[0])}-{int(index[-1])} have shape "
            f"{labels.shape}: one class index per image is expected, shape ({len(index)},) or "
            f"({len(index)}, 1). For one-hot labels pass their argmax (tf.argmax(labels, -1))."
        )
    labels = labels.reshape(-1)
    whole = labels == np.round(labels)
    if not whole.all():
        bad = int(np.flatnonzero(~whole)[0])
        raise ValueError(
            f"`dataset` label of image {int(index[bad])} is {labels[bad]}, not a class index; "
            "labels must be whole numbers (casting would explain another class). Check how "
            "the labels are built."
        )
    return labels.astype(np.int64)


def _from_iterable(batches: Iterable[Any], errors: list[Exception]) -> tf.data.Dataset:
    """A dataset over a Python iterable of batches; the first batch gives the signature.

    An exception of the iterable ends the dataset and is appended to `errors`.
    """
    iterator = iter(batches)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("`dataset` is an empty iterable; it must yield at least one batch.")
    parts = first if isinstance(first, tuple) else (first,)
    signature = tuple(
        tf.TensorSpec((None, *np.shape(part)[1:]), tf.as_dtype(np.asarray(part).dtype))
        for part in parts
    )
    chained = itertools.chain([first], iterator)
    shapes = [tuple(spec.shape[1:]) for spec in signature]

    def generate() -> Iterator[tuple[Any, ...]]:
        try:
            for number, batch in enumerate(chained):
                batch = as_tuple(batch)
                if [tuple(np.shape(part)[1:]) for part in batch] != shapes:
                    raise ValueError(
                        f"`dataset` batch {number} holds {len(batch)} part(s) of shapes "
                        f"{[tuple(np.shape(part)) for part in batch]}, but the first batch's "
                        f"parts are {shapes} per image: images of different sizes cannot "
                        "share a shard of `batch_size` images. Resize them to one size, or "
                        "pass a tf.data.Dataset of batches of one size each with `batch_size` "
                        "equal to their size."
                    )
                yield batch
        except Exception as error:  # re-raised by the stream, as it is
            errors.append(error)

    return tf.data.Dataset.from_generator(generate, output_signature=signature)


class _Stream:
    """Explains numbered batches of a dataset on a strategy's replicas."""

    def __init__(
        self,
        explainers: dict[str, BaseCAM],
        targets: TargetsRule,
        batch_size: int,
        strategy: tf.distribute.Strategy,
        verbose: int,
    ) -> None:
        self.explainers = explainers
        self.targets = targets
        self.batch_size = batch_size
        self.strategy = strategy
        self.verbose = verbose
        replica_ids = strategy.experimental_local_results(
            strategy.experimental_distribute_values_from_function(
                lambda context: context.replica_id_in_sync_group
            )
        )
        self.local_replicas = len(replica_ids)
        self.num_workers = strategy.num_replicas_in_sync // self.local_replicas
        self.worker = int(min(replica_ids)) // self.local_replicas
        self.direct = strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()
        """Whether `strategy` is TensorFlow's default (one device, no scope): batches are then
        explained as they are, without `strategy.run`."""
        self.passes = 0
        """Batches explained by this stream (a test counts recomputation with it)."""

    def batches(self, elements: Elements, skip: frozenset[int]) -> Iterator[ExplainedBatch]:
        """Explains this worker's shards not in `skip`, one `ExplainedBatch` per shard.

        A full batch holds images read before any error, so it is explained even after its
        iterable raised; a short one may have been cut off by the error, so it is not.
        """
        workers, worker = self.num_workers, self.worker
        skipped = tf.constant(sorted(skip) or [-1], tf.int64)
        shards: Iterable[tuple[Any, Any]]
        if skip or workers > 1:  # numbered in the pipeline, which drops the others' shards
            shards = (
                elements.batches(self.batch_size)
                .enumerate()
                .filter(
                    lambda shard, parts: tf.logical_and(
                        shard % workers == worker, tf.reduce_all(shard != skipped)
                    )
                )
                .prefetch(tf.data.AUTOTUNE)
            )
        else:  # every shard, in order: numbered here
            shards = enumerate(elements.batches(self.batch_size).prefetch(tf.data.AUTOTUNE))
        progress = None
        if self.verbose:
            progress = keras.utils.Progbar(None, unit_name="image", stateful_metrics=["images/s"])
        done, timed, begin = 0, 0, 0.0
        for shard, parts in elements.read(shards, self.batch_size):
            shard, parts = int(shard), as_tuple(parts)
            count = int(parts[0].shape[0])
            if count < self.batch_size:
                elements.reraise()
            index = shard * self.batch_size + np.arange(count, dtype=np.int64)
            batch = self._explain(shard, index, parts)
            self.passes += 1
            done += len(batch.index)
            if progress is not None:
                # The rate counts from the end of the first batch, which also compiles.
                values = []
                if self.passes == 1:
                    begin = time.perf_counter()
                else:
                    timed += len(batch.index)
                    values = [("images/s", timed / max(time.perf_counter() - begin, 1e-9))]
                progress.add(len(batch.index), values=values)
            yield batch
        elements.reraise()
        if progress is not None:
            progress.update(done, finalize=True)

    def _explain(
        self, shard: int, index: np.ndarray, parts: tuple[tf.Tensor, ...]
    ) -> ExplainedBatch:
        images = parts[0]
        labels = class_labels(parts[1].numpy(), index) if len(parts) > 1 else None
        boxes = parts[2].numpy() if len(parts) > 2 else None
        if self.targets is None:  # read from the scores below
            classes = np.full(len(images), TOP_PREDICTION, np.int64)
        elif self.targets == LABELS:
            classes = labels.reshape(-1).astype(np.int64)
        else:
            classes = np.full(len(images), self.targets, np.int64)
        maps, seconds, scores = {}, {}, None
        for name, cam in self.explainers.items():
            begin = time.perf_counter()
            try:
                maps[name], scores = self._on_replicas(
                    lambda x, c, cam=cam: cam.explain(x, None if self.targets is None else c),
                    images,
                    classes,
                )
            except ValueError:  # a non-finite image: named by its dataset index
                check_finite_images(finite_rows(tf.cast(images, tf.float32)).numpy(), index)
                raise
            seconds[name] = time.perf_counter() - begin
        predicted = scores.argmax(axis=-1).astype(np.int64)
        if self.targets is None:
            classes = predicted
        scores = scores.max(axis=-1).astype(np.float32)
        return ExplainedBatch(
            shard, index, maps, classes, predicted, scores, labels, boxes, images.numpy(), seconds
        )

    def _on_replicas(
        self, fn: Callable[..., Any], *arrays: np.ndarray | tf.Tensor
    ) -> list[np.ndarray]:
        """`fn` (arrays in, a tuple of arrays out) on this worker's replicas, each on a
        consecutive slice of `arrays`; each output concatenated over the replicas.

        The batch is padded (repeating its last image) to a multiple of the replica count so
        that every replica gets a non-empty slice; the padding's results are dropped. On
        TensorFlow's default strategy (`direct`) `fn` runs on the batch as it is.
        """
        if self.direct:
            return list(fn(*arrays))
        arrays = tuple(np.asarray(array) for array in arrays)
        count, replicas = len(arrays[0]), self.local_replicas
        per = math.ceil(count / replicas)
        padded = [np.concatenate([a, np.repeat(a[-1:], per * replicas - count, 0)]) for a in arrays]
        values = self.strategy.experimental_distribute_values_from_function(
            lambda context: tuple(
                part[(context.replica_id_in_sync_group % replicas) * per :][:per]
                for part in padded
            )
        )
        results = self.strategy.run(
            lambda args: tuple(map(tf.constant, fn(*args))), args=(values,)
        )
        return [
            np.concatenate([np.asarray(local) for local in
                            self.strategy.experimental_local_results(output)])[:count]
            for output in tf.nest.flatten(results)
        ]

    def barrier(self, count: int) -> int:
        """Waits for every worker (an all-reduce); returns the images all workers explained."""
        if self.num_workers == 1:
            return count
        share = self.strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(
                count if context.replica_id_in_sync_group % self.local_replicas == 0 else 0,
                tf.int64,
            )
        )
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, share, axis=None)
        return int(total)


# ---------------------------------------------------------------------------- writing
def run_arguments(stream: _Stream, elements: Elements) -> dict[str, Any]:
    """What identifies a run in `out_dir`: model, weights, methods, layers, targets, sizes."""
    first = next(iter(stream.explainers.values()))
    digest = hashlib.sha256()
    for weight in first.model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return {
        "model": first.model.name,
        "weights_sha256": digest.hexdigest(),
        "methods": {
            name: {
                "class": type(cam).__name__,
                "layer": cam.layer.name,
                "settings": json_ready(cam.settings()),
            }
            for name, cam in stream.explainers.items()
        },
        "targets": "top-1" if stream.targets is None else stream.targets,
        "batch_size": stream.batch_size,
        "image_shape": list(elements.image_shape),
    }


def json_ready(value: Any) -> Any:
    """`value` as JSON holds it, the same on every run: containers element by element, NumPy
    values as Python numbers or lists, a layer by its name, another object by its class and
    its `repr` when that names no memory address (else by its class alone).

    Args:
        value: a setting of an explainer (see `BaseCAM.settings`).

    Returns:
        A value of `None`, bool, int, float, str, list or dict.

    Example:
    ```python
    json_ready({"layer": ["conv"], "gamma": np.float32(0.5)})   # {'layer': ['conv'], 'gamma': 0.5}
    ```
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, keras.layers.Layer):
        return value.name
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else f"{type(value).__name__}: {text}"


def _write_run(
    stream: _Stream,
    elements: Elements,
    out_dir: pathlib.Path,
    arguments: dict[str, Any],
    overlays: dict[str, Any] | None,
) -> dict[str, Any]:
    _claim(out_dir, arguments)
    finished = frozenset(
        int(path.stem.split("-")[1]) for path in out_dir.glob("shard-*.json")
    )
    count = 0
    for batch in stream.batches(elements, skip=finished):
        _write_shard(out_dir, batch, overlays)
        count += len(batch.index)
    stream.barrier(count)
    if stream.worker != 0:
        return {}
    return _merge_manifest(out_dir, arguments)


def _claim(out_dir: pathlib.Path, arguments: dict[str, Any]) -> None:
    """Writes `run.json`, or checks that the one there has the same arguments."""
    path = out_dir / RUN_FILE
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(
            key for key in set(previous) | set(arguments) if previous.get(key) != arguments.get(key)
        )
        if changed:
            details = "; ".join(
                f"{key}: {previous.get(key)!r} there, {arguments.get(key)!r} now"
                for key in changed
            )
            raise ValueError(
                f"`out_dir` {str(out_dir)!r} holds a run with other arguments ({details}); "
                "its shards cannot be mixed with this run's. Use another `out_dir`, or delete "
                "this one to start over."
            )
        return
    with atomic_writer(path) as file:
        file.write(json.dumps(arguments, indent=2, sort_keys=True).encode("utf-8"))


def shard_stem(shard: int) -> str:
    """The file stem of shard `shard`: `shard-000042`."""
    return f"shard-{shard:06d}"


def _write_shard(
    out_dir: pathlib.Path, batch: ExplainedBatch, overlays: dict[str, Any] | None
) -> None:
    """Writes a shard's maps (`.npz`), overlays, then its records (`.json`, the done marker)."""
    stem = shard_stem(batch.shard)
    arrays = {
        "index": batch.index, "classes": batch.classes, "predicted": batch.predicted,
        "scores": batch.scores,
        **{f"maps/{name}": maps for name, maps in batch.maps.items()},
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with atomic_writer(out_dir / f"{stem}.npz") as file:
        file.write(buffer.getvalue())
    if overlays is not None:
        _write_overlays(out_dir, batch, overlays)
    records = [
        {"index": int(i), "class": int(c), "predicted": int(p), "score": float(s)}
        for i, c, p, s in zip(batch.index, batch.classes, batch.predicted, batch.scores)
    ]
    with atomic_writer(out_dir / f"{stem}.json") as file:
        file.write(json.dumps({"shard": batch.shard, "images": records}).encode("utf-8"))


def _write_overlays(out_dir: pathlib.Path, batch: ExplainedBatch, options: dict[str, Any]) -> None:
    """Writes `overlays/<method>/<index>.png`: each map over its image as shown."""
    shown = display_images(batch.images)
    for name, maps in batch.maps.items():
        for index, image, heatmap in zip(batch.index, shown, maps):
            path = out_dir / "overlays" / name / f"{index:08d}.png"
            write_png(path, overlay(image, heatmap, **options))


def _merge_manifest(out_dir: pathlib.Path, arguments: dict[str, Any]) -> dict[str, Any]:
    """Merges every shard's records into `manifest.json` (by the chief, once at the end)."""
    shards = sorted(out_dir.glob("shard-*.json"))
    images = []
    for path in shards:
        images += json.loads(path.read_text(encoding="utf-8"))["images"]
    images.sort(key=lambda record: record["index"])
    expected = list(range(len(images)))
    if [record["index"] for record in images] != expected:
        raise ValueError(
            f"`out_dir` {str(out_dir)!r} does not hold every image exactly once after the "
            "run; a worker may have failed. Run again with the same arguments to finish it."
        )
    manifest = {
        **arguments,
        "num_images": len(images),
        "shards": [path.stem for path in shards],
        "images": images,
    }
    with atomic_writer(out_dir / MANIFEST) as file:
        file.write(json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
    return manifest
