"""explain_dataset: tf.data / NumPy / iterables == in-memory calls, resumable shards, memory."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cam as kc

HEIGHT, WIDTH, CLASSES = 24, 40, 3
ROOT = pathlib.Path(__file__).resolve().parent.parent


def small_model() -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small")


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype(np.float32)
    return images, rng.integers(0, CLASSES, n)


def gradcam_reference(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Grad-CAM by hand (Selvaraju et al. 2017, Eq. 1-2): pre-softmax logit, mean gradient
    weights, ReLU, bilinear (half-pixel) resize, per-image min-max."""
    last = model.get_layer("last")
    dense = model.layers[-1]
    features_model = keras.Model(model.inputs[0], last.output)
    features = tf.constant(features_model(images))
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = tf.reduce_mean(features, axis=(1, 2))
        logits = tf.matmul(pooled, dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    cams = tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, weights))
    cams = tf.image.resize(cams[..., None], (HEIGHT, WIDTH), "bilinear")[..., 0].numpy()
    low = cams.min(axis=(1, 2), keepdims=True)
    high = cams.max(axis=(1, 2), keepdims=True)
    return np.where(high > low, (cams - low) / np.maximum(high - low, 1e-30), 0.0)


def collect(batches) -> dict[str, np.ndarray]:
    batches = list(batches)
    out = {name: np.concatenate([b.maps[name] for b in batches]) for name in batches[0].maps}
    out["index"] = np.concatenate([b.index for b in batches])
    out["classes"] = np.concatenate([b.classes for b in batches])
    out["predicted"] = np.concatenate([b.predicted for b in batches])
    return out


def test_tf_data_pipeline_gives_the_in_memory_maps_of_gradcam_and_scorecam():
    model = small_model()
    images, labels = data(22)
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels)).batch(5).map(
        lambda x, y: (x, y)
    )
    got = collect(kc.explain_dataset(
        ["gradcam", "scorecam"], pipeline, model, targets="labels", batch_size=8, verbose=0
    ))
    np.testing.assert_array_equal(got["index"], np.arange(22))
    np.testing.assert_array_equal(got["classes"], labels)
    np.testing.assert_allclose(got["gradcam"], gradcam_reference(model, images, labels), atol=1e-5)
    np.testing.assert_allclose(got["gradcam"], kc.GradCAM(model)(images, labels), atol=1e-6)
    score_cam = kc.ScoreCAM(model, verbose=0)
    np.testing.assert_allclose(
        got["scorecam"], np.concatenate([score_cam(images[i:i + 8], labels[i:i + 8])
                                         for i in range(0, 22, 8)]), atol=1e-6
    )
    probabilities = model.predict(images, verbose=0)
    np.testing.assert_array_equal(got["predicted"], probabilities.argmax(axis=1))


def test_numpy_arrays_and_python_iterables_give_the_same_top1_maps():
    model = small_model()
    images, _ = data(13)
    top = model.predict(images, verbose=0).argmax(axis=1)
    expected = gradcam_reference(model, images, top)
    from_array = collect(kc.explain_dataset("gradcam", images, model, batch_size=4, verbose=0))
    chunks = (images[i:i + 3] for i in range(0, 13, 3))
    from_iterable = collect(kc.explain_dataset(kc.GradCAM(model), chunks, batch_size=6, verbose=0))
    np.testing.assert_allclose(from_array["gradcam"], expected, atol=1e-5)
    np.testing.assert_allclose(from_iterable["gradcam"], expected, atol=1e-5)
    np.testing.assert_array_equal(from_iterable["classes"], top)


def test_arguments_are_checked_with_messages_that_name_them():
    model = small_model()
    images, _ = data(4)
    with pytest.raises(ValueError, match="dataset has none"):
        kc.explain_dataset("gradcam", images, model, targets="labels")
    with pytest.raises(ValueError, match="`targets` must be None"):
        kc.explain_dataset("gradcam", images, model, targets="top")
    with pytest.raises(TypeError, match="pass `model=`"):
        kc.explain_dataset("gradcam", images)
    with pytest.raises(TypeError, match="`dataset` must be a tf.data.Dataset"):
        kc.explain_dataset("gradcam", 3, model)
    with pytest.raises(ValueError, match="rank 3 .* or 4"):
        kc.explain_dataset("gradcam", images[..., 0], model)
    with pytest.raises(ValueError, match="`method_options` has options for \\['scorecam'\\]"):
        kc.explain_dataset("gradcam", images, model, method_options={"scorecam": {}})


