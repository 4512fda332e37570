"""Mutation probe: plant small plausible bugs one at a time and check that a fast test fails.

Each mutation replaces one exact snippet of one keras_cam file in a scratch copy of the
repository, then runs the listed test files there (`-m "not slow"`, stopping at the first
failure). A mutation is *killed* when the tests fail, *survived* when they pass. The script
first checks that every snippet still occurs exactly once (and fails loudly if not: update
the entry with the code), and runs the unmutated tests once as a baseline.

Usage:
    python tools/mutate.py                 # every mutation, then the table and the kill rate
    python tools/mutate.py --list          # the mutations, without running anything
    python tools/mutate.py --only cli-box-scale-swapped --only callback-rgb-swapped
    python tools/mutate.py --tests tests/test_cli.py   # every mutation against other tests
    make mutate                            # the same as the first line (not run in CI: slow)

Exit status: 0 when every mutation is killed, 1 when one survives (or the baseline fails),
2 when a snippet does not match the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
IGNORED = (".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", "demo_output",
           "keras_cam_output", "notebooks", "docs")


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One planted bug: `old` (exactly once in `path`) becomes `new`; `tests` should fail."""

    name: str
    area: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    # --- the four that passed the whole suite when issue 17 was filed
    Mutation(
        "upsample-width-height", "placement", "keras_cam/methods/base.py",
        "rows = _axis_weights(shape[1], size[0], placement[0])\n"
        "    columns = _axis_weights(shape[2], size[1], placement[1])",
        "rows = _axis_weights(shape[1], size[0], placement[1])\n"
        "    columns = _axis_weights(shape[2], size[1], placement[0])",
        ("tests/test_orientation.py", "tests/test_contract.py"),
    ),
    Mutation(
        "scorecam-masks-width-height", "methods", "keras_cam/methods/perturbation.py",
        "size = tf.gather(tf.shape(images), self._cam.spatial_axes)",
        "size = tf.gather(tf.shape(images), self._cam.spatial_axes[::-1])",
        ("tests/test_orientation.py", "tests/test_score.py"),
    ),
    Mutation(
        "callback-boxes-y0-x0", "callback", "keras_cam/callbacks.py",
        "metric(method_maps, self.boxes).mean",
        "metric(method_maps, self.boxes[:, [1, 0, 3, 2]]).mean",
        ("tests/test_callback_outputs.py",),
    ),
    Mutation(
        "callback-rgb-swapped", "callback", "keras_cam/_files.py",
        'cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))',
        'cv2.imencode(".png", rgb)',
        ("tests/test_callback_outputs.py",),
    ),
    # --- methods
    Mutation(
        "gradcam++-denominator", "methods", "keras_cam/methods/gradient.py",
        "denominator = 2.0 * grads_2 + sum_activations * grads_2 * grads",
        "denominator = grads_2 + sum_activations * grads_2 * grads",
        ("tests/test_gradient.py", "tests/test_orientation.py"),
    ),
    Mutation(
        "hirescam-abs-gradients", "methods", "keras_cam/methods/gradient.py",
        "        return grads\n",
        "        return tf.abs(grads)\n",
        ("tests/test_orientation.py", "tests/test_gradient.py"),
    ),
    Mutation(
        "fasterscorecam-smallest-variance", "methods", "keras_cam/methods/perturbation.py",
        'top = np.argsort(-variance, axis=-1, kind="stable")',
        'top = np.argsort(variance, axis=-1, kind="stable")',
        ("tests/test_orientation.py", "tests/test_score.py"),
    ),
    Mutation(
        "scorecam-masks-not-min-max", "methods", "keras_cam/methods/perturbation.py",
        "masks = tf.math.divide_no_nan(masks - low, high - low)",
        "masks = tf.math.divide_no_nan(masks, high)",
        ("tests/test_orientation.py", "tests/test_score.py"),
    ),
    Mutation(
        "cam-binary-classes-swapped", "methods", "keras_cam/methods/cam.py",
        "kernel = tf.concat([-kernel, kernel], axis=-1)",
        "kernel = tf.concat([kernel, -kernel], axis=-1)",
        ("tests/test_cam.py",),
    ),
    # --- placement / normalization
    Mutation(
        "normalize-over-the-batch", "placement", "keras_cam/methods/base.py",
        "high = tf.reduce_max(maps, axis=(1, 2), keepdims=True)",
        "high = tf.reduce_max(maps, keepdims=True)",
        ("tests/test_orientation.py", "tests/test_contract.py"),
    ),
    # --- metrics
    Mutation(
        "pointing-game-row-length", "metrics", "keras_cam/metrics.py",
        "y, x = np.divmod(flat.argmax(axis=1), maps.shape[2])",
        "y, x = np.divmod(flat.argmax(axis=1), maps.shape[1])",
        ("tests/test_orientation.py", "tests/test_metrics.py"),
    ),
    Mutation(
        "boxes-from-maps-transposed", "metrics", "keras_cam/metrics.py",
        "boxes[index] = (x, y, x + w, y + h)",
        "boxes[index] = (y, x, y + h, x + w)",
        ("tests/test_orientation.py", "tests/test_metrics.py"),
    ),
    Mutation(
        "deletion-insertion-swapped", "metrics", "keras_cam/metrics.py",
        "return (changed if insert else ~changed).astype(np.float32)",
        "return (~changed if insert else changed).astype(np.float32)",
        ("tests/test_orientation.py", "tests/test_metrics.py"),
    ),
    # --- visualization
    Mutation(
        "colormap-left-bgr", "visualization", "keras_cam/visualize.py",
        "return cv2.cvtColor(cv2.applyColorMap(levels, code), cv2.COLOR_BGR2RGB)",
        "return cv2.applyColorMap(levels, code)",
        ("tests/test_visualize.py", "tests/test_cli_data.py"),
    ),
    # --- callback
    Mutation(
        "callback-ignores-targets", "callback", "keras_cam/callbacks.py",
        "explainer, self.images, self.targets",
        "explainer, self.images, None",
        ("tests/test_callback_outputs.py", "tests/test_callbacks.py"),
    ),
    # --- CLI
    Mutation(
        "same-padding-rounded-up", "placement", "keras_cam/geometry.py",
        'pad_before = pad_total // 2 if layer.padding == "same" else 0',
        'pad_before = (pad_total + 1) // 2 if layer.padding == "same" else 0',
        ("tests/test_geometry.py",),
    ),
    Mutation(
        "center-crop-start-rounded-up", "placement", "keras_cam/geometry.py",
        "starts = ((height - targets[0]) // 2, (width - targets[1]) // 2)",
        "starts = ((height - targets[0] + 1) // 2, (width - targets[1] + 1) // 2)",
        ("tests/test_geometry.py",),
    ),
    Mutation(
        "raw-score-unit-read-as-binary", "head", "keras_cam/surgery/head.py",
        'return self.units == 1 and self.kind != "linear"',
        "return self.units == 1",
        ("tests/test_head.py",),
    ),
    Mutation(
        "cli-resize-height-width", "cli", "keras_cam/io.py",
        "size = (width or original[1], height or original[0])",
        "size = (height or original[0], width or original[1])",
        ("tests/test_cli_data.py", "tests/test_cli.py"),
    ),
    Mutation(
        "cli-box-scale-swapped", "cli", "keras_cam/io.py",
        "scale_y, scale_x = resized[0] / height, resized[1] / width",
        "scale_x, scale_y = resized[0] / height, resized[1] / width",
        ("tests/test_cli_data.py", "tests/test_cli.py"),
    ),
    Mutation(
        "cli-ignores-labels", "cli", "keras_cam/io.py",
        "classes = None if labels is None else np.array([row[1] for row in rows], np.int32)",
        "classes = None",
        ("tests/test_cli_data.py",),
    ),
)


