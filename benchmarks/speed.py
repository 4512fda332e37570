"""Speed of keras_cam against the model's own forward pass (and tf-keras-vis, when installed).

For each model (VGG16 and ResNet50 built with `weights=None`, and the demo model of
`keras_cam.demo_model`, a small GAP-head CNN trained on `keras_cam.datasets.shapes`), one run
measures:

- the forward floor: a compiled `tf.function` forward pass at batch sizes 1-32; the best
  images/s gives the per-image floor;
- Grad-CAM and Grad-CAM++ at batch 1 and 8: ratio = time / forward time of the same batch;
- Score-CAM (all channels) and Faster Score-CAM (k=10) on one image: ratio = time /
  (forward passes run x per-image forward time at the best batch);
- with `--extra-methods`, any other registered methods (e.g. issue 13's Eigen-CAM, KPCA-CAM,
  FEM, RandomCAM, EigenGrad-CAM, element-wise Grad-CAM, Smooth Grad-CAM++, ShapleyCAM,
  FinerCAM, Guided Backprop, Guided Grad-CAM) at batch 1 and 8, ratio as Grad-CAM's;
- Ablation-CAM (all channels) on one image: ratio = time / (head passes x per-pass time of
  the head sub-model `keras_cam.surgery.build_head_model`, the layers after the explained
  one, at the same chunk size): what the ablation stream costs beyond the head itself;
- tf-keras-vis's Gradcam, GradcamPlusPlus, Scorecam and Scorecam(max_N=10) on the same model,
  inputs and targets, with the ratio ours / theirs.

Every measurement runs in its own subprocess (so its peak RSS is its own), warms up first, and
reports the median and interquartile range over repeats. A measurement that fails is reported
as "n/a" with the reason, and the run goes on.

Usage:
    python benchmarks/speed.py                  # 224x224, writes benchmarks/out/speed.json
                                                # (--write-results: benchmarks/results/)
    python benchmarks/speed.py --quick          # 96x96, fewer repeats: a few minutes
    python benchmarks/speed.py --models vgg16,demo --repeats 7
    python benchmarks/speed.py --quick --extra-methods all --out /tmp/speed.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _results import add_output_arguments, machine_info, now, results_path, write_json

MODELS = ("vgg16", "resnet50", "demo")
FORWARD_BATCHES = (1, 2, 4, 8, 16, 32)
GRADIENT_BATCHES = (1, 8)
FASTER_CHANNELS = 10
DEMO_SIZE = 64
TARGETS = {"gradient_b8": 1.10, "scorecam": 1.10, "fasterscorecam": 1.30}
"""Issue 3's speed targets (ratios to the forward floor)."""
BASE_METHODS = ("gradcam", "gradcam++", "scorecam", "fasterscorecam")
"""Measured in every run; `--extra-methods` adds others from the registry."""

_RESULT_MARKER = "BENCHMARK_RESULT "
_ROOT = Path(__file__).resolve().parent.parent


# ====================================================================== child side
def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


WARM_SECONDS = 1.0
"""After its `warmup` calls, a measured function is called again until this long has passed
(at most `WARM_CALLS` calls): a fresh process needs 10-20 calls of a small model before
oneDNN's kernels and the allocator settle, and the forward floor (measured after the smaller
batches in its process) must not be warmer than the method it is compared with."""
WARM_CALLS = 20


def _timed(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Wall times and process CPU times (all threads) of `repeats` calls after `warmup` calls
    and, if those took less than `WARM_SECONDS`, more warm-up calls (up to `WARM_CALLS`)."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    extra = 0
    while warmup and extra < WARM_CALLS and time.perf_counter() - start < WARM_SECONDS:
        fn()
        extra += 1
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {"times": times, "cpu_times": cpu_times}


def _timed_beside_forward(
    fn: Callable[[], Any], model: Any, images: Any, repeats: int
) -> dict[str, list[float]]:
    """`_timed(fn)`, and the model's compiled forward pass of the same NumPy batch timed in the
    same process, one call of each in turn (`forward_times`, `forward_cpu_times`): the ratio of
    the two is then free of what differs between processes (thread placement, warm-up, other
    jobs), which on a shared 2-core machine moves single-process timings by 30 %."""
    import tensorflow as tf

    forward = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.float32)],
    )
    # Both start from the same NumPy batch, as a user's call does (a fresh input tensor costs
    # ~0.4 ms on the demo model over one made once).
    pair = {"": fn, "forward_": lambda: forward(images).numpy()}
    for call in pair.values():
        _timed(call, 2, 0)  # warm-up only
    result: dict[str, list[float]] = {}
    for _ in range(repeats):
        for key, call in pair.items():
            for name, values in _timed(call, 0, 1).items():
                result.setdefault(key + name, []).extend(values)
    return result


