"""The `keras-cam` command line: `demo`, `explain`, `info` and `evaluate`.

Every verb has `--help`; `keras-cam --version` prints the version. Bad input of any kind (a
malformed command line, a missing file, an unreadable image, a file that is not a Keras model,
an unknown method or layer, a class out of range) ends the command with one line on stderr,
`keras-cam: error: ...`, in the command line's words (the option, file and line), and exit
status 1 (`EXIT_BAD_INPUT`), never a traceback.

`--help` and usage errors do not import TensorFlow; TensorFlow's and OpenCV's own start-up
and log lines are kept off the terminal unless `--verbose 2` (or `--verbose` alone).

Examples:
```bash
keras-cam demo --out demo_output                  # train, explain, gallery, metrics table
keras-cam info model.keras                        # layers, automatic choice, head type
keras-cam explain model.keras cat.jpg dog.jpg --method gradcam++,scorecam --top 2 \\
    --preprocess resnet50 --out heatmaps
keras-cam evaluate model.keras images/ --labels labels.csv --methods gradcam,gradcam++ \\
    --batch-size 64                               # streamed, batch by batch
keras-cam evaluate --builtin --n 64 --json evaluation.json
```
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

import keras_cam
from keras_cam import io, registry
from keras_cam._files import atomic_writer, write_png
from keras_cam.io import PREPROCESSING
from keras_cam.visualize import colormap_names

if TYPE_CHECKING:  # the verbs import Keras and keras_cam's models when they run, not here
    import keras

    from keras_cam.evaluation import EvaluationTable
    from keras_cam.methods import BaseCAM

PROG = "keras-cam"

EXIT_BAD_INPUT = 1
"""The exit status of every refusal: a malformed command line or unusable input."""

LIBRARY_LOGS_LEVEL = 2
"""The `--verbose` level from which TensorFlow's and OpenCV's own log lines reach stderr."""

# The built-in names of the registries that live with TensorFlow, for `--help` without
# importing it (`_registered` lists the live registry instead once it is imported): methods
# and metrics from `keras_cam.registry`, the others pinned here; tests/test_cli_quiet.py
# checks the pinned ones against `surgery.HEADS`, `methods.NORMALIZE_MODES` and
# `evaluation.DEFAULT_METHODS`.
NORMALIZE_NAMES: tuple[str, ...] = ("image", "batch", "none")
HEAD_NAMES: tuple[str, ...] = ("softmax", "sigmoid", "logits", "sigmoid_logits", "linear")
EVALUATE_DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "scorecam")
ALL_METHODS = "all"

EXPLAIN_DEFAULT_METHODS = ("gradcam++",)
DEMO_IMAGE_SIZE = 64
DEMO_EPOCHS = 5
DEMO_TRAIN_IMAGES = 1536
DEMO_CALLBACK_METHODS = ("gradcam", "gradcam++")
DEMO_CALLBACK_IMAGES = 4
DEMO_MANIFEST = "demo_manifest.json"
"""The file, in the demo's `--out`, listing every file a demo run wrote (cleared by the next)."""
DEMO_OUTPUTS = ("gallery.png", "evaluation.md", "evaluation.json", "epochs", "logs",
                "model.keras", "class_names.txt", "samples")
METRIC_STEPS = 20
"""Deletion/insertion steps used by `demo` and `evaluate` unless `--steps` says otherwise."""
DEMO_MODEL = pathlib.Path("demo_output") / "model.keras"
"""The model `keras-cam demo` writes by default, which `evaluate --builtin` uses when present."""

