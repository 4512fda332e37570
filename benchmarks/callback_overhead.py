"""Share of epoch time taken by `HeatmapCallback` while training the demo model.

The demo model (`keras_cam.demo_model.build_demo_model`, a small GAP-head CNN) trains on
`keras_cam.datasets.shapes` images, once without the callback and once per method with it
(8 images, `every_n_epochs=1`, writing both TensorBoard summaries and PNG files). Every run
starts from the same weights and data. Two stopwatch callbacks, placed before and after
`HeatmapCallback`, time each epoch and the callback's own share of it; the first epoch
(tracing and warm-up) is reported apart, and the later ones as median and interquartile range.

The overhead is the callback's median time over the median epoch time of the run without it
(issue 5's target: under 5 % for Grad-CAM). The difference of the median epoch times with and
without the callback is reported too; on a busy machine it is noisier than the direct timing.

Usage:
    python benchmarks/callback_overhead.py            # 4096 images, 5 epochs per run
    python benchmarks/callback_overhead.py --quick    # 512 images, 4 epochs: about a minute
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT))

from _results import (  # noqa: E402
    add_output_arguments,
    machine_info,
    now,
    results_path,
    write_json,
)
from keras_cam.callbacks import HeatmapCallback  # noqa: E402
from keras_cam.datasets import SHAPE_NAMES, shapes  # noqa: E402
from keras_cam.demo_model import build_demo_model  # noqa: E402

METHODS = ("gradcam", "scorecam")
IMAGE_SIZE = 64
EXPLAINED_IMAGES = 8
TARGET_PERCENT = 5.0
"""Issue 5's target for Grad-CAM at `every_n_epochs=1` with 8 images."""


class _Stopwatch(keras.callbacks.Callback):
    """Records when each epoch begins and ends, as seen at its place in the callback list."""

    def __init__(self) -> None:
        super().__init__()
        self.begins: list[float] = []
        self.ends: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.begins.append(time.perf_counter())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.ends.append(time.perf_counter())


def _summary(values: list[float]) -> dict[str, float]:
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "iqr": high - low}


def _run(method: str | None, data: tuple[np.ndarray, ...], args: argparse.Namespace) -> dict:
    """Trains a fresh demo model; returns the epoch and callback times of one configuration."""
    images, labels, boxes = data
    keras.utils.set_random_seed(0)
    model = build_demo_model(IMAGE_SIZE, len(SHAPE_NAMES))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    before, after = _Stopwatch(), _Stopwatch()
    with tempfile.TemporaryDirectory() as workdir:
        callbacks: list[keras.callbacks.Callback] = [before]
        if method is not None:
            callbacks.append(
                HeatmapCallback(
                    images[:EXPLAINED_IMAGES],
                    methods=method,
                    log_dir=Path(workdir) / "logs",
                    out_dir=Path(workdir) / "png",
                    class_names=SHAPE_NAMES,
                    boxes=boxes[:EXPLAINED_IMAGES],
                    max_images=EXPLAINED_IMAGES,
                    raise_errors=True,
                )
            )
        callbacks.append(after)
        model.fit(images, labels, batch_size=args.batch_size, epochs=args.epochs,
                  callbacks=callbacks, verbose=0)
    epochs = [end - begin for begin, end in zip(before.begins, after.ends)]
    in_callback = [end - start for start, end in zip(before.ends, after.ends)]
    return {
        "method": method or "none",
        "first_epoch_s": epochs[0],
        "first_callback_s": in_callback[0],
        "epoch_s": _summary(epochs[1:]),
        "callback_s": _summary(in_callback[1:]),
    }


def _add_shares(rows: list[dict[str, Any]]) -> None:
    baseline = rows[0]["epoch_s"]["median"]
    for row in rows[1:]:
        row["share_percent"] = 100.0 * row["callback_s"]["median"] / baseline
        row["epoch_delta_percent"] = 100.0 * (row["epoch_s"]["median"] - baseline) / baseline
        if row["method"] == "gradcam":
            row["target_percent"] = TARGET_PERCENT
            row["meets_target"] = row["share_percent"] < TARGET_PERCENT


def _markdown(rows: list[dict[str, Any]], config: dict[str, Any]) -> str:
    lines = [
        f"Demo model, {config['train_images']} training images of {IMAGE_SIZE}x{IMAGE_SIZE}, "
        f"batch {config['batch_size']}, {config['epochs']} epochs per run (the first is warm-up); "
        f"callback: {EXPLAINED_IMAGES} images, every epoch, TensorBoard + PNG. "
        f"Medians [IQR] in seconds.",
        "",
        "| callback | epoch time | callback time | share of epoch | epoch time change | "
        "first epoch: callback |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        epoch, in_callback = row["epoch_s"], row["callback_s"]
        share = "" if row["method"] == "none" else f"{row['share_percent']:.2f} %"
        delta = "" if row["method"] == "none" else f"{row['epoch_delta_percent']:+.1f} %"
        first = "" if row["method"] == "none" else f"{row['first_callback_s']:.3f}"
        callback = "" if row["method"] == "none" else (
            f"{in_callback['median']:.3f} [{in_callback['iqr']:.3f}]"
        )
        lines.append(
            f"| {row['method']} | {epoch['median']:.3f} [{epoch['iqr']:.3f}] | {callback} | "
            f"{share} | {delta} | {first} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="512 images, 4 epochs per run")
    parser.add_argument("--train-images", type=int, help="training images (4096; quick 512)")
    parser.add_argument("--epochs", type=int, help="epochs per run, at least 3 (5; quick 4)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (32)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    add_output_arguments(parser, "callback_overhead")
    args = parser.parse_args(argv)
    args.train_images = args.train_images or (512 if args.quick else 4096)
    args.epochs = args.epochs or (4 if args.quick else 5)
    if args.epochs < 3:
        parser.error(
            "--epochs must be at least 3: the first epoch is warm-up, the spread needs two more."
        )
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]

    data = shapes(args.train_images, IMAGE_SIZE, seed=0)
    rows = []
    for method in [None, *methods]:
        print(f"training with callback: {method or 'none'} ...", file=sys.stderr, flush=True)
        rows.append(_run(method, data, args))
    _add_shares(rows)
    config = {
        "quick": args.quick,
        "train_images": args.train_images,
        "image_size": IMAGE_SIZE,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "explained_images": EXPLAINED_IMAGES,
        "every_n_epochs": 1,
    }
    table = _markdown(rows, config)
    print(table)
    out = results_path("callback_overhead", args.quick, args.out, args.write_results)
    payload = {
        "benchmark": "callback_overhead",
        "date": now(),
        "config": config,
        "machine": machine_info(),
        "results": rows,
        "markdown": table,
    }
    write_json(out, payload)
    print(f"\nwrote {out.relative_to(_ROOT) if out.is_relative_to(_ROOT) else out}")


if __name__ == "__main__":
    main()
