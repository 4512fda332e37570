"""Files written by keras_cam: atomic writes and PNG encoding (private to the package).

Every file keras_cam writes (figures, overlays, per-epoch grids, tables, sample images) goes
through `atomic_writer`, so a reader never sees a partial file. The module is private; its
functions are public names so that other keras_cam modules import them by name.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Opens a temporary file next to `path` for binary writing; renames it over `path` on success.

    Parent directories are created. On any error the temporary file is removed and an
    existing `path` is left untouched.

    Args:
        path: the destination file.

    Yields:
        The temporary file, open for binary writing.

    Example:
    ```python
    with atomic_writer(pathlib.Path("out/table.json")) as file:
        file.write(text.encode("utf-8"))
    ```
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def encode_png(rgb: np.ndarray) -> bytes:
    """Encodes a `uint8` RGB image `(H, W, 3)` as PNG bytes (with OpenCV, imported lazily).

    Raises:
        RuntimeError: OpenCV could not encode the image.
    """
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} image as PNG.")
    return encoded.tobytes()


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> pathlib.Path:
    """Writes a `uint8` RGB image `(H, W, 3)` to a PNG file atomically; returns the path."""
    path = pathlib.Path(path)
    data = encode_png(rgb)
    with atomic_writer(path) as file:
        file.write(data)
    return path
