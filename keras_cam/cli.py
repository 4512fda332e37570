"""The `keras-cam` command line: `demo`, `explain`, `info` and `evaluate`.

Every verb has `--help`. Errors in the input (a missing file, an unreadable image, a file that
is not a Keras model, an unknown method or layer, a class out of range) end the command with
one line on stderr, `keras-cam: error: ...`, and exit status 1 (2 for a malformed command
line), never a traceback.

Examples:
```bash
keras-cam demo --out demo_output                  # train, explain, gallery, metrics table
keras-cam info model.keras                        # layers, automatic choice, head type
keras-cam explain model.keras cat.jpg dog.jpg --method gradcam++,scorecam --top 2 \\
    --preprocess resnet50 --out heatmaps
keras-cam evaluate model.keras images/ --labels labels.csv --methods gradcam,gradcam++
keras-cam evaluate --builtin --n 64 --json evaluation.json
```
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import keras
import numpy as np

from keras_cam import datasets, io
from keras_cam._files import atomic_writer, write_png
from keras_cam.callbacks import HeatmapCallback
from keras_cam.demo_model import train_demo_model
from keras_cam.evaluation import DEFAULT_METHODS, EvaluationTable, evaluate
from keras_cam.io import PREPROCESSING
from keras_cam.methods import ALL, METHODS, BaseCAM, resolve_methods
from keras_cam.metrics import METRICS
from keras_cam.surgery import (
    HEADS,
    check_input_values,
    find_conv_layer,
    find_gap_head,
    input_dtype,
    read_head,
    resolve_layer,
    spatial_layers,
)
from keras_cam.visualize import (
    colormap_names,
    plot_cams,
    save_figure,
    save_overlay,
    to_uint8_rgb,
)

PROG = "keras-cam"

EXPLAIN_DEFAULT_METHODS = ("gradcam++",)
DEMO_IMAGE_SIZE = 64
DEMO_EPOCHS = 5
DEMO_TRAIN_IMAGES = 1536
DEMO_CALLBACK_METHODS = ("gradcam", "gradcam++")
DEMO_CALLBACK_IMAGES = 4
METRIC_STEPS = 20
"""Deletion/insertion steps used by `demo` and `evaluate` unless `--steps` says otherwise."""

# ============================================================================ entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `keras-cam` command line.

    Args:
        argv: the arguments after the program name; `None` reads `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 1 when the input is unusable (the reason is printed
        on stderr as one line), 2 for a malformed command line, 130 when interrupted.

    Example:
    ```python
    from keras_cam.cli import main
    main(["info", "model.keras"])   # 0
    ```
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # `--help` (status 0) or a usage error, already printed
        return 0 if exit_.code is None else int(exit_.code)
    # TensorFlow's retracing notices, logged when several explainers each trace their own
    # functions, are noise on a command line; the level is restored for in-process callers.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        return args.handler(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        tf_logger.setLevel(level)


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors are one line, like the runtime errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Builds the `keras-cam` argument parser with one sub-parser per verb.

    Returns:
        The parser; `parse_args` sets `handler`, the function that runs the chosen verb.
    """
    parser = _Parser(
        prog=PROG,
        description="Class activation maps for Keras image classifiers.",
        epilog="Run 'keras-cam VERB --help' for the options of a verb.",
    )
    verbs = parser.add_subparsers(title="verbs", dest="verb", required=True, metavar="VERB")
    _add_demo(verbs)
    _add_explain(verbs)
    _add_info(verbs)
    _add_evaluate(verbs)
    return parser