# ============================================================================ entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `keras-cam` command line.

    Args:
        argv: the arguments after the program name; `None` reads `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, `EXIT_BAD_INPUT` (1) when the command line or the
        input is unusable (the reason is printed on stderr as one line), 130 when interrupted.

    Example:
    ```python
    from keras_cam.cli import main
    main(["info", "model.keras"])   # 0
    ```
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # `--help`, `--version` (status 0) or a usage error, printed
        return 0 if exit_.code is None else int(exit_.code)
    library_logs = args.verbose >= LIBRARY_LOGS_LEVEL
    restore_opencv_logs = quiet_library_logs(library_logs)
    # TensorFlow's retracing notices, logged when several explainers each trace their own
    # functions, are noise on a command line; the level is restored for in-process callers.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with native_stderr_silenced(not library_logs):
            import keras  # noqa: F401  (TensorFlow's start-up lines are printed here)

            import keras_cam.methods  # noqa: F401
        return args.handler(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"{PROG}: error: {in_cli_words(_one_line(error), args)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        tf_logger.setLevel(level)
        restore_opencv_logs()


def quiet_library_logs(shown: bool) -> Callable[[], None]:
    """Sets TensorFlow's, absl's and OpenCV's log levels, unless the user has set them.

    Must run before TensorFlow is imported: it reads these variables once. When not `shown`,
    `TF_CPP_MIN_LOG_LEVEL=3` (errors included: the CPU-only `cuInit` line) and
    `ABSL_MIN_LOG_LEVEL=3`; and, unless `OPENCV_LOG_LEVEL` is set, OpenCV's level is set to
    silent (its `[ WARN ]` / `[ERROR]` lines on a corrupt file, which keras_cam reports itself;
    OpenCV may already be imported, by the `--colormap` check).

    Args:
        shown: keep the libraries' defaults (`--verbose 2`).

    Returns:
        A function that gives OpenCV its earlier level back (for in-process callers).
    """
    if shown:
        return lambda: None
    for name in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL"):
        os.environ.setdefault(name, "3")
    if "OPENCV_LOG_LEVEL" in os.environ:
        return lambda: None
    import cv2

    earlier = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return lambda: cv2.utils.logging.setLogLevel(earlier)


@contextlib.contextmanager
def native_stderr_silenced(silenced: bool) -> Iterator[None]:
    """Points file descriptor 2 at the null device inside the block, when `silenced`.

    TensorFlow's C++ runtime writes a few lines at import before any log level applies
    (absl's "All log messages before absl::InitializeLog()", oneDNN and CUDA notices); they
    go to the process's stderr descriptor, which `sys.stderr` redirection does not reach.
    Python's own `sys.stderr` is flushed first and works again after the block.

    Args:
        silenced: whether to silence; `False` runs the block unchanged.
    """
    if not silenced:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


# API argument names in messages -> the options (or files) a user of the command line types.
_OPTIONS: dict[str, str] = {
    "layer": "--layer",
    "layer_call": "--layer-call",
    "head": "--head",
    "batch_size": "--batch-size",
    "metrics": "--metrics",
    "class_names": "--class-names",
    "alpha": "--alpha",
    "colormap": "--colormap",
}
_VERB_OPTIONS: dict[str, dict[str, str]] = {
    "explain": {"targets": "--class", "methods": "--method"},
    "evaluate": {"targets": "the LABEL column of --labels", "labels": "--labels",
                 "boxes": "the X0,Y0,X1,Y1 columns of --labels", "methods": "--methods"},
}
# `name`, `name=value`, `name`=value (a quoted or bare value).
_ARGUMENT = re.compile(r"`(\w+)(?:=([^`]*))?`(?:=('[^']*'|[^\s,;)]*[^\s,;).]))?")
_CLASS = re.compile(r"`keras_cam\.(\w+)`")


def in_cli_words(message: str, args: argparse.Namespace) -> str:
    """Rewrites the Python API's argument names in `message` as the verb's options.

    `layer_call=` becomes `--layer-call`, `` `layer`='conv' `` becomes `--layer conv`,
    `` `layer=None` `` becomes `no --layer`, and `` `keras_cam.GradCAM` `` becomes
    `--method gradcam`; names the command line has no option for are left as they are.

    Args:
        message: an error message of keras_cam's Python API.
        args: the parsed command line (its `verb` picks the verb's words).

    Returns:
        The message in the command line's words.
    """
    options = {**_OPTIONS, **_VERB_OPTIONS.get(args.verb, {})}

    def option(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2) or match.group(3) or ""
        if name not in options:
            return match.group(0)
        value = value.strip("'\"")
        if value == "None":
            return f"no {options[name]}"
        return f"{options[name]} {value}" if value else options[name]

    message = _ARGUMENT.sub(option, message)
    if "methods" in options:  # the verbs that take methods, after the registry is imported
        from keras_cam.methods import METHODS

        names = {cls.__name__: name for name, cls in METHODS.items()}
        message = _CLASS.sub(
            lambda m: f"{options['methods']} {names[m.group(1)]}" if m.group(1) in names
            else m.group(0),
            message,
        )
    return message


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors are one line, like the runtime errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Builds the `keras-cam` argument parser with one sub-parser per verb.

    Returns:
        The parser; `parse_args` sets `handler`, the function that runs the chosen verb.
    """
    parser = _Parser(
        prog=PROG,
        description="Class activation maps for Keras image classifiers.",
        epilog="Run 'keras-cam VERB --help' for the options of a verb.\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {keras_cam.__version__}")
    verbs = parser.add_subparsers(title="verbs", dest="verb", required=True, metavar="VERB")
    _add_demo(verbs)
    _add_explain(verbs)
    _add_info(verbs)
    _add_evaluate(verbs)
    return parser


_EXIT_STATUS = (
    f"exit status: 0 done; {EXIT_BAD_INPUT} bad input (a malformed command line, a missing or "
    "unreadable file, an option the model cannot take), with one line on stderr saying why; "
    "130 interrupted."
)


def _verb(verbs: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """Adds the sub-parser of one verb, keeping the line breaks of its description."""
    return verbs.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# ================================================================================== demo
def _add_demo(verbs: Any) -> None:
    parser = _verb(
        verbs,
        "demo",
        "train a small CNN on built-in shapes and explain it with every method",
        "Generates the built-in shapes data, trains the demo CNN (GAP head) while logging\n"
        "heatmaps per epoch, explains held-out images with every registered method (those\n"
        "that run many passes per image with --all-methods), and\n"
        "writes into OUT: gallery.png, evaluation.md / evaluation.json (per-method time and\n"
        "quality), epochs/ (one PNG per epoch), logs/ (TensorBoard: heatmaps and loss\n"
        f"curves), model.keras and samples/ (held-out images to try 'keras-cam explain' on),\n"
        f"and {DEMO_MANIFEST}, the list of those files. A second run into the same OUT first\n"
        "deletes the files the manifest lists (and nothing else), so runs never mix.",
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo_output"),
                        help="output folder (default: %(default)s)")
    _add_training(parser, "training")
    parser.add_argument("--n-eval", type=_positive_int, default=32,
                        help="held-out images in the metrics table (default: %(default)s)")
    parser.add_argument("--n-gallery", type=_positive_int, default=6,
                        help="held-out images in the gallery (default: %(default)s)")
    parser.add_argument("--steps", type=_positive_int, default=METRIC_STEPS,
                        help="deletion/insertion steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--all-methods", action="store_true",
                        help="also the methods that run many passes per image (SS-CAM, IS-CAM, "
                             "Smooth Grad-CAM++), left out of the gallery and table by default")
    _add_verbose(parser)
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    """`keras-cam demo`: the whole pipeline on built-in data, written into `args.out`."""
    start = time.perf_counter()
    out: pathlib.Path = args.out
    before = _clear_previous_run(out)
    try:
        return _demo_run(args, out, start)
    finally:
        _write_manifest(out, before)


def _demo_run(args: argparse.Namespace, out: pathlib.Path, start: float) -> int:
    """The demo's pipeline, writing into the cleared folder `out`."""
    import keras

    from keras_cam import datasets
    from keras_cam.callbacks import HeatmapCallback
    from keras_cam.demo_model import train_demo_model
    from keras_cam.evaluation import evaluate
    from keras_cam.methods import METHODS
    from keras_cam.visualize import plot_cams, save_figure

    # Every registered method; those that cost many passes per image only when asked.
    methods = {
        name: cls for name, cls in METHODS.items() if args.all_methods or not cls.expensive
    }

    say = _printer(args.verbose)
    held_out = max(args.n_eval, args.n_gallery)
    # Images the model never sees: the training set is drawn with `seed`, these with `seed + 1`.
    images, labels, boxes = datasets.shapes(held_out, DEMO_IMAGE_SIZE, seed=args.seed + 1)

    heatmaps = HeatmapCallback(
        images[:DEMO_CALLBACK_IMAGES],
        methods=DEMO_CALLBACK_METHODS,
        log_dir=out / "logs",
        out_dir=out / "epochs",
        class_names=datasets.SHAPE_NAMES,
        boxes=boxes[:DEMO_CALLBACK_IMAGES],
    )
    say(f"Training the demo CNN on {args.n_train} shapes images "
        f"({DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE}) for {args.epochs} epochs...")
    model, _ = train_demo_model(
        epochs=args.epochs,
        n_train=args.n_train,
        image_size=DEMO_IMAGE_SIZE,
        seed=args.seed,
        verbose=args.verbose,
        # The loss curves, in the same logs/ as the heatmaps (steps: 0-based epochs).
        callbacks=[heatmaps, keras.callbacks.TensorBoard(out / "logs", write_graph=False)],
    )
    _, accuracy = model.evaluate(images, labels, verbose=0)
    say(f"Held-out accuracy: {accuracy:.1%} on {held_out} images.")
    model.save(out / "model.keras")
    io.write_class_names(out / io.CLASS_NAMES_FILE, datasets.SHAPE_NAMES)  # found by every verb
    samples = _write_samples(out / "samples", images[: args.n_gallery], labels)

    say(f"Explaining {args.n_gallery} held-out images with {len(methods)} methods...")
    gallery = images[: args.n_gallery]
    maps = {cls.display_name: cls(model, verbose=args.verbose)(gallery) for cls in methods.values()}
    probabilities = model.predict(gallery, verbose=0)
    predictions = np.argmax(probabilities, axis=-1)
    figure = plot_cams(
        gallery, maps, class_names=datasets.SHAPE_NAMES,
        labels=labels[: args.n_gallery], predictions=predictions, probabilities=probabilities,
    )
    save_figure(figure, out / "gallery.png")

    say(f"Evaluating {len(methods)} methods on {args.n_eval} held-out images...")
    table = evaluate(
        model, images[: args.n_eval], labels[: args.n_eval], boxes[: args.n_eval],
        methods=list(methods), metric_options=_steps_options(args.steps, None),
        verbose=min(args.verbose, 1),
    )
    _write_table(table, out / "evaluation.md", out / "evaluation.json")

    written = {
        out / "gallery.png": f"{args.n_gallery} held-out images x {len(methods)} methods",
        out / "evaluation.md": "the table above: time and quality of each method",
        out / "evaluation.json": "the same table as JSON",
        out / "epochs": f"heatmaps after each epoch ({', '.join(DEMO_CALLBACK_METHODS)})",
        out / "logs": f"TensorBoard heatmaps and loss curves: tensorboard --logdir {out / 'logs'}",
        out / "model.keras": f"the trained model: {PROG} info {out / 'model.keras'}",
        samples: f"held-out images: {PROG} explain {out / 'model.keras'} {samples}/*.png",
        out / DEMO_MANIFEST: "the files above, deleted by the next demo run into this folder",
    }
    print(table.to_markdown())
    print("\n" + table.summary())
    print(f"\n{PROG} demo finished in {time.perf_counter() - start:.0f} s. Written:")
    width = max(len(str(path)) for path in written)
    for path, what in written.items():
        print(f"  {str(path):<{width}}  {what}")
    return 0


def _clear_previous_run(out: pathlib.Path) -> set[pathlib.Path]:
    """Deletes the files an earlier demo run listed in `out`'s manifest, and only those.

    Returns:
        The files in `out` after clearing (not the demo's: left alone, never listed).

    Raises:
        ValueError: `out` holds demo outputs (`DEMO_OUTPUTS`) but no manifest: files the demo
            cannot tell it wrote, which it neither deletes nor mixes with a new run.
    """
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / DEMO_MANIFEST
    if manifest.is_file():
        root = out.resolve()
        listed = [out / name for name in json.loads(manifest.read_text())["files"]]
        listed = [path for path in listed if path.resolve().is_relative_to(root)]
        removed = [path for path in listed if path.is_file()]
        for path in removed:
            path.unlink()
        # The folders those files were in, deepest first, when nothing else is left in them.
        for folder in sorted({p.parent for p in listed if p.parent != out}, reverse=True):
            while folder != out and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        manifest.unlink()
        print(f"Cleared the previous demo run in {out}: deleted the {len(removed)} files its "
              f"{DEMO_MANIFEST} listed; files the demo did not write are left alone.", flush=True)
    else:
        clashes = [name for name in DEMO_OUTPUTS if (out / name).exists()]
        if clashes:
            raise ValueError(
                f"--out {out} already holds {', '.join(clashes)} but no {DEMO_MANIFEST}, so the "
                "demo cannot tell whether it wrote them and will neither delete them nor mix a "
                "new run with them. Delete them, or pass another --out."
            )
    return {path for path in out.rglob("*") if path.is_file()}


def _write_manifest(out: pathlib.Path, before: set[pathlib.Path]) -> None:
    """Lists in `out/DEMO_MANIFEST` every file the run wrote (those not in `before`)."""
    written = sorted(
        path.relative_to(out).as_posix()
        for path in out.rglob("*")
        if path.is_file() and path not in before
    )
    with atomic_writer(out / DEMO_MANIFEST) as file:
        file.write(json.dumps({"written_by": f"{PROG} demo", "files": written}, indent=1).encode())


def _write_samples(folder: pathlib.Path, images: np.ndarray, labels: np.ndarray) -> pathlib.Path:
    """Writes images in [0, 1] as `sample_<i>_<class name>.png` files; returns the folder."""
    from keras_cam import datasets
    from keras_cam.visualize import to_uint8_rgb

    folder.mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        write_png(folder / f"sample_{index}_{datasets.SHAPE_NAMES[label]}.png", to_uint8_rgb(image))
    return folder


# =============================================================================== explain
def _add_explain(verbs: Any) -> None:
    parser = _verb(
        verbs,
        "explain",
        "write heatmap overlays of images explained by a saved model",
        "Loads a .keras model (safe mode), reads the images with OpenCV, stretches them to the\n"
        "model's input size, preprocesses them, prints each image's top classes and writes\n"
        "one overlay PNG per image, method and class: OUT/<image>_<method>_class<N>[_<name>].png,\n"
        "at the image's own size (the map is stretched back exactly as the image was shrunk),\n"
        "with a caption: class name, probability, method.\n\n"
        "A .npy file holds one input in the model's own layout, already preprocessed and used\n"
        "as is: a signal (T, C) of a Conv1D model (drawn over its map), a volume\n"
        "(D, H, W, C) of a Conv3D model (a grid of overlaid slices) or an image.\n\n"
        "example:\n"
        "  keras-cam explain model.keras cat.jpg --method gradcam++,scorecam --top 2 \\\n"
        "      --preprocess resnet50 --out heatmaps\n"
        "  keras-cam explain ecg_model.keras beat.npy --method gradcam",
    )
    parser.add_argument("model", type=pathlib.Path, metavar="MODEL",
                        help="a .keras (or legacy .h5) model file")
    parser.add_argument("images", type=pathlib.Path, nargs="+", metavar="IMAGE",
                        help="image files OpenCV can read, .npy inputs in the model's layout, "
                             "or one folder or glob pattern (quoted), streamed into resumable "
                             "shards: OUT/manifest.json, OUT/shard-*.npz, "
                             "OUT/overlays/<method>/<index>.png")
    parser.add_argument("--batch-size", type=_positive_int, default=32,
                        help="images per batch and shard of a folder (default: %(default)s)")
    _add_methods(parser, "--method", EXPLAIN_DEFAULT_METHODS)
    parser.add_argument("--layer", help="layer to explain (default: automatic; see 'info')")
    _add_layer_call(parser)
    _add_head(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--class", dest="class_index", type=int, metavar="N",
                        help="explain class N for every image (default: its top class)")
    target.add_argument("--top", type=_positive_int, metavar="K",
                        help="explain each of the K most probable classes of every image")
    parser.add_argument("--normalize", choices=NORMALIZE_NAMES, default="image",
                        help="heatmap scale: 'image' stretches each map to the full colour "
                             "range; 'batch' shares one scale among the classes of an image "
                             "(--top), so a class of low probability gives a faint map; "
                             "'none' is raw (default: %(default)s)")
    _add_preprocess(parser)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("keras_cam_output"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--alpha", type=_unit_float, default=0.4,
                        help="heatmap weight in the overlay, 0-1 (default: %(default)s)")
    parser.add_argument("--colormap", type=_colormap, default="jet",
                        help="OpenCV colormap name, e.g. jet, turbo, viridis "
                             "(default: %(default)s)")
    parser.add_argument("--no-caption", dest="caption", action="store_false",
                        help="write the overlays without the caption (class name, probability, "
                             "method) along their top")
    _add_class_names(parser)
    _add_output(parser)
    _add_unsafe(parser)
    _add_verbose(parser)
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    """`keras-cam explain`: overlays of each image, method and explained class."""
    from keras_cam.surgery import read_head

    if len(args.images) == 1 and _is_folder_or_glob(args.images[0]):
        return _explain_folder(args)
    model = _load_model(args.model, args.unsafe, args.output)
    preprocessing = _preprocessing(model, args.preprocess)
    methods = _methods(args.method, EXPLAIN_DEFAULT_METHODS, "--method")
    head = read_head(model, args.head)  # read once: an unsure reading warns once
    explainers = {
        name: cls(model, args.layer, layer_call=args.layer_call, head=head, verbose=args.verbose)
        for name, cls in methods.items()
    }
    # Any explainer predicts: they all read the same head of the same model.
    predictor = next(iter(explainers.values()))
    num_classes = predictor.num_classes
    names = _class_names(args, num_classes)
    if args.class_index is not None and not 0 <= args.class_index < num_classes:
        raise ValueError(
            f"--class {args.class_index} is out of range: the model has {num_classes} classes "
            f"(0 to {num_classes - 1})."
        )
    if args.top is not None and args.top > num_classes:
        raise ValueError(f"--top {args.top} exceeds the model's {num_classes} classes.")
    originals, batches = [], []
    for path in args.images:
        original, batch = _read_input(path, predictor, preprocessing)
        originals.append(original)
        batches.append(batch)
    for path, batch in zip(args.images, batches):  # every image, before any prediction
        _check_pixels(model, batch, path)
    shown = max(min(5, num_classes), args.top or 0)
    for path, stem, original, batch in zip(
        args.images, _unique_stems(args.images), originals, batches
    ):
        probabilities = predictor.predict(batch)[0]
        ranking = np.argsort(-probabilities, kind="stable")
        print(f"{path}: top classes " + ", ".join(
            f"{_class_label(index, names)} ({probabilities[index]:.3f})"
            for index in ranking[:shown]
        ))
        if args.class_index is not None:
            classes = [args.class_index]
        else:
            classes = [int(index) for index in ranking[: args.top or 1]]
        repeated = np.repeat(batch, len(classes), axis=0)
        for name, cam in explainers.items():
            maps = cam(repeated, targets=classes, normalize=args.normalize)
            for class_index, heatmap in zip(classes, maps):
                suffix = "" if names is None else f"_{_slug(names[class_index])}"
                target = args.out / f"{stem}_{_slug(name)}_class{class_index}{suffix}.png"
                caption = (
                    f"{_class_label(class_index, names)} {probabilities[class_index]:.3f} - "
                    f"{cam.display_name}"
                ) if args.caption else None
                _save_explanation(target, original, heatmap, args, caption)
                print(f"  wrote {target}")
    return 0


def _fit_notices(
    path: pathlib.Path, original: tuple[int, int], resized: tuple[int, int], channels: int
) -> list[str]:
    """What fitting the image to the model changed: its aspect ratio, its channels."""
    notices = []
    (height, width), (new_height, new_width) = original, resized
    if abs(height * new_width - width * new_height) > max(height, width):  # beyond one pixel
        notices.append(
            f"stretched from {width}x{height} to the model's {new_width}x{new_height} (aspect "
            f"ratio changed); the overlay maps the heatmap back onto the {width}x{height} image"
        )
    stored = io.image_channels(path)
    if channels == 3 and stored in (1, 2):
        notices.append("a grayscale image, converted to RGB for the model")
    elif channels == 3 and stored == 4:
        notices.append("an RGBA image, its alpha channel dropped for the model")
    elif channels == 1 and stored >= 3:
        notices.append("a colour image, converted to grayscale for the model")
    return notices


def _read_input(path: pathlib.Path, cam: BaseCAM, preprocessing: str) -> tuple[np.ndarray, Any]:
    """`(shown, batch)` of one explained file: what the drawing shows (channels-last) and
    the model's batch of one. An image file is read at its own size (shown so), resized to the
    model's input (`io.resize_image`) and preprocessed; a `.npy` file is one input in the
    model's own layout, used as is."""
    if path.suffix.lower() != ".npy":
        if len(cam.image_shape) != 3:
            kind = "signals" if len(cam.image_shape) == 2 else "volumes"
            raise ValueError(
                f"{path} is an image file, but the model takes {kind} of shape "
                f"{cam.input_shape}: save each input as a .npy file in the model's own layout."
            )
        height, width, channels = cam.image_shape
        original = io.read_image(path, (None, None, channels))[0]
        rgb = io.resize_image(original, (height, width))
        for notice in _fit_notices(path, original.shape[:2], rgb.shape[:2], channels):
            print(f"{path}: {notice}")
        batch = io.to_data_format(_preprocess(rgb[np.newaxis], preprocessing), cam.data_format)
        return original, batch
    array = np.load(path, allow_pickle=False)
    expected = cam.input_shape
    if array.ndim != len(expected) or any(
        size is not None and size != got for size, got in zip(expected, array.shape)
    ):
        raise ValueError(
            f"{path} holds an array of shape {array.shape}, but the model takes one input of "
            f"shape {expected} ({cam.data_format}): save one preprocessed input in the "
            "model's own layout, without a batch axis."
        )
    batch = array[np.newaxis].astype(np.float32)
    shown = np.moveaxis(batch[0], 0, -1) if cam.data_format == "channels_first" else batch[0]
    return shown, batch


def _save_explanation(
    target: pathlib.Path,
    shown: np.ndarray,
    heatmap: np.ndarray,
    args: argparse.Namespace,
    caption: str | None,
) -> None:
    """Writes a map over what it explains: an image's overlay at the image's own size (the
    model-size map stretched back, the inverse of `io.resize_image`) with its caption, a signal
    drawn over its map, a volume's overlaid slices in a grid."""
    from keras_cam.visualize import (
        overlay,
        plot_signal_cam,
        resize_heatmap,
        save_figure,
        save_overlay,
        slice_grid,
    )

    alpha, colormap = args.alpha, args.colormap
    if heatmap.ndim == 2 and shown.dtype == np.uint8:
        full_size = resize_heatmap(heatmap, shown.shape[:2])
        save_overlay(target, shown, full_size, alpha=alpha, colormap=colormap, caption=caption)
        return
    if heatmap.ndim == 1:
        figure = plot_signal_cam(shown, heatmap, colormap=colormap, title=target.stem)
        save_figure(figure, target)
        import matplotlib.pyplot as plt

        plt.close(figure)
        return
    gray = shown.mean(axis=-1)  # an array of any scale, shown by its range
    span = float(gray.max() - gray.min())
    gray = (gray - gray.min()) / span if span > 0 else np.zeros_like(gray)
    blended = overlay(gray, heatmap, alpha=alpha, colormap=colormap)
    write_png(target, slice_grid(blended) if heatmap.ndim == 3 else blended)


def _is_folder_or_glob(path: pathlib.Path) -> bool:
    return path.is_dir() or any(char in str(path) for char in "*?[")


def _folder_stream(
    model: keras.Model, rows: list[Any], preprocessing: str, batch_size: int, source: Any
) -> Iterator[Any]:
    """The images of `rows` read batch by batch (`io.read_image_batches`) in the model's
    layout, each batch's pixels checked against the model's input."""
    image_shape, layout = io.input_layout(model)
    if None in image_shape[:2]:
        raise ValueError(
            f"the model takes images of any size {image_shape}; a folder is read in batches of "
            "one size: save the model with a fixed input size."
        )
    for batch in io.read_image_batches(rows, image_shape, preprocessing, batch_size):
        parts = batch if isinstance(batch, tuple) else (batch,)
        _check_pixels(model, parts[0], source)
        yield (io.to_data_format(parts[0], layout), *parts[1:])


def _explain_folder(args: argparse.Namespace) -> int:
    """`keras-cam explain MODEL DIR_OR_GLOB`: streams the images into resumable shards."""
    from keras_cam.streaming import explain_dataset
    from keras_cam.surgery import read_head

    if args.top is not None:
        raise ValueError("--top explains several classes per image: a folder or glob explains "
                         "one (its top class, or --class N); give image files for --top.")
    model = _load_model(args.model, args.unsafe, args.output)
    preprocessing = _preprocessing(model, args.preprocess)
    head = read_head(model, args.head)  # read once: an unsure reading warns once
    explainers = {
        name: cls(model, args.layer, layer_call=args.layer_call, head=head)
        for name, cls in _methods(args.method, EXPLAIN_DEFAULT_METHODS, "--method").items()
    }
    paths = io.image_paths(args.images[0])
    manifest = explain_dataset(
        explainers,
        _folder_stream(model, [(p, None, None) for p in paths], preprocessing, args.batch_size,
                       args.images[0]),
        targets=args.class_index, batch_size=args.batch_size, out_dir=args.out,
        overlays={"alpha": args.alpha, "colormap": args.colormap}, verbose=min(args.verbose, 1),
        metadata={"files": [str(path) for path in paths], "preprocess": preprocessing},
    )
    print(f"explained {manifest['num_images']} images: {args.out / 'manifest.json'}")
    return 0


# ================================================================================== info
def _add_info(verbs: Any) -> None:
    parser = _verb(
        verbs,
        "info",
        "show the layers a saved model can be explained at, and its head",
        "Prints the model's input shape and classes, whether its head is\n"
        "conv -> GlobalAveragePooling2D -> Dense (so CAM applies), the automatic layer\n"
        "choice and every layer with a spatial output (what --layer accepts).",
    )
    parser.add_argument("model", type=pathlib.Path, metavar="MODEL",
                        help="a .keras (or legacy .h5) model file")
    parser.add_argument("--layer", help="a layer to check and mark (default: show the "
                                        "automatic choice)")
    _add_head(parser)
    _add_class_names(parser)
    _add_output(parser)
    parser.add_argument(
        "--input", metavar="NAME|INDEX",
        help="the explained input of a model with several, by name or index: the layers its "
             "values reach (default: the only input; with several, the error lists them)",
    )
    _add_unsafe(parser)
    _add_verbose(parser)
    parser.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    """`keras-cam info`: input, classes, head type and the explainable layers."""
    from keras_cam.surgery import (
        find_conv_layer,
        find_gap_head,
        read_head,
        resolve_layer,
        select_input,
        spatial_layers,
    )

    model = _load_model(args.model, args.unsafe, args.output, args.input)
    explained = select_input(model, _name_or_index(args.input))
    reading = read_head(model, args.head)
    names = _class_names(args, reading.num_classes)
    chosen = None if args.layer is None else resolve_layer(model, args.layer, input=explained)
    try:
        automatic = find_conv_layer(model, input=explained)
        choice_text = f"{automatic.name} (automatic)"
    except ValueError as error:
        automatic, choice_text = None, f"none: {_one_line(error)} Pass --layer."
    if chosen is not None:
        choice_text = f"{chosen.name} (--layer)"
    try:
        head = find_gap_head(model, reading)
        head_text = (
            f"conv -> GlobalAveragePooling2D -> Dense: CAM applies (pooled layer "
            f"{head.features.name!r}, classifier {head.dense.name!r})"
        )
    except ValueError:
        head_text = (
            "not conv -> GlobalAveragePooling2D -> Dense: CAM does not apply, the other "
            "methods do (keras_cam.retrofit_gap builds a GAP head on the conv base)"
        )
    candidates = spatial_layers(model)
    width = max((len(path) for path, _ in candidates), default=0)
    print(f"model        {model.name} ({args.model})")
    print(f"input shape  {tuple(model.inputs[explained].shape[1:])}")
    print(f"classes      {reading.num_classes} ({reading.kind} output)")
    if names is not None:
        shown = ", ".join(_class_label(index, names) for index in range(min(len(names), 10)))
        print(f"class names  {shown}{', ...' if len(names) > 10 else ''}")
    print(f"head read    {reading.description} (--head states it)")
    print(f"head         {head_text}")
    print(f"explained    {choice_text}")
    print("\nLayers you can explain (--layer NAME), from input to output:")
    for path, layer in candidates:
        marker = "   <- automatic choice" if layer is automatic else ""
        marker += "   <- --layer" if layer is chosen else ""
        print(f"  {path:<{width}}  {tuple(layer.output.shape)}{marker}")
    return 0


# ============================================================================== evaluate
def _add_evaluate(verbs: Any) -> None:
    parser = _verb(
        verbs,
        "evaluate",
        "compare methods with faithfulness and localization metrics",
        "Evaluates CAM methods on a saved model and a folder of images, or with --builtin on\n"
        "held-out built-in shapes images with ground-truth boxes (with the model MODEL, else\n"
        f"{DEMO_MODEL} when it exists, else a demo model trained now), and prints one\n"
        "Markdown row per method.\n\n"
        "The --labels file is CSV, one image per row: FILE,LABEL or FILE,LABEL,X0,Y0,X1,Y1\n"
        "(FILE relative to IMAGES_DIR; the box in the image's own pixels, X1/Y1 exclusive).\n"
        "With it, exactly the listed images are evaluated for their labels; without it,\n"
        "every image in the folder (or matching a quoted glob) for its top class.\n\n"
        "The folder is streamed: images are read, resized and scored --batch-size at a time\n"
        "(every metric computed batch by batch, with a progress bar unless --verbose 0), so\n"
        "memory holds one batch whatever the folder's size.\n\n"
        "examples:\n"
        "  keras-cam evaluate model.keras images/ --labels labels.csv --json table.json\n"
        "  keras-cam evaluate model.keras 'val/*.png' --batch-size 64 --verbose 0\n"
        "  keras-cam evaluate --builtin --n 64 --methods all",
    )
    parser.add_argument("model", type=pathlib.Path, nargs="?", metavar="MODEL",
                        help="a .keras (or legacy .h5) model file (optional with --builtin)")
    parser.add_argument("images_dir", type=pathlib.Path, nargs="?", metavar="IMAGES_DIR",
                        help="folder of images, or a quoted glob pattern without --labels "
                             "(not with --builtin)")
    parser.add_argument("--labels", type=pathlib.Path, metavar="FILE",
                        help="CSV of FILE,LABEL[,X0,Y0,X1,Y1] rows (see above)")
    parser.add_argument("--builtin", action="store_true",
                        help="use held-out built-in shapes images with boxes instead of a folder")
    parser.add_argument("--n", type=_positive_int, default=64,
                        help="built-in images to evaluate (default: %(default)s)")
    _add_training(parser, "with --builtin and no MODEL, demo model training")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    _add_methods(parser, "--methods", EVALUATE_DEFAULT_METHODS)
    parser.add_argument("--metrics", action="append", metavar="NAME[,NAME...]",
                        help="metrics to compute, repeatable or comma-separated, from: "
                             + ", ".join(_registered("keras_cam.metrics", "METRICS", registry.METRIC_FUNCTIONS))
                             + " (default: all that apply)")
    parser.add_argument("--layer", help="layer every method explains (default: automatic)")
    _add_layer_call(parser)
    _add_head(parser)
    _add_output(parser)
    parser.add_argument("--steps", type=_positive_int, default=METRIC_STEPS,
                        help="deletion/insertion steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=_positive_int, default=32,
                        help="images read from the folder at a time, per method call and per "
                             "model call of a metric (default: %(default)s)")
    _add_preprocess(parser)
    parser.add_argument("--json", type=pathlib.Path, metavar="PATH",
                        help="also write the table as JSON to PATH")
    _add_class_names(parser)
    _add_unsafe(parser)
    _add_verbose(parser)
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    """`keras-cam evaluate`: the metrics table of a model on a folder or built-in images.

    A folder (or glob) is streamed: its files are read, resized and preprocessed batch by
    batch (`_folder_stream`, as `explain` reads a folder), with the labels and boxes of
    `--labels` joined per file, into `keras_cam.evaluate`, which computes every metric batch
    by batch; memory holds a batch, whatever the folder's size. `--builtin` evaluates its
    arrays in memory. Both print the same report (`EvaluationTable.to_report`).
    """
    from keras_cam.evaluation import evaluate
    from keras_cam.surgery import read_head

    metrics = None if args.metrics is None else _split_names(args.metrics)
    if args.builtin:
        if args.images_dir is not None or args.labels is not None:
            raise ValueError("--builtin evaluates built-in images: give no IMAGES_DIR or --labels.")
        model, images, labels, boxes, source = _builtin_data(args)
        _check_box_metrics(metrics, has_boxes=True)
    else:
        if args.model is None or args.images_dir is None:
            raise ValueError("give MODEL and IMAGES_DIR, or --builtin (see 'keras-cam evaluate "
                             "--help').")
        model, source = _load_model(args.model, args.unsafe, args.output), str(args.model)
        rows = _evaluated_files(args, read_head(model, args.head).num_classes)
        _check_box_metrics(metrics, has_boxes=rows[0][2] is not None)
        images = _folder_stream(
            model, rows, _preprocessing(model, args.preprocess), args.batch_size, args.images_dir
        )
        labels = boxes = None  # joined per file into the stream's elements
    table = evaluate(
        model,
        images,
        labels,
        boxes,
        methods=list(_methods(args.methods, EVALUATE_DEFAULT_METHODS, "--methods").values()),
        metrics=metrics,
        layer=args.layer,
        layer_call=args.layer_call,
        batch_size=args.batch_size,
        metric_options=_steps_options(args.steps, metrics),
        head=args.head,
        verbose=min(args.verbose, 1),
    )
    print(table.to_report(source))
    print("\n" + table.summary())
    if args.json is not None:
        _write_table(table, None, args.json)
        print(f"wrote {args.json}")
    return 0


def _evaluated_files(args: argparse.Namespace, num_classes: int) -> list[io.LabelRow]:
    """The `(path, label, box)` rows `evaluate` streams: those of `--labels` (files relative
    to IMAGES_DIR, a folder), else every image of IMAGES_DIR (a folder or a quoted glob) with
    no label or box.

    Raises:
        FileNotFoundError: no such folder or labels file, or a listed image missing (checked
            for every row before any image is read).
        ValueError: IMAGES_DIR is an image file, or a glob with `--labels`; unusable labels
            (the file and line named, see `io.read_labels`).
    """
    source: pathlib.Path = args.images_dir
    if source.is_file():
        raise ValueError(
            f"{source} is a file, not a folder: give the folder of images (IMAGES_DIR), or a "
            "quoted glob pattern such as 'images/*.png'."
        )
    if args.labels is None:
        return [(path, None, None) for path in io.image_paths(source)]
    if _is_folder_or_glob(source) and not source.is_dir():
        raise ValueError(
            f"--labels lists files relative to IMAGES_DIR, a folder; {source} is a glob pattern: "
            "give the folder the labels file's FILE column is relative to."
        )
    if not source.is_dir():
        raise FileNotFoundError(f"image folder not found: {source}")
    rows = io.read_labels(args.labels, source, num_classes)
    missing = [path for path, _, _ in rows if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"image file not found: {missing[0]}, listed in {args.labels}"
            + (f" ({len(missing) - 1} more listed files are missing)" if len(missing) > 1 else "")
        )
    return rows


def _check_box_metrics(metrics: Sequence[str] | None, has_boxes: bool) -> None:
    """Refuses `--metrics` that need boxes when the labels file gives none, naming its columns."""
    from keras_cam.metrics import BOX_METRICS

    needing = [name for name in metrics or () if name in BOX_METRICS]
    if needing and not has_boxes:
        raise ValueError(
            f"--metrics {','.join(needing)} compare the maps with ground-truth boxes: give "
            "--labels FILE whose rows are FILE,LABEL,X0,Y0,X1,Y1 (the box in the image's own "
            "pixels, X1/Y1 exclusive), or --builtin."
        )


def _builtin_data(
    args: argparse.Namespace,
) -> tuple[keras.Model, np.ndarray, np.ndarray, np.ndarray, str]:
    """The model (MODEL, the demo's saved one, or one trained now), held-out shapes with boxes,
    and where the model came from, in words.

    The shapes (floats in [0, 1]) become 8-bit pixel values and go through the model's
    preprocessing, as the images of a folder do.
    """
    from keras_cam import datasets
    from keras_cam.demo_model import train_demo_model
    from keras_cam.surgery import read_head

    say = _printer(args.verbose)
    if args.model is not None:
        model = _load_model(args.model, args.unsafe)
        source = str(args.model)
    elif DEMO_MODEL.is_file():
        model = _load_model(DEMO_MODEL, args.unsafe)
        source = f"{DEMO_MODEL} (the model 'keras-cam demo' saved; pass MODEL for another)"
    else:
        say(f"No MODEL and no {DEMO_MODEL}: training the demo CNN for {args.epochs} epochs "
            "(run 'keras-cam demo' once to keep one)...")
        model, _ = train_demo_model(
            epochs=args.epochs, n_train=args.n_train, image_size=DEMO_IMAGE_SIZE,
            seed=args.seed, verbose=args.verbose,
        )
        source = "the demo CNN trained now"
    preprocessing = _preprocessing(model, args.preprocess)  # refuses scaling raw-pixel input
    (height, width, channels), layout = io.input_layout(model)
    classes = read_head(model, args.head).num_classes
    if height is None or height != width or channels != 3 or not 2 <= classes <= len(
        datasets.SHAPE_NAMES
    ):
        raise ValueError(
            f"--builtin needs a model of square RGB images with 2 to {len(datasets.SHAPE_NAMES)} "
            f"classes (the built-in shapes: pixels in [0, 1], or 0-255 for an integer input); "
            f"{args.model} takes {tuple(model.inputs[0].shape[1:])} and has {classes} classes."
        )
    shapes, labels, boxes = datasets.shapes(
        args.n, height, seed=args.seed + 1, num_classes=classes
    )
    pixels = shapes * 255.0
    if preprocessing == "none":  # a model of raw pixels takes the shapes as 8-bit pixels
        pixels = np.round(pixels)
    images = _preprocess(pixels.astype(np.float32), preprocessing)
    _check_pixels(model, images, "--builtin")
    images = io.to_data_format(images, layout)
    accuracy = float(np.mean(np.argmax(model.predict(images, verbose=0), axis=-1) == labels))
    say(f"Model: {source}; accuracy {accuracy:.1%} on the {args.n} built-in images evaluated.")
    return model, images, labels, boxes, source


# ======================================================================= shared options
def _add_methods(parser: argparse.ArgumentParser, flag: str, default: Sequence[str]) -> None:
    parser.add_argument(
        flag, action="append", metavar="NAME[,NAME...]",
        help=f"method(s), repeatable or comma-separated, or '{ALL_METHODS}': "
             f"{', '.join(_registered('keras_cam.methods', 'METHODS', registry.METHOD_CLASSES))} "
             f"(default: {','.join(default)})",
    )


def _registered(module: str, name: str, built_in: Iterable[str]) -> tuple[str, ...]:
    """The names of registry `name` of `module`: the live registry when the module is already
    imported (so a method or metric registered at run time is listed), else the built-in
    names (`keras_cam.registry`), never importing it (`--help` stays without TensorFlow)."""
    loaded = sys.modules.get(module)
    return tuple(built_in if loaded is None else getattr(loaded, name))


def _add_training(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument("--epochs", type=_positive_int, default=DEMO_EPOCHS,
                        help=f"{purpose} epochs (default: %(default)s)")
    parser.add_argument("--n-train", type=_positive_int, default=DEMO_TRAIN_IMAGES,
                        help=f"{purpose} images (default: %(default)s)")


def _add_layer_call(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer-call", type=int, metavar="I",
                        help="which call of a layer the model calls several times (e.g. on an "
                             "image and on its flip) to explain, from 0 (default: refuse such "
                             "a layer, listing its calls)")


def _add_preprocess(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preprocess", choices=list(PREPROCESSING), default=None,
        help="how RGB pixels 0-255 become model input: scale01 divides by 255, none keeps "
             "them, the others are keras.applications.<name>.preprocess_input (default: none "
             "for a model whose input is integer or bool, e.g. uint8 -> Rescaling, which "
             f"takes the raw pixels; {io.DEFAULT_PREPROCESSING} otherwise)",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", metavar="NAME|INDEX",
        help="the output to explain of a model with several, by name or index (default: the "
             "only output; with several, the error lists them)",
    )


def _name_or_index(value: str | None) -> str | int | None:
    """A `--output` / `--input` value: an index when it is a number, else a name."""
    return int(value) if value is not None and value.lstrip("-").isdigit() else value


def _add_head(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--head", choices=HEAD_NAMES, default=None,
        help="how to read the model's output: softmax/sigmoid probabilities, logits "
             "(pre-softmax; one unit: a binary logit), sigmoid_logits (multi-label), or linear "
             "(raw scores, e.g. regression) (default: read from the model; it warns when unsure)",
    )


def _add_unsafe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unsafe", action="store_true",
        help="load with safe_mode=False (allows Lambda layers; runs code stored in the file: "
             "only for files you trust)",
    )


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=1, nargs="?", const=LIBRARY_LOGS_LEVEL,
        metavar="{0,1,2}",
        help="progress output: 0 none, 1 progress bars, 2 one line per epoch or pass, and "
             "TensorFlow's and OpenCV's own log lines (hidden otherwise); --verbose alone "
             "means 2 (default: 1)",
    )


def _add_class_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--class-names", metavar="NAMES",
        help="class names, index 0 first: a text file of one name per line, a comma-separated "
             f"list, or '{io.IMAGENET}' (ImageNet-1k, for keras.applications models) (default: "
             f"{io.CLASS_NAMES_FILE} next to the model, as 'keras-cam demo' writes it, else "
             "class indices)",
    )


def _unit_float(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _colormap(text: str) -> str:
    """argparse type: an OpenCV colormap name (case-insensitive)."""
    names = colormap_names()
    if text.lower() not in names:
        raise argparse.ArgumentTypeError(f"unknown colormap {text!r}; known: {', '.join(names)}")
    return text.lower()


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


# ============================================================================== helpers
def _one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace runs, newlines included, become a space)."""
    return " ".join(str(error).split()) or type(error).__name__


def _printer(verbose: int) -> Callable[[str], None]:
    """`print` when `verbose` > 0, else a function that prints nothing."""
    return (lambda text: print(text, flush=True)) if verbose else (lambda text: None)


def _class_names(args: argparse.Namespace, num_classes: int) -> tuple[str, ...] | None:
    """The names of `--class-names`, else of `class_names.txt` next to MODEL, else `None`.

    Raises:
        ValueError: unreadable names, or not one name per class of the model.
    """
    if args.class_names is not None:
        try:
            names = io.read_class_names(args.class_names)
        except (ValueError, OSError) as error:
            raise ValueError(f"--class-names: {_one_line(error)}") from error
        source = f"--class-names {args.class_names}"
    elif getattr(args, "model", None) is not None and io.model_class_names(args.model) is not None:
        names = io.model_class_names(args.model)
        source = str(args.model.parent / io.CLASS_NAMES_FILE)
    else:
        return None
    if len(names) != num_classes:
        raise ValueError(
            f"{source} gives {len(names)} class names, but the model has {num_classes} classes: "
            "give one name per class, in class-index order (--class-names)."
        )
    return names


def _class_label(index: int, names: Sequence[str] | None) -> str:
    """`"281 tabby"` with names, else `"281"`."""
    return str(index) if names is None else f"{index} {names[index]}"


def _load_model(
    path: pathlib.Path, unsafe: bool, output: str | None = None, input: str | None = None
) -> keras.Model:
    """`io.load_model`, warning on stderr about `--unsafe` and pointing at it when needed;
    `output` / `input` as `--output` / `--input` give them (names or indices)."""
    if unsafe:
        print(
            f"{PROG}: warning: --unsafe loads {path} with safe_mode=False, which runs code "
            "stored in the file; use it only for files you trust.",
            file=sys.stderr,
        )
    try:
        return io.load_model(
            path, safe_mode=not unsafe, output=_name_or_index(output), input=_name_or_index(input)
        )
    except ValueError as error:
        if unsafe or "safe_mode" not in str(error):
            raise
        raise ValueError(f"{_one_line(error)} (see --unsafe)") from error


def _preprocessing(model: keras.Model, name: str | None) -> str:
    """The `--preprocess` of `model`: `name`, or `io.default_preprocessing` when not given.

    A model whose input is integer or bool takes the raw pixels (`none`); any other
    preprocessing scales them into values its cast truncates, so it is refused here, before
    any image is read or predicted.
    """
    from keras_cam.surgery import input_dtype

    default = io.default_preprocessing(model)
    if name is None:
        return default
    if default != "none" or name == "none":  # a float input takes any; raw pixels stay raw
        return name
    dtype = input_dtype(model)
    raise ValueError(
        f"--preprocess {name} changes the pixels, but model {model.name!r} takes {dtype} "
        f"images: the raw pixels 0-255, which it scales itself (e.g. with Rescaling); its cast "
        f"to {dtype} would truncate the changed values. Pass --preprocess none (this model's "
        "default), or leave --preprocess out."
    )


def _check_pixels(model: keras.Model, images: np.ndarray, source: Any) -> None:
    """Refuses images `model` cannot hold (see `check_input_values`), naming their `source`."""
    from keras_cam.surgery import check_input_values

    try:
        check_input_values(images, model.inputs[0].dtype, model.name)
    except ValueError as error:
        raise ValueError(
            f"{source}: {_one_line(error)} The command line gives a model whose input is "
            "integer or bool the image's 8-bit pixels, 0-255 (--preprocess none); explain "
            "this one from Python, with images of values its input holds."
        ) from error


def _preprocess(pixels: np.ndarray, name: str) -> np.ndarray:
    """`io.preprocess`, its error naming the `--preprocess` option."""
    try:
        return io.preprocess(pixels, name)
    except ValueError as error:
        raise ValueError(f"--preprocess {name}: {_one_line(error)}") from error


def _split_names(values: Sequence[str]) -> list[str]:
    """Flattens repeated and comma-separated option values into a list of names."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _methods(
    values: Sequence[str] | None, default: Sequence[str], flag: str
) -> dict[str, type[BaseCAM]]:
    """`{registry name: class}` for `--method(s)` values (see `resolve_methods`)."""
    from keras_cam.methods import resolve_methods

    return resolve_methods(_split_names(values) if values else list(default), flag)


def _steps_options(steps: int, metrics: Sequence[str] | None) -> dict[str, dict[str, int]]:
    """`metric_options` setting the steps of deletion and insertion, where they are computed."""
    curves = ("deletion", "insertion")
    return {name: {"steps": steps} for name in curves if metrics is None or name in metrics}


def _write_table(
    table: EvaluationTable, markdown: pathlib.Path | None, json_path: pathlib.Path | None
) -> None:
    """Writes the table's Markdown report (`EvaluationTable.to_report`) with its verdict
    (`EvaluationTable.summary`) and/or JSON atomically."""
    report = table.to_report() + "\n\n" + table.summary()
    for path, text in ((markdown, report), (json_path, table.to_json())):
        if path is not None:
            with atomic_writer(path) as file:
                file.write((text + "\n").encode("utf-8"))


def _unique_stems(paths: Sequence[pathlib.Path]) -> list[str]:
    """File stems for the outputs; repeated stems get their position as a prefix."""
    stems = [path.stem for path in paths]
    return [stem if stems.count(stem) == 1 else f"{i}_{stem}" for i, stem in enumerate(stems)]


def _slug(name: str) -> str:
    """A name fit for a file name: `gradcam++` -> `gradcampp`, `Egyptian cat` -> `egyptian_cat`."""
    return re.sub(r"[^a-z0-9]+", "_", name.replace("+", "p").lower()).strip("_") or "_"

