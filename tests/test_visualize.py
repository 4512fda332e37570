"""Tests for keras_cam.visualize: colours are RGB, blending is exact, files are atomic."""

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from drawing_reference import reference_overlay
from source_checks import top_level_imports

from keras_cam import visualize
from keras_cam.visualize import (
    colorize,
    colormap_names,
    overlay,
    plot_cams,
    save_figure,
    save_overlay,
)

JET_HOT = (128, 0, 0)  # cv2's jet at 1.0, in RGB
JET_COLD = (0, 0, 128)  # cv2's jet at 0.0, in RGB


# --- colorize ---------------------------------------------------------------------------


def test_colorize_returns_rgb_with_jet_hot_end_red():
    colour = colorize(np.array([[0.0, 1.0]]))
    assert colour.shape == (1, 2, 3) and colour.dtype == np.uint8
    assert tuple(colour[0, 0]) == JET_COLD
    assert tuple(colour[0, 1]) == JET_HOT


@pytest.mark.parametrize("name", ["jet", "JET", "Viridis", "turbo", "inferno", "twilight_shifted"])
def test_colorize_matches_opencv_by_case_insensitive_name(name):
    heatmap = np.random.default_rng(0).random((7, 9))
    code = getattr(cv2, "COLORMAP_" + name.upper())
    bgr = cv2.applyColorMap(np.uint8(np.round(heatmap * 255)), code)
    np.testing.assert_array_equal(colorize(heatmap, name), bgr[..., ::-1])


def test_colorize_clips_rounding_errors_and_refuses_other_scales():
    np.testing.assert_array_equal(
        colorize(np.array([[-0.0009, 1.0009]])), colorize(np.array([[0.0, 1.0]]))
    )
    with pytest.raises(ValueError, match=r"`heatmap` must lie in \[0, 1\].*\[-3, 7\]"):
        colorize(np.array([[-3.0, 7.0]]))


def test_colormap_names_lists_opencv_colormaps():
    names = colormap_names()
    assert {"jet", "viridis", "turbo", "inferno"} <= set(names)
    assert list(names) == sorted(names)


def test_colorize_unknown_name_lists_the_known_ones():
    expected = r"Unknown `colormap` 'nope'\. Expected one of: .*\bjet\b.*\bviridis\b"
    with pytest.raises(ValueError, match=expected):
        colorize(np.zeros((2, 2)), "nope")


def test_colorize_rejects_non_string_colormap():
    with pytest.raises(TypeError, match=r"`colormap` must be a colormap name \(str\), got 2"):
        colorize(np.zeros((2, 2)), 2)


@pytest.mark.parametrize(
    ("heatmap", "error", "match"),
    [
        (np.array([[0.5, np.nan]]), ValueError, r"`heatmap` contains NaN or infinite values"),
        (np.array([[0.5, np.inf]]), ValueError, r"`heatmap` contains NaN or infinite values"),
        (
            np.zeros((2, 2, 1)),
            ValueError,
            r"`heatmap` must be a non-empty 2-D array \(H, W\), got shape \(2, 2, 1\)",
        ),
        (np.zeros((0, 3)), ValueError, r"non-empty 2-D array"),
        (np.array([["a", "b"]]), TypeError, r"`heatmap` must be a numeric array, got dtype <U1"),
    ],
)
def test_colorize_rejects_bad_heatmaps(heatmap, error, match):
    with pytest.raises(error, match=match):
        colorize(heatmap)


# --- overlay ----------------------------------------------------------------------------


def test_overlay_peak_on_black_image_is_red_in_channel_0():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    heatmap = np.zeros((20, 30))
    heatmap[5, 7] = 1.0
    out = overlay(image, heatmap, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert tuple(out[5, 7]) == (64, 0, 0)  # red in channel 0: RGB, not BGR
    assert out[0, 0, 2] > out[0, 0, 0]  # cold end is blue


def test_overlay_alpha_0_returns_the_image_and_alpha_1_the_colormap():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    heatmap = rng.random((12, 16))
    np.testing.assert_array_equal(overlay(image, heatmap, alpha=0.0), image)
    np.testing.assert_array_equal(
        overlay(image, heatmap, alpha=1.0, colormap="turbo"), colorize(heatmap, "turbo")
    )


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.4, 0.77, 1.0])
@pytest.mark.parametrize("heatmap_shape", [(12, 16), (3, 4), (5, 7), (7, 7), (40, 50)])
def test_overlay_matches_reference_within_one_level(alpha, heatmap_shape):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    heatmap = rng.random(heatmap_shape)
    out = overlay(image, heatmap, alpha=alpha).astype(int)
    assert np.abs(out - reference_overlay(image, heatmap, alpha)).max() <= 1