class CountingGradCAM(kc.GradCAM):
    """Grad-CAM that counts the images its compiled passes explain."""

    explained = 0

    def explain_batch(self, images, targets, others=()):
        CountingGradCAM.explained += int(images.shape[0])
        return super().explain_batch(images, targets, others)


def read_dir(folder: pathlib.Path) -> tuple[dict, dict[str, np.ndarray]]:
    manifest = json.loads((folder / "manifest.json").read_text())
    arrays: dict[str, list] = {}
    for path in sorted(folder.glob("shard-*.npz")):
        with np.load(path) as shard:
            for key in shard.files:
                arrays.setdefault(key, []).append(shard[key])
    return manifest, {key: np.concatenate(value) for key, value in arrays.items()}


def check_visible_files_complete(folder: pathlib.Path) -> None:
    """Every visible file is complete: npz files load, json files parse; no temporary left."""
    for path in folder.rglob("*"):
        assert not path.name.endswith(".tmp") or path.name.startswith(".")
        if path.suffix == ".npz":
            with np.load(path) as shard:
                assert "index" in shard.files and len(shard["maps/gradcam"]) == len(shard["index"])
        elif path.suffix == ".json":
            json.loads(path.read_text())


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    model = small_model()
    images, labels = data(19)
    batch = 4

    def generator(stop_at=None):
        for start in range(0, len(images), 3):
            if stop_at is not None and start >= stop_at:
                check_visible_files_complete(tmp_path / "resumed")
                raise RuntimeError("interrupted by the test")
            check_visible_files_complete(tmp_path / "resumed")
            yield images[start:start + 3], labels[start:start + 3]

    def dataset(stop_at=None):
        spec = (tf.TensorSpec((None, HEIGHT, WIDTH, 3), tf.float32),
                tf.TensorSpec((None,), tf.int64))
        return tf.data.Dataset.from_generator(lambda: generator(stop_at), output_signature=spec)

    cam = CountingGradCAM(model)
    options = dict(targets="labels", batch_size=batch, verbose=0, overlays=True)
    (tmp_path / "resumed").mkdir()
    with pytest.raises(Exception, match="interrupted by the test"):
        kc.explain_dataset({"gradcam": cam}, dataset(stop_at=12), out_dir=tmp_path / "resumed",
                           **options)
    finished = sorted(p.name for p in (tmp_path / "resumed").glob("shard-*.json"))
    assert 1 <= len(finished) <= 3  # 12 images were read; prefetching may hold one back
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    check_visible_files_complete(tmp_path / "resumed")
    done_before = CountingGradCAM.explained
    assert done_before == batch * len(finished)

    kc.explain_dataset({"gradcam": cam}, dataset(), out_dir=tmp_path / "resumed", **options)
    assert CountingGradCAM.explained - done_before == 19 - batch * len(finished)
    kc.explain_dataset({"gradcam": cam}, dataset(), out_dir=tmp_path / "whole", **options)

    resumed, resumed_arrays = read_dir(tmp_path / "resumed")
    whole, whole_arrays = read_dir(tmp_path / "whole")
    assert resumed == whole
    assert sorted(whole_arrays) == sorted(resumed_arrays)
    for key, value in whole_arrays.items():
        np.testing.assert_array_equal(resumed_arrays[key], value)
    np.testing.assert_array_equal(whole_arrays["index"], np.arange(19))
    np.testing.assert_allclose(
        whole_arrays["maps/gradcam"], gradcam_reference(model, images, labels), atol=1e-5
    )
    assert [record["index"] for record in whole["images"]] == list(range(19))
    top = model.predict(images, verbose=0)
    assert [record["predicted"] for record in whole["images"]] == top.argmax(axis=1).tolist()
    np.testing.assert_allclose([r["score"] for r in whole["images"]], top.max(axis=1), rtol=1e-5)
    assert whole["targets"] == "labels" and whole["methods"]["gradcam"]["layer"] == "last"
    overlays = sorted((tmp_path / "resumed" / "overlays" / "gradcam").glob("*.png"))
    assert len(overlays) == 19


