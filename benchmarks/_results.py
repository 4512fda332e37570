"""What every benchmark script records about the machine, and how it writes its results."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import tempfile
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
"""The tracked results README quotes: written only with `--write-results`."""
OUT = ROOT / "benchmarks" / "out"
"""Where a run writes by default: ignored by git, so running a benchmark changes no tracked file."""


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def now() -> str:
    """UTC time of the run, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def machine_info() -> dict[str, Any]:
    """Platform, core count, load, library versions and visible GPUs."""
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow"),
        "keras": _version("keras"),
        "tf_keras_vis": _version("tf-keras-vis"),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def add_output_arguments(parser: Any, name: str) -> None:
    """Adds `--out` and `--write-results` to a benchmark's argument parser."""
    parser.add_argument(
        "--out", type=pathlib.Path,
        help=f"JSON path (default: benchmarks/out/{name}[_quick].json, ignored by git)",
    )
    parser.add_argument(
        "--write-results", action="store_true",
        help=f"write the tracked benchmarks/results/{name}[_quick].json that README quotes",
    )


def results_path(
    name: str, quick: bool, out: pathlib.Path | None, write_results: bool = False
) -> pathlib.Path:
    """`out`; else `benchmarks/results/<name>[_quick].json` (tracked) with `write_results`,
    else `benchmarks/out/<name>[_quick].json` (ignored)."""
    return out or (RESULTS if write_results else OUT) / f"{name}{'_quick' if quick else ''}.json"


def write_text(path: pathlib.Path, text: str) -> None:
    """Writes `text` atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json(path: pathlib.Path, payload: dict[str, Any]) -> None:
    """Writes `payload` as indented JSON, atomically."""
    write_text(path, json.dumps(payload, indent=1, ensure_ascii=False, default=str) + "\n")