def _build_model(spec: dict[str, Any]) -> tuple[Any, Any, str]:
    """The model, a batch of 32 inputs for it and the name of the explained layer."""
    import keras
    import numpy as np

    from keras_cam import find_conv_layer

    keras.utils.set_random_seed(0)  # same weights and inputs in every subprocess
    if spec["model"] == "demo":
        from keras_cam.datasets import shapes

        model = keras.models.load_model(spec["demo_path"])
        images = shapes(32, image_size=DEMO_SIZE, seed=1)[0]
    else:
        size = spec["size"]
        builder = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}
        model = builder[spec["model"]](weights=None, input_shape=(size, size, 3))
        images = np.random.default_rng(0).uniform(-1, 1, (32, size, size, 3)).astype("float32")
    return model, images, find_conv_layer(model).name


def _train_demo(spec: dict[str, Any]) -> dict[str, Any]:
    from keras_cam.datasets import shapes
    from keras_cam.demo_model import train_demo_model

    model, _ = train_demo_model(spec["epochs"], spec["train_images"], DEMO_SIZE, seed=0)
    images, labels, _ = shapes(512, DEMO_SIZE, seed=1)  # images the model never saw
    accuracy = model.evaluate(images, labels, verbose=0)[1]
    model.save(spec["demo_path"])
    return {"accuracy": float(accuracy)}


def _measure_forward(spec: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    model, images, _ = _build_model(spec)
    forward = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.float32)],
    )
    per_batch = {}
    for batch in FORWARD_BATCHES:
        inputs = tf.constant(images[:batch])
        per_batch[batch] = _timed(lambda: forward(inputs).numpy(), 2, spec["repeats"])
    return {"per_batch": per_batch}


def _top_classes(model: Any, images: Any) -> list[int]:
    return [int(c) for c in model(images, training=False).numpy().argmax(axis=-1)]


def _measure_ours(spec: dict[str, Any]) -> dict[str, Any]:
    from keras_cam.methods import ScoreCAM, get_method

    model, images, layer = _build_model(spec)
    images = images[: spec["batch"]]
    targets = _top_classes(model, images)
    method = spec["method"]
    if method in ("scorecam", "fasterscorecam"):
        max_channels = FASTER_CHANNELS if method == "fasterscorecam" else None
        cam = ScoreCAM(model, layer, max_channels=max_channels, verbose=0)
        if max_channels is None:
            # Warm up (trace, allocate) on one full and one last chunk, not on all channels.
            cam.max_channels = 1
            cam(images, targets)
            chunk = cam.last_stats.batch_size
            cam.max_channels = min(cam.num_channels, chunk + cam.num_channels % chunk)
            cam(images, targets)
            cam.max_channels = None
        timing = _timed(lambda: cam(images, targets), 1 if max_channels else 0, spec["repeats"])
        stats = cam.last_stats
        return {
            **timing,
            "forward_passes": stats.masked_passes + stats.baseline_passes,
            "skipped_fraction": stats.skipped_fraction,
            "chunk": stats.batch_size,
            "channels": stats.channels,
        }
    if method == "ablationcam":
        return _measure_ablation(model, images, targets, layer, spec["repeats"])
    cam = get_method(method)(model, layer)
    return _timed_beside_forward(lambda: cam(images, targets), model, images, spec["repeats"])


