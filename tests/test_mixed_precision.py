"""Mixed precision, by value: under `mixed_float16` every method, `evaluate` and the callback
give what the same weights give in float32 (not merely finite maps in [0, 1])."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from references import HEIGHT, WIDTH, blob_mask, copy_weights, corner_images, corner_model

import keras_cam as kc

# float16 keeps ~3 decimal digits; normalized maps of float32 and float16 runs of the same
# weights agree to about 0.002 (measured on CPU). A wrong map (all zeros, transposed, another
# class) differs by far more.
ATOL = 0.01


def _mixed_copy(model_fn, source: keras.Model) -> keras.Model:
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        model = model_fn()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy_weights(source, model)
    assert model.get_layer("last_conv").compute_dtype == "float16"
    return model


@pytest.fixture(scope="module")
def models():
    full = corner_model(positive=False, seed=8)
    mixed = _mixed_copy(lambda: corner_model(positive=False, seed=8), full)
    return full, mixed


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_every_method_gives_its_float32_maps_under_mixed_precision(name, models):
    full, mixed = models
    images = corner_images(3, seed=9)
    classes = np.array([0, 1, 2])
    options = {"verbose": 0} if "score" in name else {}
    expected = kc.get_method(name)(full, **options)(images, targets=classes)
    maps = kc.get_method(name)(mixed, **options)(images, targets=classes)
    assert maps.dtype == np.float32 and maps.shape == (3, HEIGHT, WIDTH)
    assert (maps.max(axis=(1, 2)) == 1.0).all()  # not an all-zero map
    np.testing.assert_allclose(maps, expected, atol=ATOL)


@pytest.mark.parametrize("name", sorted(kc.METHODS))
def test_mixed_precision_maps_point_at_the_blob(name):
    if name == "guidedbackprop":
        pytest.skip("the input gradient alone does not see brightness (see test_orientation)")
    positive = corner_model(positive=True)
    mixed = _mixed_copy(lambda: corner_model(positive=False), positive)
    maps = kc.get_method(name)(mixed)(corner_images(2), targets=0)
    mask = blob_mask()
    for heatmap in maps:
        assert mask[np.unravel_index(heatmap.argmax(), heatmap.shape)]


def test_evaluate_under_mixed_precision_gives_the_float32_table(models):
    full, mixed = models
    images = corner_images(4, seed=10)
    labels = np.array([0, 1, 2, 0])
    boxes = np.array([(30, 2, 38, 8)] * 4)
    options = {"methods": ["gradcam", "scorecam"], "verbose": 0}
    expected = kc.evaluate(full, images, labels, boxes, **options)
    table = kc.evaluate(mixed, images, labels, boxes, **options)
    assert [row["method"] for row in table.rows] == [row["method"] for row in expected.rows]
    for row, reference in zip(table.rows, expected.rows):
        for metric in expected.metrics:
            tolerance = 1.0 if expected.units[metric] == "percent" else 0.05
            assert row[metric] == pytest.approx(reference[metric], abs=tolerance), metric


def test_callback_under_mixed_precision_logs_the_float32_maps(models, tmp_path):
    full, mixed = models
    images = corner_images(3, seed=11)
    logged = {}
    for key, model in (("float32", full), ("mixed", mixed)):
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
        heatmaps = kc.HeatmapCallback(
            images, targets=[0, 1, 2], methods=("gradcam", "scorecam"),
            out_dir=tmp_path / key, boxes=np.array([(30, 2, 38, 8)] * 3),
        )
        model.fit(images, np.array([0, 1, 2]), epochs=1, verbose=0, callbacks=[heatmaps])
        logged[key] = heatmaps
    for method in ("gradcam", "scorecam"):
        mixed_maps = logged["mixed"].last_maps[method]
        assert (mixed_maps.max(axis=(1, 2)) == 1.0).all()
        np.testing.assert_allclose(mixed_maps, logged["float32"].last_maps[method], atol=ATOL)
    assert logged["mixed"].last_scores.keys() == logged["float32"].last_scores.keys()