def test_overlay_input_formats_give_the_same_result():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    heatmap = rng.random((5, 7))
    expected = overlay(rgb, heatmap)
    np.testing.assert_array_equal(overlay(rgb / 255.0, heatmap), expected)
    np.testing.assert_array_equal(overlay(rgb.astype(np.float32), heatmap), expected)
    np.testing.assert_array_equal(overlay(rgb.astype(np.int64), heatmap), expected)
    gray_expected = overlay(np.repeat(gray[..., None], 3, axis=-1), heatmap)
    for gray_input in (gray, gray[..., None], gray / 255.0, gray[..., None] / 255.0):
        out = overlay(gray_input, heatmap)
        assert out.shape == (10, 14, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, gray_expected)


def test_overlay_rounds_the_blend_to_nearest():
    # 0.65 * 255 + 0.35 * (128, 0, 0) = (210.55, 165.75, 165.75): truncating would give 210, 165.
    heatmap = np.ones((2, 2))
    out = overlay(np.full((2, 2, 3), 255, dtype=np.uint8), heatmap, alpha=0.35)
    assert tuple(out[0, 0]) == (211, 166, 166)


def test_overlay_alpha_0_converts_images_to_uint8_rgb():
    heatmap = np.zeros((2, 2))
    gray_float = overlay(np.full((2, 2), 0.5), heatmap, alpha=0.0)
    np.testing.assert_array_equal(gray_float, np.full((2, 2, 3), 128))
    gray_255 = overlay(np.full((2, 2, 1), 200.0), heatmap, alpha=0.0)
    np.testing.assert_array_equal(gray_255, np.full((2, 2, 3), 200))


@pytest.mark.parametrize(("height", "width"), [(40, 100), (100, 40)])
def test_overlay_resizes_heatmap_to_the_image_height_and_width(height, width):
    # A hot block in the top-right area of a square 8x8 map must land in the same relative
    # place of a non-square image (a (W, H) / (H, W) mix-up moves or distorts it).
    heatmap = np.zeros((8, 8))
    heatmap[1:3, 5:7] = 1.0
    out = overlay(np.zeros((height, width, 3), dtype=np.uint8), heatmap, alpha=1.0)
    assert out.shape == (height, width, 3)
    rows, cols = np.nonzero(np.all(out == JET_HOT, axis=-1))
    assert rows.size > 0
    assert abs(rows.mean() / height - 2 / 8) < 0.03
    assert abs(cols.mean() / width - 6 / 8) < 0.03


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_overlay_rejects_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0, 1\], got"):
        overlay(np.zeros((4, 4, 3)), np.zeros((4, 4)), alpha=alpha)


def test_overlay_rejects_non_numeric_alpha():
    expected = r"`alpha` must be a number in \[0, 1\], got '0.5' of type str"
    with pytest.raises(TypeError, match=expected):
        overlay(np.zeros((4, 4, 3)), np.zeros((4, 4)), alpha="0.5")


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (
            np.zeros((4, 4, 4)),
            ValueError,
            r"`image` must have shape \(H, W\), \(H, W, 1\) or \(H, W, 3\), got shape \(4, 4, 4\)",
        ),
        (np.zeros((2, 4, 4, 3)), ValueError, r"got shape \(2, 4, 4, 3\)"),
        (
            np.full((4, 4, 3), -2.0),
            ValueError,
            r"`image` values must lie in \[0, 1\] or \[0, 255\], got the range \[-2.0, -2.0\]",
        ),
        (np.full((4, 4, 3), 300), ValueError, r"got the range \[300, 300\]"),
        (np.full((4, 4, 3), np.nan), ValueError, r"`image` contains NaN or infinite values"),
        (
            np.zeros((4, 4, 3), dtype=bool),
            TypeError,
            r"`image` must be a uint8 or float array, got dtype bool",
        ),
    ],
)
def test_overlay_rejects_bad_images(image, error, match):
    with pytest.raises(error, match=match):
        overlay(image, np.zeros((4, 4)))