def _measure_ablation(
    model: Any, images: Any, targets: list[int], layer: str, repeats: int
) -> dict[str, Any]:
    """Ablation-CAM's time, and the head sub-model's time per pass at the same chunk size."""
    import tensorflow as tf

    from keras_cam.methods import AblationCAM
    from keras_cam.surgery import build_cam_model, build_head_model

    cam = AblationCAM(model, layer, verbose=0)
    timing = _timed(lambda: cam(images, targets), 1, repeats)
    run = cam.last_stats
    cam_model = build_cam_model(model, layer)
    head = build_head_model(cam_model)
    features = cam_model.model(tf.constant(images[:1]), training=False)[0]
    chunk = tf.repeat(features, run.batch_size, axis=0)
    head_fn = tf.function(lambda x: head(x, training=False)[0])
    head_timing = _timed(lambda: head_fn(chunk).numpy(), 2, repeats)
    return {
        **timing,
        "forward_passes": run.masked_passes,
        "skipped_fraction": run.skipped_fraction,
        "chunk": run.batch_size,
        "channels": run.channels,
        "head_pass_seconds": statistics.median(head_timing["times"]) / run.batch_size,
        "head_pass_cpu_seconds": statistics.median(head_timing["cpu_times"]) / run.batch_size,
    }


def _measure_theirs(spec: dict[str, Any]) -> dict[str, Any]:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    model, images, layer = _build_model(spec)
    images = images[: spec["batch"]]
    score = CategoricalScore(_top_classes(model, images))
    method = spec["method"]
    if method in ("scorecam", "fasterscorecam"):
        explainer = Scorecam(model)
        max_n = FASTER_CHANNELS if method == "fasterscorecam" else None
        explainer(score, images, penultimate_layer=layer, max_N=2)  # warm-up
        run = lambda: explainer(score, images, penultimate_layer=layer, max_N=max_n)  # noqa: E731
        return _timed(run, 0, spec["repeats"])
    cls = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus}[method]
    explainer = cls(model, model_modifier=ReplaceToLinear(), clone=True)
    run = lambda: explainer(score, images, penultimate_layer=layer)  # noqa: E731
    return _timed_beside_forward(run, model, images, spec["repeats"])


def _child(spec: dict[str, Any]) -> None:
    tasks = {
        "train": _train_demo,
        "forward": _measure_forward,
        "ours": _measure_ours,
        "theirs": _measure_theirs,
    }
    result = tasks[spec["task"]](spec)
    result["peak_rss_mb"] = _peak_rss_mb()
    print(_RESULT_MARKER + json.dumps(result), flush=True)


# ===================================================================== parent side
def _run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Runs one measurement in a fresh interpreter; returns its result or {"error": why}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_RESULT_MARKER):
            return json.loads(line[len(_RESULT_MARKER) :])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit status {done.returncode}, no output"
    return {"error": reason[:300]}