def _verb(verbs: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """Adds the sub-parser of one verb, keeping the line breaks of its description."""
    return verbs.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# ================================================================================== demo
def _add_demo(verbs: Any) -> None:
    parser = _verb(
        verbs,
        "demo",
        "train a small CNN on built-in shapes and explain it with every method",
        "Generates the built-in shapes data, trains the demo CNN (GAP head) while logging\n"
        "heatmaps per epoch, explains held-out images with every registered method, and\n"
        "writes into OUT: gallery.png, evaluation.md / evaluation.json (per-method time and\n"
        "quality), epochs/ (one PNG per epoch), logs/ (TensorBoard), model.keras and\n"
        "samples/ (held-out images to try 'keras-cam explain' on).",
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
    _add_verbose(parser)
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    """`keras-cam demo`: the whole pipeline on built-in data, written into `args.out`."""
    start = time.perf_counter()
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
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
        callbacks=[heatmaps],
    )
    _, accuracy = model.evaluate(images, labels, verbose=0)
    say(f"Held-out accuracy: {accuracy:.1%} on {held_out} images.")
    model.save(out / "model.keras")
    samples = _write_samples(out / "samples", images[: args.n_gallery], labels)

    say(f"Explaining {args.n_gallery} held-out images with {len(METHODS)} methods...")
    gallery = images[: args.n_gallery]
    maps = {cls.display_name: cls(model, verbose=args.verbose)(gallery) for cls in METHODS.values()}
    predictions = np.argmax(model.predict(gallery, verbose=0), axis=-1)
    figure = plot_cams(
        gallery, maps, class_names=datasets.SHAPE_NAMES,
        labels=labels[: args.n_gallery], predictions=predictions,
    )
    save_figure(figure, out / "gallery.png")

    say(f"Evaluating {len(METHODS)} methods on {args.n_eval} held-out images...")
    table = evaluate(
        model, images[: args.n_eval], labels[: args.n_eval], boxes[: args.n_eval],
        methods=list(METHODS), metric_options=_steps_options(args.steps, None),
        verbose=min(args.verbose, 1),
    )
    _write_table(table, out / "evaluation.md", out / "evaluation.json")

    written = {
        out / "gallery.png": f"{args.n_gallery} held-out images x {len(METHODS)} methods",
        out / "evaluation.md": "the table above: time and quality of each method",
        out / "evaluation.json": "the same table as JSON",
        out / "epochs": f"heatmaps after each epoch ({', '.join(DEMO_CALLBACK_METHODS)})",
        out / "logs": f"TensorBoard logs: tensorboard --logdir {out / 'logs'}",
        out / "model.keras": f"the trained model: {PROG} info {out / 'model.keras'}",
        samples: f"held-out images: {PROG} explain {out / 'model.keras'} {samples}/*.png",
    }
    print(table.to_markdown())
    print("\n" + table.summary())
    print(f"\n{PROG} demo finished in {time.perf_counter() - start:.0f} s. Written:")
    width = max(len(str(path)) for path in written)
    for path, what in written.items():
        print(f"  {str(path):<{width}}  {what}")
    return 0


def _write_samples(folder: pathlib.Path, images: np.ndarray, labels: np.ndarray) -> pathlib.Path:
    """Writes images in [0, 1] as `sample_<i>_<class name>.png` files; returns the folder."""
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
        "Loads a .keras model (safe mode), reads the images with OpenCV, resizes them to the\n"
        "model's input size, preprocesses them, prints each image's top classes and writes\n"
        "one overlay PNG per image, method and class: OUT/<image>_<method>_class<N>.png.\n\n"
        "example:\n"
        "  keras-cam explain model.keras cat.jpg --method gradcam++,scorecam --top 2 \\\n"
        "      --preprocess resnet50 --out heatmaps",
    )
    parser.add_argument("model", type=pathlib.Path, metavar="MODEL",
                        help="a .keras (or legacy .h5) model file")
    parser.add_argument("images", type=pathlib.Path, nargs="+", metavar="IMAGE",
                        help="image files OpenCV can read")
    _add_methods(parser, "--method", EXPLAIN_DEFAULT_METHODS)
    parser.add_argument("--layer", help="layer to explain (default: automatic; see 'info')")
    _add_layer_call(parser)
    _add_head(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--class", dest="class_index", type=int, metavar="N",
                        help="explain class N for every image (default: its top class)")
    target.add_argument("--top", type=_positive_int, metavar="K",
                        help="explain each of the K most probable classes of every image")
    _add_preprocess(parser)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("keras_cam_output"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--alpha", type=_unit_float, default=0.4,
                        help="heatmap weight in the overlay, 0-1 (default: %(default)s)")
    parser.add_argument("--colormap", type=_colormap, default="jet",
                        help="OpenCV colormap name, e.g. jet, turbo, viridis "
                             "(default: %(default)s)")
    _add_unsafe(parser)
    _add_verbose(parser)
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    """`keras-cam explain`: overlays of each image, method and explained class."""
    model = _load_model(args.model, args.unsafe)
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
    if args.class_index is not None and not 0 <= args.class_index < num_classes:
        raise ValueError(
            f"--class {args.class_index} is out of range: the model has {num_classes} classes "
            f"(0 to {num_classes - 1})."
        )
    if args.top is not None and args.top > num_classes:
        raise ValueError(f"--top {args.top} exceeds the model's {num_classes} classes.")
    pixels = [io.read_image(path, predictor.image_shape)[0] for path in args.images]
    batches = [
        io.to_data_format(_preprocess(rgb[np.newaxis], preprocessing), predictor.data_format)
        for rgb in pixels
    ]
    for path, batch in zip(args.images, batches):  # every image, before any prediction
        _check_pixels(model, batch, path)
    shown = max(min(5, num_classes), args.top or 0)
    for path, stem, rgb, batch in zip(args.images, _unique_stems(args.images), pixels, batches):
        probabilities = predictor.predict(batch)[0]
        ranking = np.argsort(-probabilities, kind="stable")
        print(f"{path}: top classes " + ", ".join(
            f"{index} ({probabilities[index]:.3f})" for index in ranking[:shown]
        ))
        if args.class_index is not None:
            classes = [args.class_index]
        else:
            classes = [int(index) for index in ranking[: args.top or 1]]
        repeated = np.repeat(batch, len(classes), axis=0)
        for name, cam in explainers.items():
            maps = cam(repeated, targets=classes)
            for class_index, heatmap in zip(classes, maps):
                target = args.out / f"{stem}_{_slug(name)}_class{class_index}.png"
                save_overlay(target, rgb, heatmap, alpha=args.alpha, colormap=args.colormap)
                print(f"  wrote {target}")
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
    _add_unsafe(parser)
    parser.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    """`keras-cam info`: input, classes, head type and the explainable layers."""
    model = _load_model(args.model, args.unsafe)
    reading = read_head(model, args.head)
    chosen = None if args.layer is None else resolve_layer(model, args.layer)
    try:
        automatic = find_conv_layer(model)
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
    print(f"input shape  {tuple(model.inputs[0].shape[1:])}")
    print(f"classes      {reading.num_classes} ({reading.kind} output)")
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
        "held-out built-in shapes images with ground-truth boxes (training the demo model\n"
        "unless MODEL is given), and prints one Markdown row per method.\n\n"
        "The --labels file is CSV, one image per row: FILE,LABEL or FILE,LABEL,X0,Y0,X1,Y1\n"
        "(FILE relative to IMAGES_DIR; the box in the image's own pixels, X1/Y1 exclusive).\n"
        "With it, exactly the listed images are evaluated for their labels; without it,\n"
        "every image in the folder for its top class.\n\n"
        "examples:\n"
        "  keras-cam evaluate model.keras images/ --labels labels.csv --json table.json\n"
        "  keras-cam evaluate --builtin --n 64 --methods all",
    )
    parser.add_argument("model", type=pathlib.Path, nargs="?", metavar="MODEL",
                        help="a .keras (or legacy .h5) model file (optional with --builtin)")
    parser.add_argument("images_dir", type=pathlib.Path, nargs="?", metavar="IMAGES_DIR",
                        help="folder of images (not with --builtin)")
    parser.add_argument("--labels", type=pathlib.Path, metavar="FILE",
                        help="CSV of FILE,LABEL[,X0,Y0,X1,Y1] rows (see above)")
    parser.add_argument("--builtin", action="store_true",
                        help="use held-out built-in shapes images with boxes instead of a folder")
    parser.add_argument("--n", type=_positive_int, default=64,
                        help="built-in images to evaluate (default: %(default)s)")
    _add_training(parser, "with --builtin and no MODEL, demo model training")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    _add_methods(parser, "--methods", DEFAULT_METHODS)
    parser.add_argument("--metrics", action="append", metavar="NAME[,NAME...]",
                        help=f"metrics to compute, repeatable or comma-separated, from: "
                             f"{', '.join(METRICS)} (default: all that apply)")
    parser.add_argument("--layer", help="layer every method explains (default: automatic)")
    _add_layer_call(parser)
    _add_head(parser)
    parser.add_argument("--steps", type=_positive_int, default=METRIC_STEPS,
                        help="deletion/insertion steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=_positive_int, default=32,
                        help="images per model call (default: %(default)s)")
    _add_preprocess(parser)
    parser.add_argument("--json", type=pathlib.Path, metavar="PATH",
                        help="also write the table as JSON to PATH")
    _add_unsafe(parser)
    _add_verbose(parser)
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    """`keras-cam evaluate`: the metrics table of a model on a folder or built-in images."""
    if args.builtin:
        if args.images_dir is not None or args.labels is not None:
            raise ValueError("--builtin evaluates built-in images: give no IMAGES_DIR or --labels.")
        model, images, labels, boxes = _builtin_data(args)
    else:
        if args.model is None or args.images_dir is None:
            raise ValueError("give MODEL and IMAGES_DIR, or --builtin (see 'keras-cam evaluate "
                             "--help').")
        model = _load_model(args.model, args.unsafe)
        image_shape, layout = io.input_layout(model)
        images, labels, boxes = io.read_image_folder(
            args.images_dir, image_shape, args.labels, _preprocessing(model, args.preprocess)
        )
        _check_pixels(model, images, args.images_dir)
        images = io.to_data_format(images, layout)
    metrics = None if args.metrics is None else _split_names(args.metrics)
    table = evaluate(
        model,
        images,
        labels,
        boxes,
        methods=list(_methods(args.methods, DEFAULT_METHODS, "--methods").values()),
        metrics=metrics,
        layer=args.layer,
        layer_call=args.layer_call,
        batch_size=args.batch_size,
        metric_options=_steps_options(args.steps, metrics),
        head=args.head,
        verbose=min(args.verbose, 1),
    )
    print(table.to_markdown())
    print("\n" + table.summary())
    if args.json is not None:
        _write_table(table, None, args.json)
        print(f"wrote {args.json}")
    return 0


