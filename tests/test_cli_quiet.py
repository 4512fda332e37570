"""The command line as a user meets it, run as a subprocess with stderr captured whole: `--help`
and usage errors without TensorFlow, no library chatter, one exit status and one stderr line
for every bad input, `--version`; and the lazy `keras_cam` package behind it."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest
from tiny_models import gap_model

import keras_cam as kc
from keras_cam import cli, evaluation, metrics, registry, surgery

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
# What a user's shell has: none of the log settings the test suite or keras_cam set.
_LOG_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL", "OPENCV_LOG_LEVEL")


def _python(*arguments: str, cwd=None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in _LOG_VARIABLES}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                          env=environment, cwd=cwd, timeout=300, check=False)


def _keras_cam(*arguments: str, cwd=None) -> subprocess.CompletedProcess:
    return _python("-m", "keras_cam", *arguments, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 4-class GAP model, a 50x40 PNG, a corrupt PNG, a labels file with class 9."""
    folder = tmp_path_factory.mktemp("quiet")
    keras.utils.set_random_seed(0)
    gap_model(size=32, classes=4).save(folder / "gap.keras")
    (folder / "images").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert cv2.imwrite(str(folder / "images" / "a.png"), pixels)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (folder / "labels.csv").write_text("# file,label\na.png,9\n")
    return folder


# ------------------------------------------------------------------ no TensorFlow for help
def test_help_version_and_usage_errors_do_not_import_tensorflow():
    script = textwrap.dedent("""
        import contextlib, io, sys
        from keras_cam.cli import main
        codes = []
        for argv in (["--help"], ["--version"], ["demo", "--help"], ["explain", "--help"],
                     ["info", "--help"], ["evaluate", "--help"],
                     ["explain", "m.keras", "a.png", "--alpha", "3"],
                     ["evaluate", "--builtin", "--n", "0"], ["nope"]):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                codes.append(main(argv))
        print(codes)
        print(sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras"}))
    """)
    done = _python("-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[0, 0, 0, 0, 0, 0, 1, 1, 1]", "[]"]
    assert done.stderr == ""


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"keras-cam {kc.__version__}\n"


