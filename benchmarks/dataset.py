"""Images/s of Grad-CAM over a whole dataset against the model's own `predict`.

For each model (the demo model of `keras_cam.demo_model` at 64x64, untrained, and ResNet50
at 224x224 built with `weights=None`), one run measures on the same `tf.data` pipeline of
random images (batched, prefetched):

- `model.predict(dataset)`: the model's own speed;
- `keras_cam.explain_dataset("gradcam", dataset, model)`: maps, predicted class and score of
  every image, consumed batch by batch;

each after a warm-up pass over a few batches, best of `--repeats` passes (one of each in
turn per round, so that a slow spell of the machine hits both), and prints the
images/s of both and the ratio of their times (explain / predict; the issue's goal is
<= 1.15). Nothing is written to disk.

A call of `explain_dataset` has a fixed cost that `predict` on a dataset does not: it adds
`rebatch` (and a cast where a dtype differs) to the user's pipeline, which tf.data optimizes
again when the iterator is made (about 10-15 ms here, more for a pipeline holding its images as
one large constant, as `from_tensor_slices` of an array does). On 2048 demo images (0.7 s of
`predict`) that is ~2 %; on 512 images (0.18 s) ~8 %. `--demo-images` sets the count.

Usage:
    python benchmarks/dataset.py                # 2048 demo images, 64 ResNet50 images
    python benchmarks/dataset.py --demo-images 512
    python benchmarks/dataset.py --quick        # 128 and 16 images, one repeat
    python benchmarks/dataset.py --models demo --batch-size 64
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_cam as kc  # noqa: E402
from keras_cam.demo_model import build_demo_model  # noqa: E402

SIZES = {"demo": 64, "resnet50": 224}
IMAGES = {"demo": 2048, "resnet50": 64}
QUICK_IMAGES = {"demo": 128, "resnet50": 16}


def build(name: str) -> keras.Model:
    if name == "demo":
        return build_demo_model(SIZES["demo"])
    return keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))


def pipeline(count: int, size: int, batch_size: int) -> tf.data.Dataset:
    images = np.random.default_rng(0).uniform(0, 1, (count, size, size, 3)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices(images).batch(batch_size).prefetch(2)


def best_seconds(run: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return min(times)


def measure(name: str, count: int, batch_size: int, repeats: int) -> dict[str, float]:
    model = build(name)
    data = pipeline(count, SIZES[name], batch_size)
    warmup = data.take(2)
    cam = kc.GradCAM(model)

    def explain(dataset: tf.data.Dataset) -> None:
        for _ in kc.explain_dataset(cam, dataset, batch_size=batch_size, verbose=0):
            pass

    model.predict(warmup, verbose=0)
    explain(warmup)
    # In turn, one pass of each per round, so that a slow spell of the machine hits both.
    predict = gradcam = float("inf")
    for _ in range(repeats):
        predict = min(predict, best_seconds(lambda: model.predict(data, verbose=0), 1))
        gradcam = min(gradcam, best_seconds(lambda: explain(data), 1))
    return {"predict": count / predict, "gradcam": count / gradcam, "ratio": gradcam / predict}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="demo,resnet50")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--demo-images", type=int, default=IMAGES["demo"])
    args = parser.parse_args()
    images = QUICK_IMAGES if args.quick else {**IMAGES, "demo": args.demo_images}
    repeats = 1 if args.quick else args.repeats
    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices()) or "CPU"
    print(f"devices: {devices}; batch size {args.batch_size}; best of {repeats}")
    print("| model | images | predict (img/s) | explain_dataset Grad-CAM (img/s) | ratio |")
    print("|:---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        row = measure(name, images[name], args.batch_size, repeats)
        print(f"| {name} {SIZES[name]}x{SIZES[name]} | {images[name]} | {row['predict']:.1f} | "
              f"{row['gradcam']:.1f} | {row['ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
