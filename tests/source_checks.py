"""Checks on the source of keras_cam modules, shared by the tests."""

import ast
import inspect
from types import ModuleType


def top_level_imports(module: ModuleType) -> set[str]:
    """The top-level package names a module imports at import time (not inside functions)."""
    names = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


KERAS_PRIVATE_APIS = ("keras.src", "_keras_history", "_inbound_nodes", "_run_through_graph")
"""Keras-private names that only the modules of keras_cam/surgery/ may touch."""

KERAS_PRIVATE_HOME = "keras_cam.surgery"
"""The one package whose modules may touch Keras-private APIs."""


def may_touch_keras_private(module: str) -> bool:
    """Whether the keras_cam module `module` (a dotted name) may touch Keras-private APIs: the
    `keras_cam.surgery` package and its modules, nothing else."""
    return module == KERAS_PRIVATE_HOME or module.startswith(KERAS_PRIVATE_HOME + ".")


def keras_private_mentions(source: str) -> list[tuple[int, str]]:
    """`(line number, name)` of every mention of a Keras-private API in `source`."""
    return [
        (number, name)
        for number, line in enumerate(source.splitlines(), start=1)
        for name in KERAS_PRIVATE_APIS
        if name in line
    ]


def _absolute(node: ast.ImportFrom, module: str) -> str:
    """The absolute module name of a (possibly relative) `from ... import`."""
    if not node.level:
        return node.module or ""
    package = module.split(".")[: -node.level]
    return ".".join([*package, *([node.module] if node.module else [])])


def private_imports(source: str, module: str, submodules: set[str]) -> list[tuple[int, str]]:
    """`(line number, "module._name")` of every `_private` name `source` takes from another
    keras_cam module: `from keras_cam.x import _name` (relative imports too), and
    `alias._name` where `alias` is a keras_cam module bound by `import` or `from ... import`.

    Args:
        source: the Python source of the module.
        module: its dotted name, e.g. `"keras_cam.methods.cam"` (for relative imports).
        submodules: dotted names of every keras_cam module; importing a private *module*
            (e.g. `from keras_cam import _checks`) is allowed, its private names are not.
    """
    tree = ast.parse(source)
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "keras_cam":
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source_module = _absolute(node, module)
            if source_module.split(".")[0] != "keras_cam":
                continue
            for alias in node.names:
                full = f"{source_module}.{alias.name}"
                if full in submodules:
                    aliases[alias.asname or alias.name] = full
                elif alias.name.startswith("_"):
                    found.append((node.lineno, full))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__"):
            continue
        owner = ast.unparse(node.value)
        if owner in aliases and aliases[owner] != module:
            found.append((node.lineno, f"{aliases[owner]}.{node.attr}"))
    return sorted(found)