def check_snippets(mutations: tuple[Mutation, ...], root: pathlib.Path) -> list[str]:
    """Problems: snippets that do not occur exactly once, missing files or test files."""
    problems = []
    for mutation in mutations:
        path = root / mutation.path
        if not path.is_file():
            problems.append(f"{mutation.name}: {mutation.path} does not exist")
            continue
        count = path.read_text(encoding="utf-8").count(mutation.old)
        if count != 1:
            problems.append(
                f"{mutation.name}: the snippet occurs {count} times in {mutation.path} "
                f"(expected once): {mutation.old!r}"
            )
        problems += [
            f"{mutation.name}: test file {test} does not exist"
            for test in mutation.tests
            if not (root / test).is_file()
        ]
    return problems


def scratch_copy(destination: pathlib.Path) -> pathlib.Path:
    """Copies the repository (sources, tests, configuration) into `destination/repo`."""
    target = destination / "repo"
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(*IGNORED))
    return target


def run_tests(tree: pathlib.Path, tests: tuple[str, ...], markers: str) -> tuple[bool, str]:
    """Runs `tests` in `tree` with the tree on PYTHONPATH; `(passed, first failing test)`."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MPLBACKEND": "Agg",
    }
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-n", "0"]
    command += ["-m", markers] if markers else []
    command += list(tests)
    try:
        done = subprocess.run(command, cwd=tree, env=environment, capture_output=True,
                              text=True, timeout=1200, check=False)
    except subprocess.TimeoutExpired:
        return False, "(timed out after 1200 s)"
    output = done.stdout + done.stderr
    if done.returncode == 0:
        return True, ""
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    if failed:
        return False, failed.group(1)
    return False, f"(pytest exit status {done.returncode})"


def apply(tree: pathlib.Path, mutation: Mutation) -> str:
    """Writes the mutation into `tree`; returns the original text to restore."""
    path = tree / mutation.path
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace(mutation.old, mutation.new, 1), encoding="utf-8")
    return original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--slow", action="store_true", help="also run tests marked slow")
    parser.add_argument("--tests", nargs="+", metavar="FILE",
                        help="run these test files for every mutation instead of its own list "
                             "(e.g. to see what an older suite misses)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of the unmutated tests")
    args = parser.parse_args(argv)

    mutations = MUTATIONS
    if args.only:
        unknown = set(args.only) - {mutation.name for mutation in MUTATIONS}
        if unknown:
            parser.error(f"unknown mutation(s) {sorted(unknown)}; see --list")
        mutations = tuple(m for m in MUTATIONS if m.name in args.only)
    if args.tests:
        mutations = tuple(dataclasses.replace(m, tests=tuple(args.tests)) for m in mutations)
    if args.list:
        for mutation in mutations:
            print(f"{mutation.name:36} {mutation.area:14} {mutation.path}")
        return 0
    problems = check_snippets(mutations, ROOT)
    if problems:
        print("mutate.py: the code changed under these mutations; update them:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    markers = "" if args.slow else "not slow"

    with tempfile.TemporaryDirectory(prefix="keras_cam_mutate_") as scratch:
        tree = scratch_copy(pathlib.Path(scratch))
        if not args.no_baseline:
            all_tests = tuple(sorted({test for m in mutations for test in m.tests}))
            print(f"baseline: {' '.join(all_tests)} ...", flush=True)
            passed, failing = run_tests(tree, all_tests, markers)
            if not passed:
                print(f"mutate.py: the unmutated tests fail ({failing}); fix them first.",
                      file=sys.stderr)
                return 1
        rows = []
        for mutation in mutations:
            start = time.perf_counter()
            original = apply(tree, mutation)
            try:
                passed, failing = run_tests(tree, mutation.tests, markers)
            finally:
                (tree / mutation.path).write_text(original, encoding="utf-8")
            verdict = "survived" if passed else "killed"
            rows.append((mutation, verdict, failing, time.perf_counter() - start))
            print(f"{mutation.name}: {verdict} {failing}", flush=True)

    print("\n| mutation | area | file | result | caught by |")
    print("| :--- | :--- | :--- | :--- | :--- |")
    for mutation, verdict, failing, seconds in rows:
        print(f"| {mutation.name} | {mutation.area} | {mutation.path} | {verdict} "
              f"({seconds:.0f} s) | {failing or '-'} |")
    killed = sum(verdict == "killed" for _, verdict, _, _ in rows)
    print(f"\nkill rate: {killed}/{len(rows)} ({killed / len(rows):.0%})")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
