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