@pytest.mark.slow  # imports TensorFlow in a fresh process: 3-30 s
def test_importing_the_package_is_lazy_and_complete():
    script = textwrap.dedent("""
        import sys
        import keras_cam as kc
        print("tensorflow" in sys.modules, kc.__version__, set(kc.__all__) <= set(dir(kc)))
        from keras_cam import GradCAM, imagenet_class_names
        print("tensorflow" in sys.modules, GradCAM.__name__, imagenet_class_names()[281])
    """)
    done = _python("-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"False {kc.__version__} True", "True GradCAM tabby"]


def test_every_public_name_resolves_to_its_home():
    for name in kc.__all__:
        assert getattr(kc, name) is not None, name
    assert kc.GradCAM is __import__("keras_cam.methods", fromlist=["GradCAM"]).GradCAM
    assert kc.evaluate is evaluation.evaluate
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        kc.nope  # noqa: B018


def test_the_type_checking_imports_are_the_public_names():
    """IDEs read the `TYPE_CHECKING` imports; they must name exactly `__all__`, each from its home."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(kc))
    [block] = [node for node in tree.body if isinstance(node, ast.If)]
    imported = {
        (node.module if node.module != "keras_cam" else f"keras_cam.{alias.name}", alias.name)
        for node in block.body
        for alias in node.names
    }
    homes = {
        (kc._HOMES[name] if kc._HOMES[name] != "keras_cam" else f"keras_cam.{name}", name)
        for name in kc.__all__
    }
    assert imported == homes


def test_the_help_names_are_the_registries():
    assert cli.HEAD_NAMES == surgery.HEADS
    assert cli.NORMALIZE_NAMES == importlib.import_module("keras_cam.methods").NORMALIZE_MODES
    assert cli.EVALUATE_DEFAULT_METHODS == evaluation.DEFAULT_METHODS
    assert cli.ALL_METHODS == __import__("keras_cam.methods", fromlist=["ALL"]).ALL


# --------------------------------------------------------- one status, one line, per verb
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["demo", "--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
        (["explain", "m.keras", "a.png", "--top", "0"], "argument --top"),
        (["explain", "m.keras", "a.png", "--alpha", "3"], "argument --alpha"),
        (["explain", "m.keras", "a.png", "--colormap", "rainbowz"], "unknown colormap"),
        (["info"], "the following arguments are required: MODEL"),
        (["evaluate", "--builtin", "--n", "0"], "argument --n"),
        ([], "the following arguments are required: VERB"),
    ],
)
def test_usage_errors_exit_1_with_one_line(arguments, message):
    done = _keras_cam(*arguments)
    assert done.returncode == cli.EXIT_BAD_INPUT == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("keras-cam") and message in line and "--help" in line


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["explain", "{f}/gap.keras", "{f}/images/a.png", "--top", "9", "--out", "{f}/out"],
         "--top 9 exceeds the model's 4 classes."),
        (["explain", "{f}/gap.keras", "{f}/corrupt.png", "--out", "{f}/out"],
         "cannot read image {f}/corrupt.png: OpenCV cannot decode it."),
        (["evaluate", "{f}/gap.keras", "{f}/images", "--labels", "{f}/labels.csv"],
         "{f}/labels.csv, line 2: class 9 is out of range for a model of 4 classes (0 to 3)."),
        (["info", "{f}/gap.keras", "--class-names", "a,b,c"],
         "--class-names a,b,c gives 3 class names, but the model has 4 classes"),
    ],
)
@pytest.mark.slow  # each imports TensorFlow in a fresh process: 3-30 s
def test_bad_input_after_tensorflow_starts_is_one_line_without_library_chatter(
    files, arguments, message
):
    done = _keras_cam(*(argument.format(f=files) for argument in arguments))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [done.stderr.splitlines()[0]]  # exactly one line
    assert done.stderr.startswith("keras-cam: error: ")
    assert message.format(f=files) in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# ---------------------------------------------------------------- messages in CLI words
@pytest.mark.parametrize(
    ("verb", "message", "expected"),
    [
        ("explain", "Choose which call to explain with `layer_call=` (an index from 0 to 1).",
         "Choose which call to explain with --layer-call (an index from 0 to 1)."),
        ("explain", "received `layer`='conv2d'. Pass `layer=None`, or use `keras_cam.GradCAM`.",
         "received --layer conv2d. Pass no --layer, or use --method gradcam."),
        ("evaluate", "or use `keras_cam.HiResCAM` with `head=\"logits\"`",
         "or use --methods hirescam with --head logits"),
        ("explain", "`layer_call` must be an int; received 5.", "--layer-call must be an int; "
         "received 5."),
        ("info", "`image_shape` stays; `targets` too", "`image_shape` stays; `targets` too"),
    ],
)
def test_api_argument_names_become_the_verb_options(verb, message, expected):
    import argparse

    assert cli.in_cli_words(message, argparse.Namespace(verb=verb)) == expected


@pytest.mark.slow  # imports TensorFlow in a fresh process: 3-30 s
def test_verbose_lets_the_libraries_own_lines_through(files):
    done = _keras_cam("explain", str(files / "gap.keras"), str(files / "corrupt.png"),
                      "--out", str(files / "out"), "--verbose")
    lines = done.stderr.splitlines()
    assert done.returncode == 1
    assert any("[ WARN" in line or "[ERROR" in line for line in lines)  # OpenCV's own
    assert lines[-1] == f"keras-cam: error: cannot read image {files / 'corrupt.png'}: OpenCV " \
                        "cannot decode it."


# ------------------------------------------------------- one registry, without TensorFlow
def test_the_registries_are_built_from_the_tensorflow_free_tables():
    """`METHODS` and `METRICS` hold, name for name and in order, the very classes and
    functions the tables point at, which are the public ones of those names."""
    assert list(kc.METHODS) == list(registry.METHOD_CLASSES)
    for name, path in registry.METHOD_CLASSES.items():
        module, class_name = path.split(":")
        assert kc.METHODS[name] is getattr(kc, class_name) is getattr(
            importlib.import_module(module), class_name)
        assert kc.get_method(name) is kc.METHODS[name]
    assert list(metrics.METRICS) == list(registry.METRIC_FUNCTIONS)
    for name, path in registry.METRIC_FUNCTIONS.items():
        assert metrics.METRICS[name] is getattr(metrics, path.split(":")[1])
        assert metrics.METRICS[name].__name__ == name


@pytest.mark.parametrize("path", ["keras_cam.methods.gradient", "GradCAM", ":GradCAM", "a:"])
def test_a_registry_path_must_name_a_module_and_an_object(path):
    with pytest.raises(ValueError, match=r"`path` must be 'module:name'; received"):
        registry.load(path)


def test_the_help_lists_every_registered_name_without_tensorflow():
    """In a fresh process: `registry` imports no TensorFlow, and each verb's `--help` lists
    every method and metric name of the tables."""
    script = textwrap.dedent("""
        import contextlib, io, json, sys
        from keras_cam import registry
        from keras_cam.cli import main
        helps = {}
        for verb in ("explain", "evaluate"):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                main([verb, "--help"])
            helps[verb] = " ".join(out.getvalue().split())
        print(json.dumps(helps))
        print(sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras"}))
    """)
    done = _python("-c", script)
    assert done.returncode == 0, done.stderr
    helps, modules = done.stdout.splitlines()
    assert modules == "[]"
    helps = json.loads(helps)
    methods = ", ".join(registry.METHOD_CLASSES)
    assert methods in helps["explain"] and methods in helps["evaluate"]
    assert ", ".join(registry.METRIC_FUNCTIONS) in helps["evaluate"]
