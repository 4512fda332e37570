"""The package's boundaries (issue 11): no module takes another's `_private` names, and only
the modules of keras_cam/surgery/ touch Keras-private APIs."""

from __future__ import annotations

import pathlib

import pytest
from source_checks import (
    KERAS_PRIVATE_APIS,
    keras_private_mentions,
    may_touch_keras_private,
    private_imports,
)

import keras_cam

PACKAGE = pathlib.Path(keras_cam.__file__).parent
SOURCES = {
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted(PACKAGE.rglob("*.py"))
}
"""Every keras_cam module, by dotted name (a package by its own name)."""


def _private_imports(module: str, source: str) -> list[tuple[int, str]]:
    return private_imports(source, module, set(SOURCES))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from keras_cam.metrics import _check_boxes, check_maps",
         ["keras_cam.metrics._check_boxes"]),
        ("from keras_cam import metrics\nmetrics._check_boxes(b)",
         ["keras_cam.metrics._check_boxes"]),
        ("import keras_cam.visualize as v\nv._atomic_writer(p)",
         ["keras_cam.visualize._atomic_writer"]),
        ("import keras_cam.visualize\nkeras_cam.visualize._to_uint8_rgb(x)",
         ["keras_cam.visualize._to_uint8_rgb"]),
        ("from ..surgery import _final_layer", ["keras_cam.surgery._final_layer"]),
        ("from . import base\nbase._axis_weights", ["keras_cam.methods.base._axis_weights"]),
        ("from keras_cam import _checks\n_checks.check_positive_int(n)", []),
        ("from keras_cam.surgery import is_graph_model\nself._cam.model", []),
        ("import numpy as np\nnp._private", []),
    ],
    ids=["from-import", "module attribute", "import as", "dotted", "relative", "relative module",
         "private module, public name", "own attributes", "other packages"],
)
def test_the_private_import_check_catches_every_spelling(source, expected):
    found = private_imports(source, "keras_cam.methods.cam", set(SOURCES) | {"keras_cam._checks"})
    assert [name for _, name in found] == expected


def test_no_module_imports_a_private_name_of_another():
    found = [
        f"{SOURCES[module].relative_to(PACKAGE.parent)}:{line}: {name}"
        for module, path in SOURCES.items()
        for line, name in _private_imports(module, path.read_text())
    ]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_the_keras_private_check_catches_each_name():
    source = "\n".join(f"x = {name}" for name in KERAS_PRIVATE_APIS)
    assert [name for _, name in keras_private_mentions(source)] == list(KERAS_PRIVATE_APIS)
    assert keras_private_mentions("from keras import layers\nkeras.ops.softmax(x)") == []


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("keras_cam.surgery", True),
        ("keras_cam.surgery.tracing", True),
        ("keras_cam.surgery_tools", False),
        ("keras_cam.methods.base", False),
        ("keras_cam.methods.surgery", False),
        ("keras_cam", False),
    ],
)
def test_only_the_surgery_package_may_touch_keras_private_apis(module, allowed):
    assert may_touch_keras_private(module) is allowed


def test_only_surgery_touches_keras_private_apis():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for module, path in SOURCES.items()
        if not may_touch_keras_private(module)
        for line, name in keras_private_mentions(path.read_text())
    ]
    assert not found, "Keras-private APIs outside keras_cam/surgery/:\n" + "\n".join(found)