def _builtin_data(
    args: argparse.Namespace,
) -> tuple[keras.Model, np.ndarray, np.ndarray, np.ndarray]:
    """The model (loaded, or the demo model trained now) and held-out shapes with boxes."""
    if args.model is None:
        _printer(args.verbose)(f"Training the demo CNN for {args.epochs} epochs...")
        model, _ = train_demo_model(
            epochs=args.epochs, n_train=args.n_train, image_size=DEMO_IMAGE_SIZE,
            seed=args.seed, verbose=args.verbose,
        )
    else:
        model = _load_model(args.model, args.unsafe)
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
    images, labels, boxes = datasets.shapes(
        args.n, height, seed=args.seed + 1, num_classes=classes
    )
    if preprocessing == "none":  # a model of raw pixels takes the shapes as 8-bit pixels
        images = np.round(images * 255.0).astype(np.float32)
    _check_pixels(model, images, "--builtin")
    return model, io.to_data_format(images, layout), labels, boxes


# ======================================================================= shared options
def _add_methods(parser: argparse.ArgumentParser, flag: str, default: Sequence[str]) -> None:
    parser.add_argument(
        flag, action="append", metavar="NAME[,NAME...]",
        help=f"method(s), repeatable or comma-separated, or '{ALL}': "
             f"{', '.join(METHODS)} (default: {','.join(default)})",
    )


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