def _summary(times: list[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else None
    return {
        "median": statistics.median(times),
        "iqr": quartiles[2] - quartiles[0] if quartiles else 0.0,
    }


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _measurements(with_peer: bool, extra: tuple[str, ...] = ()) -> list[tuple[str, int, str]]:
    """`(method, batch, who)` for every measurement after the forward floor."""
    rows = [(m, b, "ours") for m in ("gradcam", "gradcam++") for b in GRADIENT_BATCHES]
    rows += [("scorecam", 1, "ours"), ("fasterscorecam", 1, "ours"), ("ablationcam", 1, "ours")]
    if with_peer:
        rows += [(method, batch, "theirs") for method, batch, _ in rows]
    return rows + [(m, b, "ours") for m in extra for b in GRADIENT_BATCHES]


def _extra_methods(spec: str) -> tuple[str, ...]:
    """The registry names `--extra-methods` asks for (`all`: every one not measured anyway)."""
    from keras_cam.methods import METHODS, method_name, resolve_methods

    if not spec:
        return ()
    if spec == "all":
        return tuple(name for name in METHODS if name not in BASE_METHODS)
    names = [method_name(m) for m in resolve_methods(spec.split(","), "--extra-methods").values()]
    return tuple(name for name in names if name not in BASE_METHODS)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _benchmark_model(
    name: str, args: argparse.Namespace, workdir: Path, with_peer: bool
) -> dict[str, Any]:
    size = DEMO_SIZE if name == "demo" else args.size
    base = {"model": name, "size": size, "demo_path": str(workdir / "demo.keras")}
    report: dict[str, Any] = {"model": name, "size": size, "rows": []}
    if name == "demo":
        _log(f"[{name}] training the demo model ...")
        training = {"task": "train", "train_images": args.demo_images, "epochs": args.demo_epochs}
        train = _run_child({**base, **training}, args.timeout)
        report.update(
            training=train, training_images=args.demo_images, training_epochs=args.demo_epochs
        )
        if "error" in train:
            report["error"] = f"training failed: {train['error']}"
            return report
    _log(f"[{name}] forward floor at batch sizes {FORWARD_BATCHES} ...")
    forward = _run_child({**base, "task": "forward", "repeats": args.repeats}, args.timeout)
    report["forward"] = forward
    if "error" in forward:
        report["error"] = f"forward pass failed: {forward['error']}"
        return report
    per_batch, cpu_per_batch = (
        {int(b): statistics.median(t[key]) for b, t in forward["per_batch"].items()}
        for key in ("times", "cpu_times")
    )
    best = max(per_batch, key=lambda b: b / per_batch[b])
    floor, cpu_floor = per_batch[best] / best, cpu_per_batch[best] / best
    report.update(best_batch=best, images_per_second=1 / floor, floor_seconds=floor)

    for method, batch, who in _measurements(with_peer, args.extra):
        _log(f"[{name}] {who} {method} batch {batch} ...")
        score_cam = "scorecam" in method
        repeats = args.score_repeats if score_cam else args.repeats
        spec = {**base, "task": who, "method": method, "batch": batch, "repeats": repeats}
        result = _run_child(spec, args.timeout)
        row = {"method": method, "batch": batch, "who": who, **result}
        if "times" in result:
            row.update(_summary(result["times"]), cpu_median=statistics.median(result["cpu_times"]))
            if "head_pass_seconds" in result:  # Ablation-CAM: against the head's own passes
                passes = result["forward_passes"]
                row["passes"] = passes
                row["ratio"] = row["median"] / (passes * result["head_pass_seconds"])
                row["cpu_ratio"] = row["cpu_median"] / (passes * result["head_pass_cpu_seconds"])
            elif score_cam:
                passes = result.get("forward_passes") or _peer_passes(report, method)
                row["passes"] = passes
                row["ratio"] = row["median"] / (passes * floor) if passes else None
                row["cpu_ratio"] = row["cpu_median"] / (passes * cpu_floor) if passes else None
            elif "forward_times" in result:  # against the forward timed beside it
                row["ratio"] = row["median"] / statistics.median(result["forward_times"])
                row["cpu_ratio"] = row["cpu_median"] / statistics.median(
                    result["forward_cpu_times"]
                )
            else:
                row["ratio"] = row["median"] / per_batch[batch]
                row["cpu_ratio"] = row["cpu_median"] / cpu_per_batch[batch]
        report["rows"].append(row)
    return report


def _peer_passes(report: dict[str, Any], method: str) -> int | None:
    """tf-keras-vis runs every selected channel: K, or k for the faster variant."""
    for row in report["rows"]:
        if row["who"] == "ours" and row["method"] == method and "channels" in row:
            return FASTER_CHANNELS if method == "fasterscorecam" else row["channels"]
    return None


# ----------------------------------------------------------------------- output
def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


def _target(row: dict[str, Any]) -> float | None:
    if row["method"] in ("gradcam", "gradcam++"):
        return TARGETS["gradient_b8"] if row["batch"] == 8 else None
    return TARGETS.get(row["method"])


def _markdown(reports: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine['cpu_count']} CPU cores, {machine['platform']}, "
        f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}; load average "
        f"{machine['load_before']} before, {machine['load_after']} after.",
        "",
        "| model | input | best batch | images/s | forward b1 (s) | forward b8 (s) "
        "| peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        forward = report.get("forward", {})
        if "best_batch" not in report:
            lines.append(f"| {report['model']} | {report['size']} | n/a: {report.get('error')} "
                         "| | | | |")
            continue
        medians = {int(b): statistics.median(t["times"]) for b, t in forward["per_batch"].items()}
        lines.append(
            f"| {report['model']} | {report['size']} | {report['best_batch']} | "
            f"{report['images_per_second']:.1f} | {medians[1]:.3f} | {medians[8]:.3f} | "
            f"{forward['peak_rss_mb']:.0f} |"
        )
    for report in reports:
        if "accuracy" in report.get("training", {}):
            lines.append(
                f"\n{report['model']}: `keras_cam.demo_model.train_demo_model` on "
                f"{report['training_images']} images for {report['training_epochs']} epochs; "
                f"held-out accuracy {report['training']['accuracy']:.1%}."
            )
    lines += [
        "",
        "Ratios: Grad-CAM time / forward time of the same batch (the two timed in turn in one process); Score-CAM time / (forward "
        "passes x per-image forward time at the best batch); Ablation-CAM time / (head passes x "
        "per-pass time of the head sub-model after the explained layer). The CPU ratio is the "
        "same with "
        "process CPU time (all threads) instead of wall time: steadier on a shared machine. "
        "ours/theirs: wall-time ratio to tf-keras-vis on the same inputs and targets.",
        "",
        "| model | method | batch | time (s), median ± IQR | passes (skipped) | ratio | target "
        "| CPU ratio | peak RSS (MB) | tf-keras-vis time (s) | tf-keras-vis ratio "
        "| tf-keras-vis RSS (MB) | ours/theirs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        theirs = {(r["method"], r["batch"]): r for r in report["rows"] if r["who"] == "theirs"}
        for row in (r for r in report["rows"] if r["who"] == "ours"):
            peer = theirs.get((row["method"], row["batch"]), {"error": "not installed"})
            target = _target(row)
            met = "" if target is None or row.get("ratio") is None else (
                " ✓" if row["ratio"] <= target else " ✗"
            )
            passes = "" if "passes" not in row else (
                f"{row['passes']} ({row['skipped_fraction']:.0%})"
            )
            lines.append(
                f"| {report['model']} | {row['method']} | {row['batch']} | "
                f"{_time_cell(row)} | {passes} | {_fmt(row.get('ratio'), '.2f')}{met} | "
                f"{'' if target is None else f'≤ {target:.2f}'} | "
                f"{_fmt(row.get('cpu_ratio'), '.2f')} | "
                f"{_fmt(row.get('peak_rss_mb'), '.0f')} | {_time_cell(peer)} | "
                f"{_fmt(peer.get('ratio'), '.2f')} | {_fmt(peer.get('peak_rss_mb'), '.0f')} | "
                f"{_speed_ratio(row, peer)} |"
            )
    return "\n".join(lines)


def _time_cell(row: dict[str, Any]) -> str:
    if "median" not in row:
        return f"n/a ({row.get('error', 'not run')})"
    return f"{row['median']:.3g} ± {row['iqr']:.2g}"


def _speed_ratio(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    if "median" not in ours or "median" not in theirs:
        return "n/a"
    return f"{ours['median'] / theirs['median']:.2f}"


def _machine(load_before: tuple[float, ...]) -> dict[str, Any]:
    return {
        **machine_info(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "date": now(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="96x96 inputs and fewer repeats")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--size", type=int, help="input size of VGG16/ResNet50 (224; quick 96)")
    parser.add_argument("--repeats", type=int, help="timed repeats of fast measurements (5; 3)")
    parser.add_argument("--score-repeats", type=int, help="timed repeats of Score-CAM (3; 2)")
    parser.add_argument("--demo-images", type=int, help="demo training images (4096; 2048)")
    parser.add_argument("--demo-epochs", type=int, help="demo training epochs (6; 4)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    parser.add_argument("--no-peer", action="store_true", help="skip tf-keras-vis")
    add_output_arguments(parser, "speed")
    parser.add_argument(
        "--extra-methods", default="", help="other registered methods to time, or 'all'"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return
    defaults = {
        "size": (224, 96),
        "repeats": (5, 3),
        "score_repeats": (3, 2),
        "demo_images": (4096, 2048),
        "demo_epochs": (6, 4),
    }
    for key, values in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, values[args.quick])
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    args.extra = _extra_methods(args.extra_methods)
    out = results_path("speed", args.quick, args.out, args.write_results)
    with_peer = not args.no_peer and _available("tf_keras_vis")
    if not with_peer:
        _log("tf-keras-vis is not installed (pip install -e '.[bench]'): peer columns are n/a.")

    load_before = os.getloadavg()
    reports = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in models:
            reports.append(_benchmark_model(name, args, Path(workdir), with_peer))
    machine = _machine(load_before)
    table = _markdown(reports, machine)
    print(table)
    settings = {k: v for k, v in vars(args).items() if k not in ("child", "out", "extra")}
    write_json(out, {"machine": machine, "settings": settings, "models": reports, "markdown": table})
    _log(f"wrote {out}")


if __name__ == "__main__":
    main()
