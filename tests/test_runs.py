"""Runs that don't mix: a demo run replaces the previous one's files (and only those), a
callback used across `fit` calls numbers its epochs on, and the documented commands write only
into folders git ignores."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_cam import cli
from keras_cam.callbacks import HeatmapCallback
from references import corner_images, corner_model

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _event_steps(folder: pathlib.Path) -> dict[str, list[int]]:
    """`{tag: sorted steps}` of every summary in the event files under `folder`."""
    steps: dict[str, list[int]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return {tag: sorted(values) for tag, values in steps.items()}


def test_a_callback_across_two_fits_numbers_epochs_on(tmp_path):
    images = corner_images(4)  # non-square (HEIGHT x WIDTH)
    labels = np.array([0, 1, 2, 0])
    model = corner_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    heatmaps = HeatmapCallback(images, log_dir=tmp_path / "logs", out_dir=tmp_path / "png")
    model.fit(images, labels, epochs=2, verbose=0, callbacks=[heatmaps])  # N = 2
    model.fit(images, labels, epochs=3, verbose=0, callbacks=[heatmaps])  # M = 3, no initial_epoch
    names = sorted(path.name for path in (tmp_path / "png").iterdir())
    assert names == [f"epoch_{epoch:03d}.png" for epoch in range(1, 6)]  # 1 .. N + M
    assert _event_steps(tmp_path / "logs" / "cam")["cam/gradcam"] == [0, 1, 2, 3, 4]
    assert heatmaps.last_epoch == 4
    # A fit that continues with `initial_epoch` is not shifted twice.
    model.fit(images, labels, epochs=6, initial_epoch=5, verbose=0, callbacks=[heatmaps])
    assert (tmp_path / "png" / "epoch_006.png").is_file()
    assert len(list((tmp_path / "png").iterdir())) == 6


def _demo(out: pathlib.Path, epochs: int) -> int:
    return cli.main([
        "demo", "--out", str(out), "--epochs", str(epochs), "--n-train", "32", "--n-eval", "4",
        "--n-gallery", "2", "--steps", "2", "--verbose", "0",
    ])


@pytest.mark.slow
def test_a_second_demo_run_replaces_only_the_first_runs_files(tmp_path, capsys):
    out = tmp_path / "demo"
    assert _demo(out, epochs=3) == 0
    (out / "notes.txt").write_text("mine")  # files the demo did not write
    (out / "epochs" / "keep.png").write_bytes(b"mine")
    first_manifest = (out / cli.DEMO_MANIFEST).read_text()
    assert "epochs/epoch_003.png" in first_manifest and "model.keras" in first_manifest
    capsys.readouterr()

    assert _demo(out, epochs=2) == 0

    printed = capsys.readouterr().out
    assert f"Cleared the previous demo run in {out}" in printed
    assert sorted(p.name for p in (out / "epochs").iterdir()) == [
        "epoch_001.png", "epoch_002.png", "keep.png"
    ]  # no stale epoch_003.png from the first run
    assert (out / "notes.txt").read_text() == "mine"
    for run in ("cam", "train"):  # one event file per run: TensorBoard shows one series
        assert len(list((out / "logs" / run).glob("events.out.tfevents.*"))) == 1
    assert "epoch_loss" in _event_steps(out / "logs" / "train")  # the loss curves, same logs/
    assert _event_steps(out / "logs" / "cam")["cam/gradcam"] == [0, 1]


def test_the_demo_refuses_a_folder_with_outputs_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "epochs").mkdir(parents=True)
    (out / "gallery.png").write_bytes(b"someone else's")
    status = _demo(out, epochs=1)
    assert status != 0
    error = capsys.readouterr().err
    assert "gallery.png" in error and cli.DEMO_MANIFEST in error and "another --out" in error
    assert (out / "gallery.png").read_bytes() == b"someone else's"


DEFAULT_OUTPUTS = [
    "demo_output/gallery.png",  # make demo / keras-cam demo
    "keras_cam_output/a_class0.png",  # keras-cam explain without --out
    "heatmaps/epoch_001.png",  # README: explain --out heatmaps; the callback's out_dir
    "logs/cam/events.out.tfevents.1",  # README: the callback's log_dir
    "benchmarks/out/speed_quick.json",  # benchmarks without --write-results
    "examples_output/retrofit_vgg16.png",  # examples/retrofit_vgg16.py
    "grid.png",  # README: kc.save_figure(fig, "grid.png")
    "evaluation.json",  # README: keras-cam evaluate ... --json evaluation.json
]


def test_documented_default_outputs_are_ignored_by_git():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", *DEFAULT_OUTPUTS],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert sorted(checked.stdout.split()) == sorted(DEFAULT_OUTPUTS)


@pytest.mark.slow
def test_a_documented_command_in_a_clean_clone_leaves_git_status_clean(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {"PYTHONPATH": str(clone), "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2",
           "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    commands = [
        [sys.executable, "-m", "keras_cam", "demo", "--out", "demo_output", "--epochs", "1",
         "--n-train", "32", "--n-eval", "2", "--n-gallery", "2", "--steps", "2"],
        [sys.executable, "-m", "keras_cam", "explain", "demo_output/model.keras",
         "demo_output/samples/sample_0_circle.png", "--method", "gradcam++", "--out", "heatmaps"],
        [sys.executable, "-m", "keras_cam", "explain", "demo_output/model.keras",
         "demo_output/samples/sample_0_circle.png"],
        [sys.executable, "benchmarks/callback_overhead.py", "--quick", "--train-images", "64",
         "--epochs", "3", "--methods", "gradcam"],
    ]
    for command in commands:
        subprocess.run(command, cwd=clone, env=env, check=True, capture_output=True)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                            text=True, check=True)
    assert status.stdout == ""