def test_to_uint8_rgb_is_shared_helper_with_exact_conversion():
    image = np.array([[0.0, 0.5, 1.0]])
    out = visualize.to_uint8_rgb(image)
    assert out.dtype == np.uint8 and out.shape == (1, 3, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    with pytest.raises(ValueError, match=r"`frame` must have shape"):
        visualize.to_uint8_rgb(np.zeros(3), name="frame")


# --- plot_cams --------------------------------------------------------------------------


def test_plot_cams_grid_titles_labels_and_png(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.random((3, 24, 32, 3))
    maps = {"Grad-CAM": rng.random((3, 24, 32)), "Score-CAM": rng.random((3, 6, 8))}
    open_figures = plt.get_fignums()
    fig = plot_cams(
        images,
        maps,
        titles=["a", "b", "c"],
        class_names=["cat", "dog"],
        labels=[0, 1, 1],
        predictions=[0, 0, 1],
    )
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == open_figures  # pyplot's global state is untouched
    axes = fig.axes
    assert len(axes) == 3 * 3
    assert [ax.get_title() for ax in axes[:3]] == ["Image", "Grad-CAM", "Score-CAM"]
    assert axes[0].get_ylabel() == "a\ntrue: cat\npred: cat"
    assert axes[3].get_ylabel() == "b\ntrue: dog\npred: cat"
    drawn = axes[4].images[0].get_array()
    np.testing.assert_array_equal(drawn, overlay(images[1], maps["Grad-CAM"][1]))
    drawn = axes[8].images[0].get_array()
    np.testing.assert_array_equal(drawn, overlay(images[2], maps["Score-CAM"][2]))

    path = save_figure(fig, tmp_path / "grid.png", dpi=50)
    decoded = cv2.imread(str(path))
    assert decoded is not None
    width, height = fig.get_size_inches() * 50
    assert decoded.shape == (round(height), round(width), 3)


def test_plot_cams_non_square_cells_are_overlays_in_place():
    # 24x40 images: a swapped height and width anywhere (figure size, resize, imshow) fails.
    rng = np.random.default_rng(6)
    images = rng.random((2, 24, 40, 3))
    full = np.zeros((2, 24, 40))
    full[0, 5, 30] = full[1, 18, 6] = 1.0  # (y, x): top right, then bottom left
    conv = np.zeros((2, 3, 5))
    conv[0, 0, 4] = conv[1, 2, 0] = 1.0
    fig = plot_cams(images, {"Full": full, "Conv": conv}, alpha=1.0)
    # By hand: 3 columns 2 inches wide; rows 2 * 24 / 40 inches high, plus 0.4 for titles.
    np.testing.assert_allclose(fig.get_size_inches(), (6.0, 2 * 2 * 24 / 40 + 0.4))
    for row in range(2):
        rgb = np.uint8(np.rint(images[row] * 255))
        for column, maps in ((1, full), (2, conv)):
            ax = fig.axes[3 * row + column]
            drawn = ax.images[0].get_array().astype(int)
            assert drawn.shape == (24, 40, 3)
            assert np.abs(drawn - reference_overlay(rgb, maps[row], 1.0)).max() <= 1
            assert ax.get_xlim() == (-0.5, 39.5) and ax.get_ylim() == (23.5, -0.5)
    hot = np.all(fig.axes[1].images[0].get_array() == JET_HOT, axis=-1)
    assert list(zip(*np.nonzero(hot))) == [(5, 30)]


@pytest.mark.parametrize("maps_shape", [(1, 40, 24), (1, 5, 3)])
def test_maps_with_swapped_axes_are_refused(maps_shape):
    image = np.zeros((24, 40, 3), np.uint8)
    maps = np.zeros(maps_shape)
    height, width = maps_shape[1:]
    swapped = rf"has shape \(h, w\) = \({height}, {width}\), but the image is \(H, W\) = \(24, 40\)"
    with pytest.raises(ValueError, match=r"`heatmap` " + swapped + ".*axes look swapped"):
        overlay(image, maps[0])
    with pytest.raises(ValueError, match=r"`maps_by_method\['CAM'\]` " + swapped):
        plot_cams(image, {"CAM": maps})


def test_plot_cams_single_image_with_2d_map_and_indices_without_names():
    fig = plot_cams(np.zeros((16, 16)), {"CAM": np.ones((4, 4))}, labels=[2])
    assert len(fig.axes) == 2
    assert fig.axes[0].get_ylabel() == "true: 2"


def test_plot_cams_draws_on_given_axes():
    fig = Figure()
    given = fig.subplots(2, 2)
    returned = plot_cams(np.zeros((2, 8, 8, 3)), {"CAM": np.zeros((2, 8, 8))}, axes=given)
    assert returned is fig
    assert all(len(ax.images) == 1 for ax in given.flat)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"maps_by_method": {}}, ValueError, r"`maps_by_method` is empty"),
        ({"maps_by_method": [np.zeros((2, 8, 8))]}, TypeError, r"must be a mapping"),
        (
            {"maps_by_method": {"CAM": np.zeros((3, 8, 8))}},
            ValueError,
            r"`maps_by_method\['CAM'\]` must have shape \(2, h, w\) to match the 2 image\(s\), "
            r"got shape \(3, 8, 8\)",
        ),
        (
            {"axes": Figure().subplots(1, 2)},
            ValueError,
            r"`axes` must hold rows \* columns = 2 \* 2 = 4 axes .* got 2",
        ),
        ({"labels": [0]}, ValueError, r"`labels` must be 2 integer class indices"),
        ({"predictions": [0.5, 1.0]}, ValueError, r"`predictions` must be 2 integer class indices"),
        (
            {"labels": [0, 3], "class_names": ["a", "b"]},
            ValueError,
            r"`labels` holds class 3, which has no entry in `class_names` \(2 names\)",
        ),
        ({"titles": "ab"}, ValueError, r"`titles` must be a sequence of 2 strings"),
        ({"alpha": 2.0}, ValueError, r"`alpha` must be in \[0, 1\]"),
        ({"colormap": "nope"}, ValueError, r"Unknown `colormap` 'nope'"),
        (
            {"images": np.zeros((0, 8, 8, 3))},
            ValueError,
            r"`images` must be a batch \(B, H, W, C\) with B >= 1",
        ),
    ],
)
def test_plot_cams_rejects_bad_arguments(kwargs, error, match):
    arguments = {
        "images": np.zeros((2, 8, 8, 3)),
        "maps_by_method": {"CAM": np.zeros((2, 8, 8))},
        **kwargs,
    }
    with pytest.raises(error, match=match):
        plot_cams(**arguments)


