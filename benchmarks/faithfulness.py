"""Faithfulness and localization of every registered CAM method on the built-in shapes data.

Trains the demo model (`keras_cam.demo_model.train_demo_model`: a small CNN with a GAP ->
Dense(softmax) head, so CAM applies too) on `keras_cam.datasets.shapes`, prints its held-out
accuracy, then runs `keras_cam.evaluation.evaluate` for every method of `keras_cam.METHODS`
on held-out images, in two subsets evaluated separately:

- single: one object per image; the box metrics use that object's box.
- multi: two instances of the labelled class per image (`multi_instance=True`); the box
  metrics use the box enclosing both instances.

Every map explains the ground-truth class; every metric runs with its defaults (see
`keras_cam.metrics`: 25 % of the pixels, deletion from zeros and insertion from a blur in 50
steps). `s/image` is the time of computing the maps only, after a warm-up.

Usage:
    python benchmarks/faithfulness.py           # 2048 training images, 4 epochs, 256 images
                                                # per subset: benchmarks/out/faithfulness.*
                                                # (--write-results: benchmarks/results/)
    python benchmarks/faithfulness.py --quick   # 2 epochs, 32 images per subset: 1-2 minutes,
                                                # benchmarks/out/faithfulness_quick.*
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _results import (  # noqa: E402
    add_output_arguments,
    machine_info,
    now,
    results_path,
    write_json,
    write_text,
)
from keras_cam.datasets import shapes  # noqa: E402
from keras_cam.demo_model import train_demo_model  # noqa: E402
from keras_cam.evaluation import EvaluationTable, evaluate  # noqa: E402
from keras_cam.methods import METHODS  # noqa: E402

# Every method builds its own compiled functions from the same code, which TensorFlow's
# retracing detector counts as retracing one function; the warnings would only be noise here.
tf.get_logger().setLevel("ERROR")

IMAGE_SIZE = 64
TRAIN_SEED = 0
SUBSET_SEEDS = {"single": 1, "multi": 2}
SUBSET_TITLES = {
    "single": "Single object per image (box metrics: the object's box)",
    "multi": "Two instances of the class per image (box metrics: the box enclosing both)",
}
_ROOT = Path(__file__).resolve().parent.parent


def held_out_subset(name: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(images, labels, boxes)` of a subset the model never saw."""
    images, labels, _, all_boxes = shapes(
        n, IMAGE_SIZE, seed=SUBSET_SEEDS[name], multi_instance=name == "multi",
        return_all_boxes=True,
    )
    enclosing = np.concatenate([all_boxes[:, :, :2].min(axis=1), all_boxes[:, :, 2:].max(axis=1)],
                               axis=1)
    return images, labels, enclosing


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    predictions = model.predict(images, batch_size=128, verbose=0).argmax(axis=1)
    return float(np.mean(predictions == labels))


def report(config: dict[str, Any], training: dict[str, Any], subsets: dict[str, Any],
           tables: dict[str, EvaluationTable], total_seconds: float) -> str:
    """The Markdown report: set-up, one table per subset, total run time."""
    lines = [
        f"Demo model trained on {config['n_train']} images for {config['epochs']} epochs "
        f"in {training['seconds']:.1f} s; {config['n_eval']} held-out {IMAGE_SIZE}x{IMAGE_SIZE} "
        "images per subset, maps of the ground-truth class.",
    ]
    for name, table in tables.items():
        lines += [
            "", f"### {SUBSET_TITLES[name]}", "",
            f"Held-out accuracy: {100 * subsets[name]['accuracy']:.1f} %.", "",
            table.to_markdown(),
        ]
    lines += ["", f"Total run time: {total_seconds:.0f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 32 images per subset")
    parser.add_argument("--n-train", type=int, default=2048, help="training images (2048)")
    parser.add_argument("--epochs", type=int, help="training epochs (4; quick 2)")
    parser.add_argument("--n-eval", type=int, help="held-out images per subset (256; quick 32)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated method names (every registered method)")
    add_output_arguments(parser, "faithfulness")  # the Markdown goes next to the JSON (.md)
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 4)
    n_eval = args.n_eval or (32 if args.quick else 256)
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    config = {"quick": args.quick, "n_train": args.n_train, "epochs": epochs, "n_eval": n_eval,
              "image_size": IMAGE_SIZE, "methods": methods}
    start = time.perf_counter()

    print(f"training the demo model: {args.n_train} images, {epochs} epochs ...", flush=True)
    model, history = train_demo_model(epochs=epochs, n_train=args.n_train,
                                      image_size=IMAGE_SIZE, seed=TRAIN_SEED)
    training = {"seconds": time.perf_counter() - start,
                "train_accuracy": float(history.history["accuracy"][-1])}
    print(f"trained in {training['seconds']:.1f} s (final training accuracy "
          f"{100 * training['train_accuracy']:.1f} %)", flush=True)

    subsets: dict[str, Any] = {}
    tables: dict[str, EvaluationTable] = {}
    for name in SUBSET_SEEDS:
        images, labels, boxes = held_out_subset(name, n_eval)
        subsets[name] = {"accuracy": accuracy(model, images, labels)}
        print(f"{name}: held-out accuracy {100 * subsets[name]['accuracy']:.1f} %; evaluating "
              f"{len(methods)} methods on {n_eval} images ...", flush=True)
        subset_start = time.perf_counter()
        tables[name] = evaluate(model, images, labels, boxes, methods=methods)
        subsets[name]["seconds"] = time.perf_counter() - subset_start
        subsets[name]["table"] = tables[name].to_dict()

    total_seconds = time.perf_counter() - start
    markdown = report(config, training, subsets, tables, total_seconds)
    print()
    print(markdown)

    out = results_path("faithfulness", args.quick, args.out, args.write_results)
    payload = {
        "benchmark": "faithfulness",
        "date": now(),
        "config": config,
        "machine": machine_info(),
        "training": training,
        "subsets": subsets,
        "total_seconds": total_seconds,
    }
    write_json(out, payload)
    write_text(out.with_suffix(".md"), markdown + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