def _add_head(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--head", choices=HEADS, default=None,
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
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="progress output: 0 none, 1 progress bars, 2 one line per epoch "
                             "or pass (default: 1)")


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


def _load_model(path: pathlib.Path, unsafe: bool) -> keras.Model:
    """`io.load_model`, warning on stderr about `--unsafe` and pointing at it when needed."""
    if unsafe:
        print(
            f"{PROG}: warning: --unsafe loads {path} with safe_mode=False, which runs code "
            "stored in the file; use it only for files you trust.",
            file=sys.stderr,
        )
    try:
        return io.load_model(path, safe_mode=not unsafe)
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
    return resolve_methods(_split_names(values) if values else list(default), flag)


def _steps_options(steps: int, metrics: Sequence[str] | None) -> dict[str, dict[str, int]]:
    """`metric_options` setting the steps of deletion and insertion, where they are computed."""
    curves = ("deletion", "insertion")
    return {name: {"steps": steps} for name in curves if metrics is None or name in metrics}


def _write_table(
    table: EvaluationTable, markdown: pathlib.Path | None, json_path: pathlib.Path | None
) -> None:
    """Writes the table's Markdown (with its verdict) and/or JSON atomically."""
    report = table.to_markdown() + "\n\n" + table.summary()
    for path, text in ((markdown, report), (json_path, table.to_json())):
        if path is not None:
            with atomic_writer(path) as file:
                file.write((text + "\n").encode("utf-8"))


def _unique_stems(paths: Sequence[pathlib.Path]) -> list[str]:
    """File stems for the outputs; repeated stems get their position as a prefix."""
    stems = [path.stem for path in paths]
    return [stem if stems.count(stem) == 1 else f"{i}_{stem}" for i, stem in enumerate(stems)]


def _slug(name: str) -> str:
    """A method name fit for a file name: `gradcam++` -> `gradcampp`."""
    return name.replace("+", "p")

