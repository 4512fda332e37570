"""explain_dataset under tf.distribute: MirroredStrategy over two logical CPUs, and two
MultiWorkerMirroredStrategy worker processes writing into one out_dir (subprocesses, since
TensorFlow's devices and cluster are fixed when it initializes)."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_cam as kc

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEIGHT, WIDTH = 24, 40

pytestmark = pytest.mark.slow


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_BACKEND": "tensorflow", **extra}


def save_model(path: pathlib.Path) -> keras.Model:
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs, name="small")
    model.save(path)
    return model


def images(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, (n, HEIGHT, WIDTH, 3)).astype(np.float32), rng.integers(0, 3, n)


MIRRORED_CHILD = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import keras_cam as kc

    model = keras.models.load_model(sys.argv[1])
    data = np.load(sys.argv[2])
    replicas = set()

    class Recording(kc.GradCAM):
        def explain_batch(self, images, targets, others=()):
            replicas.add(int(tf.distribute.get_replica_context().replica_id_in_sync_group))
            return super().explain_batch(images, targets, others)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    methods = {"gradcam": Recording(model), "scorecam": kc.ScoreCAM(model, verbose=0)}
    batches = kc.explain_dataset(methods, (data["images"], data["labels"]), targets="labels",
                                 batch_size=7, strategy=strategy, verbose=0)
    batches = list(batches)
    np.savez(sys.argv[3], **{name: np.concatenate([b.maps[name] for b in batches])
                             for name in methods},
             index=np.concatenate([b.index for b in batches]))
    print("REPLICAS", strategy.num_replicas_in_sync, sorted(replicas))
""")


def test_mirrored_strategy_over_two_logical_cpus_gives_the_single_device_maps(tmp_path):
    model = save_model(tmp_path / "model.keras")
    x, y = images(17)  # 17 images in batches of 7: odd slices for the two replicas
    np.savez(tmp_path / "data.npz", images=x, labels=y)
    run = subprocess.run(
        [sys.executable, "-c", MIRRORED_CHILD, str(tmp_path / "model.keras"),
         str(tmp_path / "data.npz"), str(tmp_path / "maps.npz")],
        env=env(), capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "REPLICAS 2 [0, 1]" in run.stdout
    got = np.load(tmp_path / "maps.npz")
    np.testing.assert_array_equal(got["index"], np.arange(17))
    np.testing.assert_allclose(got["gradcam"], kc.GradCAM(model)(x, y), atol=1e-5)
    score_cam = kc.ScoreCAM(model, verbose=0)
    expected = np.concatenate([score_cam(x[i:i + 7], y[i:i + 7]) for i in range(0, 17, 7)])
    np.testing.assert_allclose(got["scorecam"], expected, atol=1e-5)


WORKER_CHILD = textwrap.dedent("""
    import sys
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras, numpy as np
    import keras_cam as kc

    model = keras.models.load_model(sys.argv[1])
    data = np.load(sys.argv[2])
    dataset = tf.data.Dataset.from_tensor_slices((data["images"], data["labels"])).batch(4)

    class Counting(kc.GradCAM):
        explained = 0

        def explain_batch(self, images, targets, others=()):
            Counting.explained += int(images.shape[0])
            return super().explain_batch(images, targets, others)

    manifest = kc.explain_dataset({"gradcam": Counting(model)}, dataset, targets="labels",
                                  batch_size=5, out_dir=sys.argv[3], strategy=strategy, verbose=0)
    print("MANIFEST", bool(manifest), "EXPLAINED", Counting.explained)
""")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_worker_processes_explain_a_dataset_into_one_out_dir(tmp_path):
    model = save_model(tmp_path / "model.keras")
    x, y = images(23)
    np.savez(tmp_path / "data.npz", images=x, labels=y)
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for task in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": task}}
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER_CHILD, str(tmp_path / "model.keras"),
             str(tmp_path / "data.npz"), str(tmp_path / "out")],
            env=env(TF_CONFIG=json.dumps(config)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300))
    finally:
        for process in processes:
            process.kill()
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    assert "MANIFEST True" in outputs[0][0] and "MANIFEST False" in outputs[1][0]
    explained = [int(stdout.split("EXPLAINED")[-1]) for stdout, _ in outputs]
    assert explained == [13, 10]  # shards 0, 2, 4 (5 + 5 + 3 images) and 1, 3 (5 + 5)

    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert [record["index"] for record in manifest["images"]] == list(range(23))
    assert manifest["shards"] == [f"shard-{s:06d}" for s in range(5)]
    maps, index = [], []
    for shard in sorted(out.glob("shard-*.npz")):
        with np.load(shard) as arrays:
            maps.append(arrays["maps/gradcam"])
            index.append(arrays["index"])
    index = np.concatenate(index)
    np.testing.assert_array_equal(np.sort(index), np.arange(23))  # every image exactly once
    np.testing.assert_allclose(np.concatenate(maps)[np.argsort(index)], kc.GradCAM(model)(x, y),
                               atol=1e-5)
    top = model.predict(x, verbose=0)
    assert [record["predicted"] for record in manifest["images"]] == top.argmax(axis=1).tolist()