def test_a_rerun_with_other_arguments_refuses_to_mix(tmp_path):
    model = small_model()
    images, labels = data(6)
    kc.explain_dataset("gradcam", (images, labels), model, out_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="other arguments \\(targets: 'top-1' there, 'labels'"):
        kc.explain_dataset("gradcam", (images, labels), model, out_dir=tmp_path, verbose=0,
                           targets="labels")
    with pytest.raises(ValueError, match="methods: .* delete this one to start over"):
        kc.explain_dataset("gradcam++", (images, labels), model, out_dir=tmp_path, verbose=0)
    other = small_model()
    with pytest.raises(ValueError, match="weights_sha256"):
        kc.explain_dataset("gradcam", (images, labels), other, out_dir=tmp_path, verbose=0)


MEMORY_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np, keras, tensorflow as tf
    import keras_cam as kc
    n = int(sys.argv[1])
    inputs = keras.Input((96, 160, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    def batches():
        rng = np.random.default_rng(0)
        for _ in range(n // 32):
            yield rng.uniform(0, 1, (32, 96, 160, 3)).astype(np.float32)
    total = 0.0
    for batch in kc.explain_dataset("gradcam", batches(), model, batch_size=32, verbose=0):
        total += float(batch.maps["gradcam"].sum())
    print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_dataset():
    """4x more images (640 -> 2560, 188 MB -> 755 MB of images, 39 -> 157 MB of maps): the
    peak RSS grows by less than 64 MB, far below what holding either would cost."""

    def peak(n: int) -> int:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        run = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(n)], env=env,
                             capture_output=True, text=True, timeout=300, check=True)
        return int(run.stdout.split("PEAK")[-1]) // 1024  # KiB -> MiB on Linux

    small, large = peak(640), peak(2560)
    assert large - small < 64, (small, large)


def test_streaming_evaluate_equals_in_memory_evaluate():
    model = small_model()
    images, labels = data(14)
    rng = np.random.default_rng(3)
    corner = np.stack([rng.integers(0, WIDTH - 10, 14), rng.integers(0, HEIGHT - 8, 14)], axis=1)
    boxes = np.concatenate([corner, corner + [10, 8]], axis=1)
    options = dict(methods=("gradcam", "scorecam"), batch_size=4,
                   metric_options={"deletion": {"steps": 6}, "insertion": {"steps": 6}})
    held = kc.evaluate(model, images, labels, boxes, **options)
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels, boxes)).batch(3)
    streamed = kc.evaluate(model, pipeline, **options)
    assert streamed.metrics == held.metrics and "pointing_game" in held.metrics
    assert streamed.num_images == 14
    for held_row, streamed_row in zip(held.rows, streamed.rows):
        for metric in held.metrics:
            np.testing.assert_allclose(streamed_row[metric], held_row[metric], rtol=1e-5,
                                       atol=1e-6, err_msg=f"{held_row['method']} {metric}")
        for metric in held.metrics:
            np.testing.assert_allclose(
                streamed.results[held_row["method"]][metric].per_image,
                held.results[held_row["method"]][metric].per_image, rtol=1e-5, atol=1e-6,
            )
    top1 = kc.evaluate(model, (batch for batch in [images[:9], images[9:]]),
                       methods="gradcam", metrics=["average_drop"], batch_size=4)
    np.testing.assert_allclose(
        top1.rows[0]["average_drop"],
        kc.evaluate(model, images, methods="gradcam", metrics=["average_drop"]).rows[0][
            "average_drop"], rtol=1e-5)
    with pytest.raises(ValueError, match="come from the dataset's elements"):
        kc.evaluate(model, pipeline, labels, **options)


def test_an_error_of_a_python_iterable_is_raised_as_it_is_and_cuts_no_short_shard(tmp_path):
    model = small_model()
    images, _ = data(10)

    def batches():
        yield images[:4]
        yield images[4:7]
        raise ValueError("bad image 7")

    with pytest.raises(ValueError, match="bad image 7"):
        kc.explain_dataset("gradcam", batches(), model, batch_size=2, out_dir=tmp_path,
                           verbose=0)
    # Images 0-6 were read: shards 0-2 (two images each) are complete; image 6 alone is not
    # a shard (its batch was cut short by the error).
    assert sorted(p.name for p in tmp_path.glob("shard-*.json")) == [
        "shard-000000.json", "shard-000001.json", "shard-000002.json"]
    manifest = kc.explain_dataset("gradcam", images, model, batch_size=2, out_dir=tmp_path,
                                  verbose=0)
    assert manifest["num_images"] == 10


