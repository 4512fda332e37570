"""Compare CAM methods on evidence: one table row per method, every metric's mean.

`evaluate` explains the same images for the same classes with each method, times the map
computation, and scores the maps with the metrics of `keras_cam.metrics`. It returns an
`EvaluationTable`: plain rows (a list of dicts, no pandas) that print as Markdown and
serialize to JSON, plus every `MetricResult` for the per-image values and curves.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import keras
import numpy as np
from numpy.typing import ArrayLike

from keras_cam._checks import check_boxes, check_images, check_maps, check_positive_int
from keras_cam.methods import BaseCAM, get_method, resolve_methods
from keras_cam import sanity
from keras_cam.metrics import (
    BOX_METRICS,
    MAP_METRICS,
    METRICS,
    PROBABILITY_METRICS,
    Activation,
    MetricResult,
    check_head_for_metric,
    get_metric,
    map_shape,
)
from keras_cam.streaming import dataset_elements, explain_dataset, is_dataset
from keras_cam.surgery import Head, read_head, select_output
from keras_cam.targets import class_indices, resolve_targets

MethodSpec = Union[str, type[BaseCAM]]
"""A method: a registered name (see `keras_cam.METHODS`) or a `BaseCAM` subclass."""

DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "scorecam")
"""The methods `evaluate` compares when none are named."""


def _random_baseline() -> sanity.Explain:
    """`RandomCAM` from the registry where it is registered and the model has a layer to
    explain, else `sanity.random_explain`.

    The explainer of the first model it is called on (the evaluated one) is built once and
    kept, so a streamed evaluation does not rebuild it for every batch; other models (the
    randomised copies of the sanity check) get a new one each call, which is not kept.
    """
    from keras_cam.methods import METHODS

    if "randomcam" not in METHODS:
        return sanity.random_explain
    random_cam = METHODS["randomcam"]
    kept: list[tuple[keras.Model, BaseCAM | None]] = []

    def explainer_for(model: keras.Model) -> BaseCAM | None:
        if kept and kept[0][0] is model:
            return kept[0][1]
        try:  # RandomCAM needs a convolutional layer; an analytic model has none
            explainer = random_cam(model)
        except ValueError:
            explainer = None
        if not kept:
            kept.append((model, explainer))
        return explainer

    def random_cam_explain(
        model: keras.Model, images: np.ndarray, classes: np.ndarray
    ) -> np.ndarray:
        explainer = explainer_for(model)
        if explainer is None:
            return sanity.random_explain(model, images, classes)
        return explainer(images, classes)

    return random_cam_explain


BASELINES: dict[str, tuple[str, Callable[[], sanity.Explain]]] = {
    "random": ("Random maps", _random_baseline),
    "centred_gaussian": ("Centred Gaussian", lambda: sanity.gaussian_explain),
}
"""The baselines of `evaluate`: name -> (display name, factory of the map function)."""

SECONDS_PER_IMAGE = "seconds_per_image"
"""Row key of the map computation time, in seconds per image."""

METRIC_DESCRIPTIONS: dict[str, str] = {
    "average_drop": "confidence lost when the image is masked by its map (Chattopadhyay et "
                    "al. 2018)",
    "increase_in_confidence": "share of images whose confidence rises when masked by their map",
    "remove_top_fraction": "relative confidence change when the map's top pixels are removed",
    "keep_top_fraction": "relative confidence change when only the map's top pixels are kept",
    "deletion": "area under the confidence curve as the map's top pixels are removed first "
                "(Petsiuk et al. 2018)",
    "insertion": "area under the confidence curve as the map's top pixels are revealed first "
                 "(Petsiuk et al. 2018)",
    "box_iou": "intersection over union of the map's box (largest region of its top 25 % "
               "pixels) with the true box",
    "pointing_game": "share of maps whose maximum falls inside the true box (Zhang et al. 2018)",
    "road": "MoRF/LeRF gap when the map's top / bottom pixels are removed and filled in from "
            "their neighbours (ROAD, Rong et al. 2022)",
    "box_iou_cam": "intersection over union of the box around the largest region above 20 % of "
                   "the map's maximum (CAM paper's protocol) with the true box",
    "energy_pointing_game": "share of the map's energy inside the true box (Score-CAM paper)",
    "sparseness": "Gini index of the map: 1 = one pixel, 0 = uniform (not a quality by itself: "
                  "shows when a score comes from a sharper or blurrier map)",
    "randomisation": "rank correlation with the maps of a copy of the model whose weights are "
                     "shuffled (Adebayo et al. 2018): a faithful map changes",
}
"""What each metric of `keras_cam.metrics.METRICS` (and the sanity check) measures, in one line
(`to_report`)."""

TIMING_NOTE = (
    "seconds per image to compute the maps, timed after every method was warmed up (one "
    "untimed call per batch size), so no method pays the tracing or first-call costs"
)
"""What the `s/image` column measures (`to_report`) of an evaluation of in-memory images."""

STREAM_TIMING_NOTE = (
    "seconds per image to compute the maps, timed on every batch but the first, which pays "
    "the tracing and first-call costs (with a single batch, on that batch, costs included)"
)
"""What the `s/image` column measures of an evaluation of a streamed dataset (`to_report`)."""

# How each `MetricResult.unit` is written in a column title.
_UNIT_LABELS = {
    "percent": "%", "fraction": "0-1", "ratio": "ratio", "score": "score", "correlation": "ρ"
}
_MISSING = "—"


@dataclasses.dataclass(frozen=True, eq=False)
class EvaluationTable:
    """The result of `evaluate`: one row per method, each metric's mean and the time per image.

    Column metadata (unit and direction) is read from the `MetricResult`s, never restated.

    Attributes:
        metrics: the metric names, in column order (keys of `keras_cam.metrics.METRICS`).
        rows: one dict per method, in the order the methods were given, with the keys
            `"method"` (registry name, or the class name of an unregistered class),
            `"display_name"`, one key per metric (its mean over the images, a float),
            `"seconds_per_image"` (float) and `"error"` (`None`). A method that could not
            run on the model has `None` for every metric and for the time, and its error as
            `"error"`: `"<ExceptionType>: <message>"`.
        results: `{method: {metric: MetricResult}}` for the methods that ran: the per-image
            values, and the curves of `deletion` and `insertion`.
        num_images: the number of images evaluated.
        model_name: the model's name. Defaults to `""`.
        accuracy: the model's top-1 accuracy on the images against the labels, or `None`
            without labels. Defaults to `None`.
        explained: which class each map explains, in words. Defaults to each image's top-1
            predicted class.
        baseline_rows: rows of the same form for the baselines that ignore the model
            (`BASELINES`: random maps and a centred Gaussian), which every method should beat;
            empty when `evaluate(..., baselines=False)`.
        baseline_results: `{baseline: {metric: MetricResult}}`.
        timing: how `seconds_per_image` was measured, in words (`TIMING_NOTE` for in-memory
            images, `STREAM_TIMING_NOTE` for a dataset). Defaults to `TIMING_NOTE`.

    Example:
    ```python
    table = kc.evaluate(model, images, labels, boxes)
    print(table)                                  # Markdown
    best = min(table.successful_rows, key=lambda row: row["deletion"])
    curve = table.results["gradcam"]["deletion"].curve
    ```
    """

    metrics: tuple[str, ...]
    rows: list[dict[str, Any]]
    results: dict[str, dict[str, MetricResult]]
    num_images: int
    model_name: str = ""
    accuracy: float | None = None
    explained: str = "each image's top-1 predicted class"
    baseline_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    baseline_results: dict[str, dict[str, MetricResult]] = dataclasses.field(
        default_factory=dict
    )
    timing: str = TIMING_NOTE

    def summary(self) -> str:
        """The verdict in plain words: `keras_cam.verdict.verdict(self).text`.

        Ranks the methods and the baselines across the metric families, names the metrics
        that disagree and the method it recommends, with the numbers (see `keras_cam.verdict`).
        """
        from keras_cam.verdict import verdict

        return verdict(self).text

    @property
    def successful_rows(self) -> list[dict[str, Any]]:
        """The rows of the methods that ran (`row["error"] is None`)."""
        return [row for row in self.rows if row["error"] is None]

    @property
    def units(self) -> dict[str, str]:
        """`{metric: unit}`: `"percent"`, `"fraction"`, `"ratio"` or `"score"` (see
        `MetricResult`)."""
        return {name: self._reference(name).unit for name in self.metrics}

    @property
    def higher_is_better(self) -> dict[str, bool]:
        """`{metric: whether a larger mean is better}`."""
        return {name: self._reference(name).higher_is_better for name in self.metrics}

    def to_dict(self) -> dict[str, Any]:
        """The table as JSON-ready Python objects.

        Returns:
            `{"num_images": int, "model": str, "accuracy": float or None, "explained": str,
            "metrics": {name: {"unit": str, "higher_is_better": bool}}, "rows": [row, ...]}`;
            per-image values and curves stay in `results`.
        """
        units, higher = self.units, self.higher_is_better
        return {
            "num_images": self.num_images,
            "model": self.model_name,
            "accuracy": self.accuracy,
            "explained": self.explained,
            "metrics": {
                name: {"unit": units[name], "higher_is_better": higher[name]}
                for name in self.metrics
            },
            "rows": [dict(row) for row in self.rows],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """`to_dict()` as a JSON string (`json.dumps` with `indent`). Defaults to `indent=2`."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_markdown(self) -> str:
        """The table in Markdown.

        Columns: the method's display name; each metric titled with its unit (`%`, `0-1`,
        `ratio` or `score`) and `↑` (higher is better) or `↓` (lower is better); and
        `s/image`, the seconds per image of the map computation. Percentages have one
        decimal, the other metrics three. A method that failed shows `—` in every cell, and
        its error is listed below the table.

        Returns:
            The Markdown text, without a trailing newline.
        """
        units, higher = self.units, self.higher_is_better
        titles = [
            f"{name} ({_UNIT_LABELS.get(units[name], units[name])}) "
            + ("↑" if higher[name] else "↓")
            for name in self.metrics
        ]
        lines = [
            _markdown_line(["method", *titles, "s/image"]),
            _markdown_line([":---", *["---:"] * (len(titles) + 1)]),
        ]
        for row in self.rows:
            cells = [_format_value(row[name], units[name]) for name in self.metrics]
            seconds = row[SECONDS_PER_IMAGE]
            lines.append(_markdown_line(
                [row["display_name"], *cells, _MISSING if seconds is None else f"{seconds:.3g}"]
            ))
        failed = [row for row in self.rows if row["error"] is not None]
        if failed:
            lines.append("")
            lines += [
                f"- {row['display_name']} (`{row['method']}`) could not run: "
                + " ".join(row["error"].split())
                for row in failed
            ]
        return "\n".join(lines)

    def to_report(self, model: str | None = None) -> str:
        """A Markdown report that explains itself: what was evaluated, the table, each column.

        Args:
            model: how to name the model (e.g. its file); `None` uses `model_name`.
                Defaults to `None`.

        Returns:
            A heading; the model, the number of images, the model's accuracy on them (when
            labels were given), the class each map explains and how the time was measured;
            `to_markdown()`; then one line per column: what it measures and which way is
            better. No trailing newline.

        Example:
        ```python
        pathlib.Path("evaluation.md").write_text(table.to_report("model.keras") + "\n")
        ```
        """
        units, higher = self.units, self.higher_is_better
        accuracy = (
            "not measured (no labels)" if self.accuracy is None
            else f"{self.accuracy:.1%} (top-1, against the labels)"
        )
        lines = [
            "# keras_cam evaluation",
            "",
            f"- model: {model or self.model_name}",
            f"- images: {self.num_images}",
            f"- accuracy on them: {accuracy}",
            f"- explained class: {self.explained}",
            f"- time: {self.timing}",
            "",
            self.to_markdown(),
            "",
            "Columns (↑ higher is better, ↓ lower is better):",
            "",
        ]
        for name in self.metrics:
            unit = _UNIT_LABELS.get(units[name], units[name])
            better = "higher is better" if higher[name] else "lower is better"
            lines.append(f"- {name} ({unit}): {METRIC_DESCRIPTIONS.get(name, name)}; {better}.")
        lines.append(f"- s/image: {self.timing}; lower is better.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    def _reference(self, metric: str) -> MetricResult:
        """A `MetricResult` of `metric` (the first method that has one), for its metadata."""
        for method_results in (*self.results.values(), *self.baseline_results.values()):
            if metric in method_results:
                return method_results[metric]
        raise ValueError(f"No method of this table has a result for the metric {metric!r}.")


def evaluate(
    model: keras.Model,
    images: ArrayLike,
    labels: ArrayLike | None = None,
    boxes: ArrayLike | None = None,
    methods: MethodSpec | Sequence[MethodSpec] = DEFAULT_METHODS,
    metrics: str | Sequence[str] | None = None,
    *,
    layer: str | keras.layers.Layer | None = None,
    layer_call: int | None = None,
    batch_size: int = 32,
    method_options: Mapping[MethodSpec, Mapping[str, Any]] | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    activation: Activation = None,
    head: str | None = None,
    verbose: int = 0,
    output: int | str | None = None,
    strategy: Any = None,
    baselines: bool = True,
) -> EvaluationTable:
    """Evaluates CAM methods on a model and images: one row per method, each metric's mean.

    For each method, `method(model, layer=layer, layer_call=layer_call,
    **method_options[method])` explains the images in chunks of `batch_size` for the same
    targets, and each metric scores the maps (see `keras_cam.metrics`). Targets are `labels`
    (the ground-truth classes) when given, else each image's top-1 class.

    Timing: `seconds_per_image` is the wall time of computing the maps (the chunked calls,
    maps returned as NumPy, so the device is synchronized) divided by the number of images.
    One image is explained first, untimed, so one-off costs (building the sub-model, tracing
    the `tf.function`s) are not counted; neither are the metrics.

    Failures: a method that cannot run on this model (a `ValueError` or `TypeError` while
    building it or computing its maps, e.g. CAM on a model without a GAP -> Dense head) gets a
    row with its error instead of values, and the other methods are still evaluated. When no
    method runs, the error is raised instead: as is when a single method was asked for, as a
    `ValueError` listing every method's error otherwise. Errors of the arguments (names,
    shapes, options) and of the metrics are raised before or while scoring, not recorded.

    Args:
        model: a single-input Functional or Sequential Keras classifier, as the methods take.
        images: `(B, H, W, C)` images, NumPy or tensor, preprocessed the way the model expects.
        labels: int `(B,)` ground-truth class of each image, the class every map explains and
            every metric scores: any integer array-like (NumPy array, list, tensor such as a
            `tf.data` batch's labels, pandas Series; a `(B, 1)` column too); `None` uses each
            image's top-1 predicted class. Defaults to `None`.
        boxes: int `(B, 4)` ground-truth boxes `(x0, y0, x1, y1)`, `x1`/`y1` exclusive, for
            the box metrics (`box_iou`, `pointing_game`); `None` if there are none. Defaults to
            `None`.
        methods: the methods to compare: registered names (`keras_cam.METHODS`, looked up with
            `keras_cam.get_method`) or `BaseCAM` subclasses, or one of them. Defaults to
            `("gradcam", "gradcam++", "scorecam")`.
        metrics: metric names (keys of `keras_cam.metrics.METRICS` or
            `keras_cam.sanity.SANITY_METRICS`: `"randomisation"`), or one name; `None` means
            every metric that needs the model but those of `OPT_IN_METRICS` (`"road"`: name it
            to run it), the map metrics (`sparseness`) and the sanity check, plus the box
            metrics when `boxes` are given;
            on a raw-score (`"linear"`) head, `None` leaves out, with a warning, the metrics
            defined for probabilities only (`keras_cam.metrics.PROBABILITY_METRICS`).
            Defaults to `None`.
        layer: the layer every method explains (a name, a layer object, or `None` for each
            method's automatic choice). Defaults to `None`.
        layer_call: which call of the explained layer every method explains when the model
            calls it (or a nested model holding it) more than once, e.g. a backbone run on an
            image and on its flip (test-time augmentation): an int from 0, as the refusal
            message lists the calls. `None` requires a single call: on a layer called several times every method
            fails with a message listing the calls. Defaults to `None`.
        batch_size: images per call of a method, and per model call of a metric. Defaults to
            `32`.
        method_options: extra constructor arguments per method, keyed like `methods` (name or
            class), e.g. `{"scorecam": {"max_channels": 16}}`; they override `layer` and
            `layer_call`. Every method gets this call's `verbose` (Score-CAM shows progress
            with it) and `head` unless their options set them. Defaults to `None`.
        metric_options: extra keyword arguments per metric, e.g. `{"deletion": {"steps": 20}}`;
            they override `batch_size`, `activation` and `head`. Defaults to `None`.
        activation: the metrics' older spelling of `head="logits"` (`"softmax"`) or
            `head="sigmoid_logits"` (`"sigmoid"`); `None` leaves the reading to `head`.
            Defaults to `None`.
        head: how the model's output is read, by every method and metric: `None` for
            automatic (`keras_cam.surgery.read_head`, which warns when it cannot recognise the
            final activation), or one of `keras_cam.surgery.HEADS`. Defaults to `None`.
        verbose: 0 (silent) or 1 (one line per method as it finishes). Defaults to `0`.
        output: the output to explain and score of a model with several (an auxiliary head,
            a multi-task model): its name or index (see `keras_cam.surgery.select_output`);
            every method and metric then works on that output. Defaults to `None` (the only
            output).
        strategy: the `tf.distribute.Strategy` a dataset is explained on (see
            `keras_cam.explain_dataset`); `None` for the current one. Defaults to `None`.

    Datasets: `images` may be a `tf.data.Dataset` or an iterator of batches whose elements
    are images, `(images, labels)` or `(images, labels, boxes)` (then `labels` and `boxes`
    stay `None`: they come from the dataset). It is streamed through `explain_dataset` with
    every method at once, in batches of `batch_size` (with its progress bar at `verbose=1`),
    and each metric is computed batch by batch: images and maps are never held beyond a
    batch; each `MetricResult` keeps the per-image values (one float per image) but no
    curves (`curve` is `None`). `seconds_per_image` is timed on every batch but the first
    (`STREAM_TIMING_NOTE`). The table carries what the in-memory one does (model name,
    accuracy against the dataset's labels, what was explained, the baselines' rows, scored
    batch by batch), and its rows equal those of the in-memory call on the same images.
        baselines: also score the maps of `BASELINES` (random maps, a centred Gaussian),
            which ignore the model, into `baseline_rows`; `EvaluationTable.summary` ranks the
            methods against them. Defaults to `True`.

    Returns:
        An `EvaluationTable`; `print(table)` shows it in Markdown.

    Raises:
        ValueError: an unknown or repeated method or metric name (the message lists the known
            ones), box metrics without `boxes`, a metric of `PROBABILITY_METRICS` named in
            `metrics` for a raw-score (`"linear"`) head, options for a method or metric that
            is not evaluated, an invalid `head` or both `head` and `activation`, or inputs of
            the wrong shape; or every method failed (see above).
        TypeError: an argument of the wrong type.

    Example:
    ```python
    images, labels, boxes = kc.datasets.shapes(256, seed=1)
    table = kc.evaluate(model, images, labels, boxes,
                        methods=("gradcam", "gradcam++", "scorecam"),
                        metric_options={"deletion": {"steps": 32}})
    print(table)                             # Markdown, one row per method
    table.rows[0]["average_drop"]            # a metric's mean for the first method
    with open("evaluation.json", "w") as f:
        f.write(table.to_json())
    ```
    """
    model = select_output(model, output)
    reading = read_head(model, head)
    if activation is not None and head is not None:
        raise ValueError(
            f"`activation` is the metrics' older spelling of `head`: pass one of them; received "
            f"head={head!r} and activation={activation!r}."
        )
    if is_dataset(images):
        return _evaluate_dataset(
            model, images, labels, boxes, resolve_methods(methods), metrics,
            {"layer": layer, "layer_call": layer_call},
            check_positive_int("batch_size", batch_size),
            method_options, metric_options, activation, reading, verbose, strategy, baselines,
        )
    images = check_images(images)
    batch_size = check_positive_int("batch_size", batch_size)
    if verbose not in (0, 1):
        raise ValueError(f"`verbose` must be 0 or 1; received {verbose!r}.")
    targets = None if labels is None else _check_labels(labels, len(images), reading.num_classes)
    classes = resolve_methods(methods)
    metric_names = _resolve_metrics(metrics, has_boxes=boxes is not None)
    if boxes is not None:
        boxes = check_boxes(boxes, map_shape(model, images.shape))
    constructor_kwargs = _constructor_kwargs(
        classes, {"layer": layer, "layer_call": layer_call}, method_options, verbose, reading
    )
    metric_kwargs = _metric_kwargs(
        metric_names, metric_options, batch_size, activation, None if activation else reading.kind
    )
    metric_names = _metrics_for_head(metric_names, metric_kwargs, reading, metrics is None)

    rows: list[dict[str, Any]] = []
    results: dict[str, dict[str, MetricResult]] = {}
    errors: list[Exception] = []
    # Every method is built and warmed up before any is timed (see `_warm_up`).
    explainers: dict[str, BaseCAM | Exception] = {}
    for name, method in classes.items():
        try:
            explainers[name] = _warm_up(
                method(model, **constructor_kwargs[name]), images, targets, batch_size
            )
        except (ValueError, TypeError) as error:
            explainers[name] = error
    for name, method in classes.items():
        try:
            cam = explainers[name]
            if isinstance(cam, Exception):
                raise cam
            maps, seconds = _timed_maps(cam, images, targets, batch_size)
        except (ValueError, TypeError) as error:
            errors.append(error)
            rows.append(_error_row(name, method.display_name, metric_names, error))
            if verbose:
                print(f"{name}: could not run: {rows[-1]['error']}")
            continue
        results[name] = _scored(
            metric_names, model, images, targets, boxes, metric_kwargs, maps, method,
            constructor_kwargs[name],
        )
        rows.append(_result_row(name, method.display_name, results[name], seconds))
        if verbose:
            print(f"{name}: {seconds:.3g} s/image for the maps")
    if not results:
        if len(errors) == 1:
            raise errors[0]
        raise ValueError(
            "None of the methods could run on this model: "
            + "; ".join(f"{row['method']}: {row['error']}" for row in rows)
        )
    baseline_rows, baseline_results = (
        _baseline_rows(model, images, targets, boxes, metric_names, metric_kwargs)
        if baselines else ([], {})
    )
    return EvaluationTable(
        tuple(metric_names), rows, results, len(images), model_name=model.name,
        accuracy=None if targets is None else _accuracy(
            model, reading, images, targets, batch_size
        ),
        explained=_explained(targets is not None),
        baseline_rows=baseline_rows, baseline_results=baseline_results,
    )


def _evaluate_dataset(
    model: keras.Model,
    dataset: Any,
    labels: ArrayLike | None,
    boxes: ArrayLike | None,
    classes: dict[str, type[BaseCAM]],
    metrics: str | Sequence[str] | None,
    layer_options: Mapping[str, Any],
    batch_size: int,
    method_options: Mapping[MethodSpec, Mapping[str, Any]] | None,
    metric_options: Mapping[str, Mapping[str, Any]] | None,
    activation: Activation,
    reading: Head,
    verbose: int,
    strategy: Any,
    baselines: bool,
) -> EvaluationTable:
    """`evaluate` on a streamed dataset: every method in one pass, metrics batch by batch.

    The table carries what the in-memory one does: the model's name, the accuracy on the
    images (from the predicted classes the stream records, against the dataset's labels), what
    was explained, the baselines' rows (their maps computed batch by batch) and the timing
    rule (`STREAM_TIMING_NOTE`).
    """
    if labels is not None or boxes is not None:
        raise ValueError(
            "`labels` and `boxes` come from the dataset's elements when `images` is a dataset "
            "((images, labels) or (images, labels, boxes)); leave them None."
        )
    if verbose not in (0, 1):
        raise ValueError(f"`verbose` must be 0 or 1; received {verbose!r}.")
    elements = dataset_elements(dataset, len(model.inputs[0].shape))
    has_labels = elements.parts > 1
    metric_names = _resolve_metrics(metrics, has_boxes=elements.parts > 2)
    constructor_kwargs = _constructor_kwargs(classes, layer_options, method_options, 0, reading)
    metric_kwargs = _metric_kwargs(
        metric_names, metric_options, batch_size, activation, None if activation else reading.kind
    )
    metric_names = _metrics_for_head(metric_names, metric_kwargs, reading, metrics is None)
    explainers, failed = {}, {}
    for name, method in classes.items():
        try:
            explainers[name] = _failing_quietly(
                method(model, **constructor_kwargs[name]), name, failed
            )
        except (ValueError, TypeError) as error:
            failed[name] = error
    if not explainers:
        _raise_none_ran(failed)
    running = {name: _RunningRow() for name in explainers}
    baseline_maps = {name: factory() for name, (_, factory) in BASELINES.items()} if baselines else {}
    running_baselines = {name: _RunningRow() for name in baseline_maps}
    count, correct = 0, 0
    batches = explain_dataset(
        explainers, elements, targets="labels" if has_labels else None, batch_size=batch_size,
        strategy=strategy, verbose=verbose,
    )
    for batch in batches:
        targets = batch.classes.astype(np.int32) if has_labels else None
        scored = functools.partial(
            _scored, metric_names, model, batch.images, targets, batch.boxes, metric_kwargs
        )
        for name in explainers:
            if name in failed:  # its error row replaces every value, as in memory
                continue
            running[name].add(
                scored(batch.maps[name], classes[name], constructor_kwargs[name]),
                batch.seconds[name], len(batch.index),
            )
        for name, explain in baseline_maps.items():
            begin = time.perf_counter()
            maps = check_maps(
                explain(model, batch.images, batch.classes.astype(np.int32)),
                map_shape(model, batch.images.shape),
            )
            running_baselines[name].add(
                scored(maps, explain, {}), time.perf_counter() - begin, len(batch.index)
            )
        if has_labels:
            correct += int(np.sum(batch.predicted == batch.labels.reshape(-1)))
        count += len(batch.index)
    if len(failed) == len(classes):
        _raise_none_ran(failed)
    rows, results = [], {}
    for name, method in classes.items():
        if name in failed:
            rows.append(_error_row(name, method.display_name, metric_names, failed[name]))
            continue
        results[name] = running[name].results()
        rows.append(_result_row(
            name, method.display_name, results[name], running[name].seconds_per_image()
        ))
    baseline_results = {name: row.results() for name, row in running_baselines.items()}
    baseline_rows = [
        _result_row(name, BASELINES[name][0], baseline_results[name], row.seconds_per_image())
        for name, row in running_baselines.items()
    ]
    return EvaluationTable(
        tuple(metric_names), rows, results, count, model_name=model.name,
        accuracy=correct / count if has_labels else None, explained=_explained(has_labels),
        baseline_rows=baseline_rows, baseline_results=baseline_results,
        timing=STREAM_TIMING_NOTE,
    )


def _failing_quietly(cam: BaseCAM, name: str, failed: dict[str, Exception]) -> BaseCAM:
    """`cam` (built by the streamed evaluate, never the user's) whose `explain` records a
    `ValueError` or `TypeError` in `failed[name]` instead of raising it, as the in-memory
    evaluate turns a method that fails on some images into an error row while the others are
    evaluated. From its failure on, it returns zero maps and the model's scores (`predict`),
    which the stream needs for the predicted classes; its maps are never scored."""
    explain = cam.explain

    def recorded(images: Any, targets: Any = None, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if name not in failed:
            try:
                return explain(images, targets, **kwargs)
            except (ValueError, TypeError) as error:
                failed[name] = error
        scores = cam.predict(images)
        return np.zeros((len(scores), *cam.image_size(images)), np.float32), scores

    cam.explain = recorded
    return cam


def _raise_none_ran(failed: Mapping[str, Exception]) -> None:
    """Raises as the in-memory evaluate does when no method ran: the one error as it is, or a
    `ValueError` listing every method's."""
    errors = list(failed.values())
    if len(errors) == 1:
        raise errors[0]
    raise ValueError(
        "None of the methods could run on this model: "
        + "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in failed.items())
    )


def _scored(
    metric_names: Sequence[str],
    model: keras.Model,
    images: np.ndarray,
    targets: np.ndarray | None,
    boxes: np.ndarray | None,
    metric_kwargs: dict[str, dict[str, Any]],
    maps: np.ndarray,
    method: sanity.MethodLike,
    method_options: Mapping[str, Any],
) -> dict[str, MetricResult]:
    """Every metric of `metric_names` on one method's (or baseline's) maps of a batch."""
    return {
        metric: _compute_metric(
            metric, model, images, maps, targets, boxes, metric_kwargs[metric], method,
            method_options,
        )
        for metric in metric_names
    }


class _RunningRow:
    """One row of a streamed evaluation, batch by batch: each metric's per-image values and
    the seconds of the maps."""

    def __init__(self) -> None:
        self.per_image: dict[str, list[np.ndarray]] = {}
        self.last: dict[str, MetricResult] = {}
        self.seconds: list[float] = []
        self.images: list[int] = []

    def add(self, results: dict[str, MetricResult], seconds: float, images: int) -> None:
        """Records one batch: its `MetricResult`s, the seconds of its maps, its image count."""
        for metric, result in results.items():
            self.per_image.setdefault(metric, []).append(result.per_image)
            self.last[metric] = result
        self.seconds.append(seconds)
        self.images.append(images)

    def results(self) -> dict[str, MetricResult]:
        """Every metric's result over all batches: the per-image values, no curves."""
        return {
            metric: dataclasses.replace(
                result, per_image=np.concatenate(self.per_image[metric]), curve=None,
                curve_x=None,
            )
            for metric, result in self.last.items()
        }

    def seconds_per_image(self) -> float:
        """Seconds per image over every batch but the first (see `STREAM_TIMING_NOTE`)."""
        timed = slice(1, None) if len(self.seconds) > 1 else slice(None)
        return sum(self.seconds[timed]) / sum(self.images[timed])


def _explained(has_labels: bool) -> str:
    """What each map explains, in words (`EvaluationTable.explained`)."""
    return "each image's label (its true class)" if has_labels else (
        "each image's top-1 predicted class"
    )


def _result_row(
    method: str, display_name: str, results: dict[str, MetricResult], seconds: float
) -> dict[str, Any]:
    """A table row of a method or baseline that ran: each metric's mean and its time."""
    means = {metric: result.mean for metric, result in results.items()}
    return {
        "method": method, "display_name": display_name, **means, SECONDS_PER_IMAGE: seconds,
        "error": None,
    }


def _error_row(
    method: str, display_name: str, metric_names: Sequence[str], error: Exception
) -> dict[str, Any]:
    """A table row of a method that could not run: no values, its error."""
    return {
        "method": method, "display_name": display_name, **dict.fromkeys(metric_names),
        SECONDS_PER_IMAGE: None, "error": f"{type(error).__name__}: {error}",
    }


# ---------------------------------------------------------------------------- internals
def _check_labels(labels: ArrayLike, batch: int, num_classes: int) -> np.ndarray:
    """`labels` as int32 `(B,)` class indices within the model's classes."""
    forms = "one integer class index per image (an array-like or tensor)"
    array = class_indices(labels, "labels", forms)
    if array.shape != (batch,):
        raise ValueError(
            f"`labels` must hold one class index per image, shape ({batch},); received shape "
            f"{array.shape}."
        )
    try:
        return resolve_targets(array, batch, num_classes)
    except ValueError as error:
        raise ValueError(f"Invalid `labels`: {error}") from error


OPT_IN_METRICS: tuple[str, ...] = ("road",)
"""Metrics `evaluate` runs only when named: ROAD imputes every removed pixel by a linear solve,
18 solves per image (MoRF and LeRF at 9 percentiles), tens of times the cost of the others."""


def _resolve_metrics(metrics: str | Sequence[str] | None, has_boxes: bool) -> list[str]:
    """The metric names to compute, checked against `METRICS` and the presence of boxes."""
    if metrics is None:
        default = [
            name for name in METRICS
            if (has_boxes or name not in BOX_METRICS) and name not in OPT_IN_METRICS
        ]
        return [*default, *sanity.SANITY_METRICS]
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    known = [*METRICS, *sanity.SANITY_METRICS]
    if not names:
        raise ValueError(f"`metrics` must name at least one metric; known metrics: {known}.")
    for name in names:
        if name not in known:
            raise ValueError(f"Unknown metric {name!r}; known metrics: {', '.join(known)}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`metrics` lists a metric more than once: {names!r}.")
    needs_boxes = [name for name in names if name in BOX_METRICS]
    if needs_boxes and not has_boxes:
        raise ValueError(
            f"The metrics {needs_boxes} compare the maps with ground-truth boxes, but no `boxes` "
            "were given: pass `boxes` (int (B, 4), (x0, y0, x1, y1)) or leave them out of "
            "`metrics`."
        )
    return names


def _metrics_for_head(
    names: list[str], kwargs: dict[str, dict[str, Any]], reading: Head, by_default: bool
) -> list[str]:
    """The metrics defined for the head each one reads; the others refused or left out.

    A metric of `PROBABILITY_METRICS` on a raw-score (`"linear"`) head is left out with a
    warning when the metrics were chosen by default, and refused when `metrics` named it.
    """
    undefined = [
        name for name in names
        if name in PROBABILITY_METRICS and kwargs[name].get("activation") is None
        and kwargs[name].get("head") == "linear"
    ]
    if not undefined:
        return names
    how = reading.description if reading.kind == "linear" else "stated in `metric_options`"
    if not by_default:
        check_head_for_metric(undefined[0], "linear", how)
    warnings.warn(
        f"keras_cam: the model's output is read as raw scores (head='linear': {how}), so the "
        f"metrics defined for class probabilities, {undefined}, are left out of the table. If "
        "the output is a binary logit, pass `head='logits'`.",
        stacklevel=3,
    )
    return [name for name in names if name not in undefined]


def _check_options(
    argument: str,
    options: Mapping[Any, Mapping[str, Any]] | None,
    evaluated: list[str],
    name_of: Callable[[Any], str | None],
) -> dict[str, Mapping[str, Any]]:
    """`options` by evaluated name; `name_of(key)` is the evaluated name of a key, or None."""
    checked = {}
    for key, value in (options or {}).items():
        name = name_of(key)
        if name is None:
            raise ValueError(
                f"`{argument}` has options for {key!r}, which is not among the evaluated ones: "
                f"{evaluated}."
            )
        if not isinstance(value, Mapping):
            raise TypeError(
                f"`{argument}[{key!r}]` must be a dict of keyword arguments; received "
                f"{type(value).__name__}."
            )
        checked[name] = value
    return checked


def _constructor_kwargs(
    classes: dict[str, type[BaseCAM]],
    layer_options: Mapping[str, Any],
    method_options: Mapping[MethodSpec, Mapping[str, Any]] | None,
    verbose: int,
    head: Head,
) -> dict[str, dict[str, Any]]:
    """The keyword arguments each method is built with, by row name.

    `layer_options` (`layer`, `layer_call`) are passed only where they are not `None`.
    """
    names = {method: name for name, method in classes.items()}
    options = _check_options(
        "method_options", method_options, list(classes), lambda key: names.get(get_method(key))
    )
    # The head reading made once, so an unsure one warns once.
    given = {key: value for key, value in layer_options.items() if value is not None}
    shared = {"verbose": verbose, "head": head, **given}
    return {name: {**shared, **options.get(name, {})} for name in classes}


def _metric_kwargs(
    metric_names: list[str],
    metric_options: Mapping[str, Mapping[str, Any]] | None,
    batch_size: int,
    activation: Activation,
    head: str | None,
) -> dict[str, dict[str, Any]]:
    """The keyword arguments each metric is called with."""
    options = _check_options(
        "metric_options", metric_options, metric_names,
        lambda key: key if key in metric_names else None,
    )
    model_kwargs = {"batch_size": batch_size, "activation": activation, "head": head}
    defaults = {name: model_kwargs for name in metric_names}
    defaults.update({name: {} for name in BOX_METRICS | MAP_METRICS})
    defaults.update({name: {"batch_size": batch_size} for name in sanity.SANITY_METRICS})
    return {name: {**defaults[name], **options.get(name, {})} for name in metric_names}


def _accuracy(
    model: keras.Model, reading: Head, images: np.ndarray, labels: np.ndarray, batch_size: int
) -> float:
    """The share of images whose top-1 class, as `reading` reads the head (a single-unit binary
    head as `[1 - p, p]`), is their label."""
    outputs = model.predict(images, batch_size=batch_size, verbose=0)
    scores = keras.ops.convert_to_numpy(reading.scores(outputs))
    return float(np.mean(np.argmax(scores, axis=-1) == labels))


def _chunks(num_images: int, batch_size: int) -> list[slice]:
    """The slices of the images that each model call of the timed pass takes."""
    return [slice(start, start + batch_size) for start in range(0, num_images, batch_size)]


def _warm_up(
    cam: BaseCAM, images: np.ndarray, targets: np.ndarray | None, batch_size: int
) -> BaseCAM:
    """Calls the explainer once per chunk size of the timed pass, untimed; returns it.

    The first calls of a method trace its functions for each input shape, and the first
    method run in a process also pays TensorFlow's one-time start-up costs: measured on the
    demo model, 3-4 times the steady time per image, whichever method came first. Warming up
    every method, on the first images and with each chunk size (`batch_size`, and the last,
    shorter chunk), before any is timed, keeps those costs out of `seconds_per_image`.
    """
    num_images = len(images)
    sizes = {min(chunk.stop, num_images) - chunk.start for chunk in _chunks(num_images, batch_size)}
    for size in sorted(sizes):
        cam(images[:size], None if targets is None else targets[:size])
    return cam


def _timed_maps(
    cam: BaseCAM, images: np.ndarray, targets: np.ndarray | None, batch_size: int
) -> tuple[np.ndarray, float]:
    """All maps, computed in chunks of `batch_size` (after `_warm_up`), and the seconds per
    image."""
    begin = time.perf_counter()
    chunks = [
        cam(images[chunk], None if targets is None else targets[chunk])
        for chunk in _chunks(len(images), batch_size)
    ]
    seconds = time.perf_counter() - begin
    maps = check_maps(np.concatenate(chunks), map_shape(cam.model, images.shape))
    return maps, seconds / len(images)


def _compute_metric(
    name: str,
    model: keras.Model,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray | None,
    boxes: np.ndarray | None,
    kwargs: dict[str, Any],
    method: sanity.MethodLike,
    method_options: Mapping[str, Any],
) -> MetricResult:
    """One metric on one method's maps, with the arguments its family takes."""
    if name in BOX_METRICS:
        return get_metric(name)(maps, boxes, **kwargs)
    if name in MAP_METRICS:
        return get_metric(name)(maps, **kwargs)
    if name in sanity.SANITY_METRICS:
        return sanity.SANITY_METRICS[name](
            model, images, maps, targets, method=method, method_options=method_options, **kwargs
        )
    return get_metric(name)(model, images, maps, targets, **kwargs)


def _format_value(value: float | None, unit: str) -> str:
    if value is None:
        return _MISSING
    return f"{value:.1f}" if unit == "percent" else f"{value:.3f}"


def _markdown_line(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _baseline_rows(
    model: keras.Model,
    images: np.ndarray,
    targets: np.ndarray | None,
    boxes: np.ndarray | None,
    metric_names: list[str],
    metric_kwargs: dict[str, dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, MetricResult]]]:
    """The rows and results of `BASELINES`, scored like the methods."""
    rows, results = [], {}
    classes = sanity.explained_for(model, images, targets)
    for name, (display_name, factory) in BASELINES.items():
        explain = factory()
        begin = time.perf_counter()
        maps = check_maps(explain(model, images, classes), map_shape(model, images.shape))
        seconds = (time.perf_counter() - begin) / len(images)
        results[name] = _scored(
            metric_names, model, images, targets, boxes, metric_kwargs, maps, explain, {}
        )
        rows.append(_result_row(name, display_name, results[name], seconds))
    return rows, results