# --- saving -----------------------------------------------------------------------------


def test_save_overlay_writes_an_rgb_correct_png_atomically(tmp_path):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (18, 26, 3), dtype=np.uint8)
    heatmap = rng.random((6, 6))
    target = tmp_path / "nested" / "dir" / "cam.png"
    path = save_overlay(target, image, heatmap, alpha=0.6, colormap="viridis")
    assert path == tmp_path / "nested" / "dir" / "cam.png"
    assert [p.name for p in path.parent.iterdir()] == ["cam.png"]  # no temporary files left
    decoded = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, overlay(image, heatmap, alpha=0.6, colormap="viridis"))


def test_save_overlay_hot_spot_is_red_after_decoding(tmp_path):
    heatmap = np.zeros((4, 4))
    heatmap[0, 0] = 1.0
    path = save_overlay(tmp_path / "hot.PNG", np.zeros((4, 4, 3)), heatmap, alpha=1.0)
    decoded = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert tuple(decoded[0, 0]) == JET_HOT


def test_save_overlay_requires_png_path(tmp_path):
    with pytest.raises(ValueError, match=r"`path` must end in '.png', got '.*cam.jpg'"):
        save_overlay(tmp_path / "cam.jpg", np.zeros((4, 4, 3)), np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_save_figure_keeps_the_old_file_when_saving_fails(tmp_path):
    path = tmp_path / "grid.png"
    path.write_bytes(b"old")
    fig = Figure()

    def failing_savefig(file, **kwargs):
        file.write(b"partial")
        raise RuntimeError("disk full")

    fig.savefig = failing_savefig
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, path)
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_save_figure_replaces_and_creates_directories(tmp_path):
    path = tmp_path / "a" / "b" / "grid.svg"
    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    assert save_figure(fig, path) == path
    assert path.read_text().lstrip().startswith("<?xml")
    assert [p.name for p in path.parent.iterdir()] == ["grid.svg"]


@pytest.mark.parametrize(
    ("name", "dpi", "match"),
    [
        ("grid", 100, r"`path` must end in a file extension matplotlib can write \(.*png.*\)"),
        ("grid.xyz", 100, r"got '.*grid.xyz'"),
        ("grid.png", 0, r"`dpi` must be a positive number, got 0"),
    ],
)
def test_save_figure_rejects_bad_arguments(tmp_path, name, dpi, match):
    with pytest.raises(ValueError, match=match):
        save_figure(Figure(), tmp_path / name, dpi=dpi)
    assert list(tmp_path.iterdir()) == []


def test_module_imports_cv2_and_matplotlib_lazily():
    top_level = top_level_imports(visualize)
    assert not top_level & {"cv2", "matplotlib"}