def test_cli_explain_streams_a_folder_or_glob_into_resumable_shards(tmp_path, capsys):
    import cv2

    from keras_cam import cli

    model = small_model()
    model.save(tmp_path / "model.keras")
    folder = tmp_path / "images"
    folder.mkdir()
    rgb = np.random.default_rng(4).integers(0, 256, (7, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for index, pixels in enumerate(rgb):
        cv2.imwrite(str(folder / f"{index}.png"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    arguments = ["explain", str(tmp_path / "model.keras"), str(folder), "--method", "gradcam",
                 "--batch-size", "3", "--out", str(tmp_path / "out"), "--verbose", "0"]
    assert cli.main(arguments) == 0
    assert "explained 7 images" in capsys.readouterr().out
    manifest, arrays = read_dir(tmp_path / "out")
    assert manifest["metadata"]["files"] == [str(folder / f"{i}.png") for i in range(7)]
    images = rgb / np.float32(255)  # the default preprocessing, scale01
    top = model.predict(images, verbose=0).argmax(axis=1)
    np.testing.assert_allclose(arrays["maps/gradcam"], gradcam_reference(model, images, top),
                               atol=1e-5)
    assert len(list((tmp_path / "out" / "overlays" / "gradcam").glob("*.png"))) == 7
    assert cli.main(arguments) == 0  # a rerun finds every shard done
    assert read_dir(tmp_path / "out")[0] == manifest
    glob_run = [*arguments[:2], str(folder / "*.png"), *arguments[3:7], "--out",
                str(tmp_path / "glob"), "--verbose", "0"]
    assert cli.main(glob_run) == 0
    np.testing.assert_array_equal(read_dir(tmp_path / "glob")[1]["maps/gradcam"],
                                  arrays["maps/gradcam"])
    assert cli.main([*arguments, "--top", "2"]) == 1
    assert "--top explains several classes" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["gradcam", "cam", "scorecam"])
def test_explain_returns_the_maps_of_a_call_and_the_models_scores(method):
    """`BaseCAM.explain` (what explain_dataset records): the maps of `__call__` and the
    model's own class scores."""
    model = small_model()
    images, labels = data(5)
    cam = kc.get_method(method)(model, verbose=0)
    maps, scores = cam.explain(images, labels)
    np.testing.assert_array_equal(maps, cam(images, labels))
    np.testing.assert_allclose(scores, model.predict(images, verbose=0), rtol=1e-5, atol=1e-7)


class CountingLayer(keras.layers.Layer):
    """Identity that counts, in a variable, every time the graph runs it (a forward pass)."""

    def build(self, input_shape):
        self.runs = self.add_weight(shape=(), initializer="zeros", trainable=False, name="runs")

    def call(self, inputs):
        self.runs.assign_add(1.0)
        return inputs


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "cam", "eigencam"])
def test_explain_of_a_one_pass_method_runs_the_model_once(method):
    """The scores `explain` returns come from the pass that computes the maps: one forward
    pass per call, not a second one for `predict` (issue 14, item 6)."""
    counter = CountingLayer(name="counter")
    inputs = keras.Input((24, 40, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(counter(inputs))
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    images = np.random.default_rng(0).uniform(0, 1, (5, 24, 40, 3)).astype("float32")
    cam = kc.get_method(method)(model)
    cam.explain(images)  # compile first
    before = float(counter.runs.numpy())
    maps, scores = cam.explain(images)
    assert float(counter.runs.numpy()) - before == 1.0
    np.testing.assert_allclose(scores, model.predict(images, verbose=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(maps, cam(images))


def test_progress_bar_counts_every_image_and_rates_from_the_second_batch(capsys):
    """`verbose=1`: a Keras progress bar over every image; its images/s leaves out the first
    batch (which also compiles the pass), so it appears only from the second batch on."""
    model = small_model()
    images, _ = data(10)
    list(kc.explain_dataset("gradcam", images[:4], model, batch_size=4, verbose=1))
    single = capsys.readouterr().out
    assert "4/Unknown" in single.replace(" ", "") and "images/s" not in single
    list(kc.explain_dataset("gradcam", images, model, batch_size=4, verbose=1))
    several = capsys.readouterr().out
    assert "10/Unknown" in several.replace(" ", "") and "images/s" in several
