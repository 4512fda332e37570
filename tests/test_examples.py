"""The examples run as README promises: executed in their quick mode, their numbers checked."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_retrofit_vgg16_quick_reaches_its_accuracy_and_pointing_game(tmp_path):
    figure = tmp_path / "retrofit.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "retrofit_vgg16.py"), "--quick", "--out",
         str(figure)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    # Chance is 0.25 on four balanced classes; the boxes' share of the image is 6-16 %.
    assert results["fc_accuracy"] >= 0.9
    assert results["gap_accuracy"] >= 0.9
    assert results["cam_layer"] == "block4_conv3"
    assert results["cam_map_size"] == [8, 8]
    assert results["cam_pointing_game"] >= 0.8
    assert figure.is_file() and figure.stat().st_size > 0
    assert not list(tmp_path.glob("examples_output"))  # only where --out said
