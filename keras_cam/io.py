"""Reading what keras_cam explains: saved models, image files, labels; preprocessing.

What the `keras-cam` command line does with files, usable from a notebook or a script:

```python
import keras_cam as kc
from keras_cam import io

model = io.load_model("model.keras")                  # Keras' safe mode
cam = kc.GradCAM(model)
pixels, _ = io.read_image("cat.jpg", cam.image_shape)  # uint8 RGB at the model's input size
images = io.to_data_format(io.preprocess(pixels[None], "resnet50"), cam.data_format)
maps = cam(images)
```

Images are read with OpenCV (imported lazily) and returned RGB, never BGR. Boxes follow the
package's convention: `(x0, y0, x1, y1)` pixels, `x1`/`y1` exclusive. Keras (and TensorFlow) are
imported inside the functions that need them, so the command line's `--help` stays quick.
"""

from __future__ import annotations

import csv
import importlib.resources
import os
import pathlib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    import keras

PathLike = str | os.PathLike[str]

MODEL_EXTENSIONS: tuple[str, ...] = (".keras", ".h5", ".hdf5")
"""Model files `keras.models.load_model` reads: Keras 3 archives and legacy HDF5."""

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
)
"""File extensions `read_image_folder` picks up in a folder."""

def applications_preprocessing(family: str) -> Callable[[np.ndarray], np.ndarray]:
    """`keras.applications.<family>.preprocess_input`, with Keras imported at the first call.

    Args:
        family: a `keras.applications` module name, e.g. `"resnet50"`.

    Returns:
        A function of float32 RGB pixels `(B, H, W, 3)` in [0, 255] -> the family's input.

    Example:
    ```python
    images = applications_preprocessing("vgg16")(pixels.astype("float32"))
    ```
    """

    def preprocess_input(pixels: np.ndarray) -> np.ndarray:
        import keras

        return getattr(keras.applications, family).preprocess_input(pixels)

    return preprocess_input


PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "scale01": lambda pixels: pixels / 255.0,
    "none": lambda pixels: pixels,
    "vgg16": applications_preprocessing("vgg16"),
    "resnet50": applications_preprocessing("resnet50"),
    "mobilenet_v2": applications_preprocessing("mobilenet_v2"),
}
"""Named preprocessings: float32 RGB pixels in [0, 255], `(B, H, W, C)` -> model input.

`scale01` divides by 255 (the demo model's input), `none` passes the pixels as they are, and
the others are `keras.applications.<family>.preprocess_input` (3-channel images only).
`default_preprocessing` picks one for a model.
"""

DEFAULT_PREPROCESSING = "scale01"
"""The preprocessing of a model with a float input unless one is named (see
`default_preprocessing`)."""

DATA_FORMATS: tuple[str, ...] = ("channels_last", "channels_first")
"""The image layouts `to_data_format` writes (Keras' `data_format` values)."""

LabelRow = tuple[pathlib.Path, int, Optional[tuple[int, ...]]]
"""A labels CSV row: the image's path, its class, and its box `(x0, y0, x1, y1)` or `None`."""


def load_model(
    path: PathLike,
    *,
    safe_mode: bool = True,
    output: int | str | None = None,
    input: int | str | None = None,
) -> keras.Model:
    """Loads a `.keras` / `.h5` model file and checks that keras_cam can explain it.

    Args:
        path: the model file.
        safe_mode: Keras' safe mode, which refuses to run code stored in the file (a `Lambda`
            layer's); pass `False` only for files you trust. Defaults to `True`.
        output: the output to explain of a model with several (its name or index, see
            `keras_cam.surgery.select_output`). Defaults to `None` (the only output).
        input: the explained input of a model with several (its name or index). Defaults to
            `None` (the only input).

    Returns:
        The model: for a model with several outputs, the view of the chosen one.

    Raises:
        FileNotFoundError: `path` is not a file.
        ValueError: the file is not a Keras model Keras can load (the message says when safe
            mode refused it), or not a single-input, single-output model keras_cam can trace.

    Example:
    ```python
    model = load_model("model.keras")
    ```
    """
    import keras

    from keras_cam.surgery import check_model, select_output

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix.lower() not in MODEL_EXTENSIONS:
        raise ValueError(
            f"{path} is not a Keras model file: expected a .keras file, or a legacy .h5 / "
            ".hdf5 file, as written by keras.Model.save."
        )
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras model: a .keras file is a zip archive.")
    try:
        model = keras.models.load_model(path, safe_mode=safe_mode)
    except Exception as error:  # Keras raises many types for foreign files; re-raised, not hidden
        message = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(
            f"{path} is not a Keras model that can be loaded: {type(error).__name__}: {message}"
        ) from error
    model = select_output(model, output)
    check_model(model, input)
    return model


def read_image(
    path: PathLike, image_shape: tuple[int | None, int | None, int] = (None, None, 3)
) -> tuple[np.ndarray, tuple[int, int]]:
    """Reads an image file as uint8 RGB (or gray), resized to a model's input size.

    Args:
        path: the image file (any format OpenCV reads).
        image_shape: `(height, width, channels)`, e.g. an explainer's `image_shape`; a `None`
            size keeps the file's own. Channels must be 1 (gray) or 3 (RGB). Defaults to
            `(None, None, 3)`.

    Returns:
        `(image, original_size)`: uint8 `(H, W, C)` and the file's `(height, width)`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: OpenCV cannot decode the file, or `image_shape` is not `(height, width,
            channels)` with 1 or 3 channels.

    Example:
    ```python
    pixels, (height, width) = read_image("cat.jpg", cam.image_shape)
    ```
    """
    import cv2

    path = pathlib.Path(path)
    if len(image_shape) != 3 or image_shape[2] not in (1, 3):
        raise ValueError(
            "`image_shape` must be (height, width, channels) with 1 (gray) or 3 (RGB) channels, "
            f"e.g. an explainer's `image_shape` (not its `input_shape`, which is (channels, "
            f"height, width) for a channels-first model); received {tuple(image_shape)}."
        )
    height, width, channels = image_shape
    _check_image_file(path)
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imread(str(path), flag)
    if image is None:
        raise ValueError(f"cannot read image {path}: OpenCV cannot decode it.")
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    original = image.shape[:2]
    image = resize_image(image.reshape(*original, channels), (height, width))
    return image, original


def resize_image(image: np.ndarray, size: tuple[int | None, int | None]) -> np.ndarray:
    """Stretches an image to a model's input size, as `read_image` does (no crop, no padding).

    Shrinking uses OpenCV's area interpolation, enlarging bilinear; `visualize.resize_heatmap`
    maps a heatmap of the resized image back onto the original.

    Args:
        image: uint8 `(H, W, C)`.
        size: `(height, width)`; a `None` keeps that side of the image.

    Returns:
        uint8 `(height, width, C)`; `image` itself when it has that size.

    Example:
    ```python
    pixels = resize_image(original, cam.image_shape[:2])
    ```
    """
    import cv2

    height, width = image.shape[:2]
    new_height, new_width = size[0] or height, size[1] or width
    if (new_height, new_width) == (height, width):
        return image
    shrinking = new_height * new_width < height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_width, new_height), interpolation=interpolation)  # (W, H)
    return resized.reshape(new_height, new_width, image.shape[2])


def _check_image_file(path: pathlib.Path) -> None:
    """Raises `FileNotFoundError` unless `path` is a file, saying so when it is a folder."""
    if path.is_dir():
        raise FileNotFoundError(
            f"{path} is a folder, not an image file: give the image files in it (e.g. "
            f"{path}/*.png)."
        )
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")


def image_channels(path: PathLike) -> int:
    """The channels an image file stores: 1 (gray), 2 (gray + alpha), 3 (colour) or 4 (+ alpha).

    `read_image` converts every file to the channels a model takes (a gray file to RGB, the
    alpha channel of an RGBA file dropped); this tells a caller that the file was converted.

    Args:
        path: the image file.

    Returns:
        The number of channels OpenCV decodes without conversion.

    Raises:
        FileNotFoundError: no such file, or a folder.
        ValueError: OpenCV cannot decode the file.

    Example:
    ```python
    if image_channels("logo.png") == 4:
        print("logo.png: the alpha channel is dropped")
    ```
    """
    import cv2

    path = pathlib.Path(path)
    _check_image_file(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}: OpenCV cannot decode it.")
    return 1 if image.ndim == 2 else int(image.shape[2])


CLASS_NAMES_FILE = "class_names.txt"
"""The file of class names, one per line, that the demo saves next to its model; the command
line reads the names of `model.keras` from `class_names.txt` in the same folder."""

IMAGENET = "imagenet"
"""The class-names spec of `read_class_names` that reads `imagenet_class_names()`."""


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in the index order of `keras.applications` models.

    Shipped with the package (`keras_cam/data/imagenet_class_names.txt`, no download): the
    list of torchvision's `_IMAGENET_CATEGORIES`, the same order 0..999 as Keras'
    `decode_predictions` (0 "tench", 281 "tabby"). A few names repeat ("crane", "maillot"),
    as in the dataset's own synsets.

    Returns:
        A tuple of 1000 strings.

    Example:
    ```python
    imagenet_class_names()[281]   # "tabby"
    ```
    """
    text = importlib.resources.files("keras_cam").joinpath("data/imagenet_class_names.txt")
    return tuple(text.read_text(encoding="utf-8").splitlines())


def read_class_names(spec: str) -> tuple[str, ...]:
    """Class names from a text file (one per line), a comma-separated list, or `"imagenet"`.

    Args:
        spec: a path to a UTF-8 text file with one name per line (blank lines at the end are
            dropped), `"imagenet"` for `imagenet_class_names()`, or names separated by commas
            (`"cat,dog,bird"`).

    Returns:
        The names, index 0 first.

    Raises:
        ValueError: `spec` is no file, not `"imagenet"` and not a list of two or more names, or
            the file or list has an empty name.

    Example:
    ```python
    read_class_names("circle,square,triangle,cross")[2]   # "triangle"
    ```
    """
    path = pathlib.Path(spec)
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").rstrip().splitlines()]
        place = f"{path}, line"
        if not names:
            raise ValueError(f"class names: {path} lists no names; give one name per line.")
    elif spec.strip().lower() == IMAGENET:
        return imagenet_class_names()
    elif "," in spec:
        names = [name.strip() for name in spec.split(",")]
        place = f"{spec!r}, name"
    else:
        raise ValueError(
            f"class names {spec!r}: no such file; give a text file of one name per line, "
            f"names separated by commas (e.g. 'cat,dog'), or '{IMAGENET}'."
        )
    for number, name in enumerate(names, start=1):
        if not name:
            raise ValueError(f"class names: {place} {number} is empty; give one name per class.")
    return tuple(names)


def write_class_names(path: PathLike, names: tuple[str, ...] | list[str]) -> pathlib.Path:
    """Writes class names, one per line, e.g. to `CLASS_NAMES_FILE` next to a saved model.

    Args:
        path: the text file to write.
        names: the names, index 0 first; none may contain a line break.

    Returns:
        The path written.

    Raises:
        ValueError: a name is empty or contains a line break.

    Example:
    ```python
    write_class_names(pathlib.Path("out") / CLASS_NAMES_FILE, ["circle", "square"])
    ```
    """
    from keras_cam._files import atomic_writer

    for name in names:
        if not name.strip() or "\n" in name or "\r" in name:
            raise ValueError(f"class name {name!r} is empty or has a line break.")
    path = pathlib.Path(path)
    with atomic_writer(path) as file:
        file.write(("\n".join(names) + "\n").encode("utf-8"))
    return path


def model_class_names(model_path: PathLike) -> tuple[str, ...] | None:
    """The names in `CLASS_NAMES_FILE` next to a model file, or `None` when there is none.

    Args:
        model_path: the model file (e.g. `demo_output/model.keras`).

    Returns:
        `read_class_names` of `<model folder>/class_names.txt`, or `None`.

    Example:
    ```python
    names = model_class_names("demo_output/model.keras")   # ("circle", "square", ...)
    ```
    """
    path = pathlib.Path(model_path).parent / CLASS_NAMES_FILE
    return read_class_names(str(path)) if path.is_file() else None


def preprocess(pixels: np.ndarray, name: str) -> np.ndarray:
    """Applies a `PREPROCESSING` entry to pixels `(B, H, W, C)` in [0, 255].

    Args:
        pixels: uint8 or float pixels, channels-last; never modified.
        name: a key of `PREPROCESSING`.

    Returns:
        float32 `(B, H, W, C)`, channels-last (see `to_data_format`).

    Raises:
        ValueError: an unknown `name`, or a `keras.applications` preprocessing of images
            that are not RGB.

    Example:
    ```python
    images = preprocess(np.stack([pixels]), "vgg16")
    ```
    """
    if name not in PREPROCESSING:
        raise ValueError(f"Unknown preprocessing {name!r}; known: {', '.join(PREPROCESSING)}.")
    if name not in ("scale01", "none") and pixels.shape[-1] != 3:
        raise ValueError(f"the preprocessing {name!r} needs RGB images; the model takes "
                         f"{pixels.shape[-1]} channel(s).")
    # A fresh float32 copy: some `preprocess_input` functions modify their argument in place.
    return np.asarray(PREPROCESSING[name](pixels.astype(np.float32)), np.float32)


def default_preprocessing(model: keras.Model) -> str:
    """The `PREPROCESSING` a model's pixels get unless one is named, read from its input dtype.

    A model whose input is integer or bool (e.g. `keras.Input(shape, dtype="uint8")` followed
    by `Rescaling`) takes the raw pixels and scales them itself: `"none"`, the pixels 0-255
    as `read_image` gives them (integers, rounded after resizing). Any other preprocessing
    would give it values its cast to that dtype truncates. A float input gets
    `DEFAULT_PREPROCESSING` (`"scale01"`).

    Args:
        model: a single-input Functional or Sequential model.

    Returns:
        `"none"` for an integer or bool input, else `DEFAULT_PREPROCESSING`.

    Example:
    ```python
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    outputs = keras.layers.Dense(2)(keras.layers.Rescaling(1 / 255)(inputs))
    default_preprocessing(keras.Model(inputs, outputs))   # "none"
    ```
    """
    import keras

    from keras_cam.surgery import input_dtype

    dtype = input_dtype(model)
    return DEFAULT_PREPROCESSING if keras.backend.is_float_dtype(dtype) else "none"


def input_layout(model: keras.Model) -> tuple[tuple[int | None, ...], str]:
    """The images a model takes, read from its input without tracing it.

    Args:
        model: a single-input Functional or Sequential model.

    Returns:
        `(image_shape, data_format)`: `(height, width, channels)` whatever the layout (a size
        may be `None`: any), and `"channels_last"` or `"channels_first"`.

    Example:
    ```python
    (height, width, channels), layout = input_layout(model)
    ```
    """
    from keras_cam.surgery import channels_last_shape, data_format

    layout = data_format(model)
    return channels_last_shape(model.inputs[0].shape[1:], layout), layout


def to_data_format(images: np.ndarray, data_format: str) -> np.ndarray:
    """Channels-last images, one `(H, W, C)` or a batch `(B, H, W, C)`, in a model's layout.

    Args:
        images: one channels-last image `(H, W, C)` or a batch `(B, H, W, C)`.
        data_format: `"channels_last"` or `"channels_first"` (an explainer's `data_format`).

    Returns:
        `images` itself for `"channels_last"`; for `"channels_first"` a contiguous copy with
        the channel axis moved before the spatial ones: `(C, H, W)` or `(B, C, H, W)`.

    Raises:
        ValueError: `data_format` is neither layout, or `images` is neither 3-D nor 4-D.

    Example:
    ```python
    images = to_data_format(preprocess(pixels[None], "scale01"), cam.data_format)
    ```
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {DATA_FORMATS} (an explainer's `data_format`); "
            f"received {data_format!r}."
        )
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(
            "`images` must be one channels-last image (H, W, C) or a batch (B, H, W, C); "
            f"received shape {images.shape}."
        )
    if data_format == "channels_first":
        return np.ascontiguousarray(np.moveaxis(images, -1, -3))
    return images


def read_labels(
    path: PathLike, folder: PathLike, num_classes: int | None = None
) -> list[LabelRow]:
    """Reads a labels CSV: one image per row, `FILE,LABEL` or `FILE,LABEL,X0,Y0,X1,Y1`.

    Blank rows and rows starting with `#` are skipped. `FILE` is relative to `folder`; the box,
    if any, is in the file's own pixels (`x1`/`y1` exclusive); either every row has a box or
    none has.

    Args:
        path: the CSV file.
        folder: the folder the files are in.
        num_classes: the model's number of classes, to refuse a `LABEL` outside 0 to
            `num_classes - 1` naming its line; `None` checks no range. Defaults to `None`.

    Returns:
        `[(image path, label, box or None), ...]` in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed row or a class out of range (the message names the file and
            the line), no rows, or boxes on some rows only.

    Example:
    ```python
    rows = read_labels("labels.csv", "images/")   # [(Path("images/a.png"), 1, None), ...]
    ```
    """
    path, folder = pathlib.Path(path), pathlib.Path(folder)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    rows: list[LabelRow] = []
    with open(path, newline="", encoding="utf-8") as file:
        for line_number, fields in enumerate(csv.reader(file), start=1):
            fields = [field.strip() for field in fields]
            if not fields or not fields[0] or fields[0].startswith("#"):
                continue
            if len(fields) not in (2, 6):
                raise ValueError(
                    f"{path}, line {line_number}: expected FILE,LABEL or FILE,LABEL,X0,Y0,X1,Y1; "
                    f"got {len(fields)} fields."
                )
            try:
                numbers = [int(field) for field in fields[1:]]
            except ValueError:
                raise ValueError(
                    f"{path}, line {line_number}: LABEL and the box must be integers; got "
                    f"{','.join(fields[1:])!r} (a header row: start it with '#' to keep it)."
                ) from None
            if num_classes is not None and not 0 <= numbers[0] < num_classes:
                raise ValueError(
                    f"{path}, line {line_number}: class {numbers[0]} is out of range for a "
                    f"model of {num_classes} classes (0 to {num_classes - 1})."
                )
            rows.append((folder / fields[0], numbers[0], tuple(numbers[1:]) or None))
    if not rows:
        raise ValueError(f"{path} lists no images.")
    with_boxes = sum(box is not None for _, _, box in rows)
    if 0 < with_boxes < len(rows):
        raise ValueError(f"{path}: give a box on every row or on none ({with_boxes} of "
                         f"{len(rows)} rows have one).")
    return rows


def scale_box(
    box: tuple[int, ...],
    original: tuple[int, int],
    resized: tuple[int, int],
    path: PathLike = "the image",
) -> tuple[int, int, int, int]:
    """Maps an `(x0, y0, x1, y1)` box from an image's pixels to those of its resized copy.

    The box grows outwards to whole pixels (floor of the start, ceiling of the end), keeping
    at least one pixel.

    Args:
        box: `(x0, y0, x1, y1)` in the original image, `x1`/`y1` exclusive.
        original: the original `(height, width)`.
        resized: the resized `(height, width)`.
        path: the image's name in error messages. Defaults to `"the image"`.

    Returns:
        The box in the resized image's pixels.

    Raises:
        ValueError: the box is empty or not inside the original image.

    Example:
    ```python
    scale_box((0, 0, 25, 20), (40, 50), (32, 32))   # (0, 0, 16, 16)
    ```
    """
    x0, y0, x1, y1 = box
    height, width = original
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"the box {box} of {path} is not inside the {width}x{height} image with x0 < x1 and "
            "y0 < y1 (x1, y1 exclusive)."
        )
    scale_y, scale_x = resized[0] / height, resized[1] / width
    new_x0, new_y0 = int(np.floor(x0 * scale_x)), int(np.floor(y0 * scale_y))
    new_x1 = max(new_x0 + 1, min(resized[1], int(np.ceil(x1 * scale_x))))
    new_y1 = max(new_y0 + 1, min(resized[0], int(np.ceil(y1 * scale_y))))
    return new_x0, new_y0, new_x1, new_y1


def read_image_folder(
    folder: PathLike,
    image_shape: tuple[int | None, int | None, int],
    labels: PathLike | None = None,
    preprocessing: str = DEFAULT_PREPROCESSING,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Reads a folder of images (or those a labels CSV lists), preprocessed, with labels and boxes.

    Args:
        folder: the image folder.
        image_shape: `(height, width, channels)` the images are resized to, e.g. an
            explainer's `image_shape`; both sizes must be known (one batch).
        labels: a labels CSV (see `read_labels`), or `None` for every image file of the folder
            (sorted by name, no labels). Defaults to `None`.
        preprocessing: a key of `PREPROCESSING` (`default_preprocessing(model)` gives the
            one a model takes by default). Defaults to `"scale01"`.
        num_classes: the model's number of classes, checked against the labels (see
            `read_labels`). Defaults to `None`.

    Returns:
        `(images, labels, boxes)`: float32 channels-last `(B, H, W, C)`, int32 `(B,)` or
        `None`, int32 `(B, 4)` boxes scaled to the resized images (see `scale_box`) or `None`.

    Raises:
        FileNotFoundError: no such folder, labels file or listed image.
        ValueError: a model of any input size, an empty folder, or unusable labels, boxes or
            images.

    Example:
    ```python
    images, labels, boxes = read_image_folder("images/", cam.image_shape, "labels.csv")
    ```
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if None in image_shape[:2]:
        raise ValueError(
            f"the model takes images of any size {image_shape}; a folder is read as one batch "
            "of one size: save the model with a fixed input size."
        )
    if labels is None:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
        rows: list[tuple[pathlib.Path, int | None, tuple[int, ...] | None]] = [
            (path, None, None) for path in paths
        ]
    else:
        rows = list(read_labels(labels, folder, num_classes))
    pixels, boxes = [], []
    for path, _, box in rows:
        rgb, original_size = read_image(path, image_shape)
        pixels.append(rgb)
        if box is not None:
            boxes.append(scale_box(box, original_size, rgb.shape[:2], path))
    images = preprocess(np.stack(pixels), preprocessing)
    classes = None if labels is None else np.array([row[1] for row in rows], np.int32)
    return images, classes, np.array(boxes, np.int32) if boxes else None


def image_paths(source: PathLike) -> list[pathlib.Path]:
    """The image files of a folder, or those a glob pattern matches, sorted by path.

    Args:
        source: a folder (its files with an `IMAGE_EXTENSIONS` suffix) or a glob pattern
            such as `"data/**/*.jpg"` (`**` recurses).

    Returns:
        The sorted paths.

    Raises:
        FileNotFoundError: `source` is neither a folder nor a pattern.
        ValueError: no image in the folder, or no file matches the pattern.

    Example:
    ```python
    paths = image_paths("val/*/*.JPEG")
    ```
    """
    text = str(source)
    if not any(char in text for char in "*?["):
        folder = pathlib.Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
        return paths
    import glob

    paths = sorted(pathlib.Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p))
    if not paths:
        raise ValueError(f"no file matches the pattern {text!r}")
    return paths


def read_image_batches(
    rows: Sequence[tuple[pathlib.Path, int | None, tuple[int, ...] | None]],
    image_shape: tuple[int | None, int | None, int],
    preprocessing: str = DEFAULT_PREPROCESSING,
    batch_size: int = 32,
) -> Iterator[np.ndarray | tuple[np.ndarray, ...]]:
    """Reads images batch by batch (a folder of any size), with their labels and boxes.

    Like `read_image_folder`, one batch at a time: the images are resized to `image_shape`,
    preprocessed, and their boxes scaled to the resized images (see `scale_box`).

    Args:
        rows: `(path, label, box)` per image: `read_labels` rows, or `(path, None, None)`
            (e.g. for `image_paths`); all rows have labels (and boxes) or none.
        image_shape: `(height, width, channels)`, both sizes known.
        preprocessing: a key of `PREPROCESSING`. Defaults to `"scale01"`.
        batch_size: images per batch. Defaults to `32`.

    Yields:
        float32 channels-last images `(b, H, W, C)`, or `(images, labels)` (int32 `(b,)`),
        or `(images, labels, boxes)` (int32 `(b, 4)`) when the rows have them.

    Example:
    ```python
    rows = [(path, None, None) for path in image_paths("images/")]
    for batch in read_image_batches(rows, cam.image_shape, "resnet50", 64):
        maps = cam(batch)
    ```
    """
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        pixels, boxes = [], []
        for path, _, box in chunk:
            rgb, original_size = read_image(path, image_shape)
            pixels.append(rgb)
            if box is not None:
                boxes.append(scale_box(box, original_size, rgb.shape[:2], path))
        images = preprocess(np.stack(pixels), preprocessing).astype(np.float32)
        if chunk[0][1] is None:
            yield images
        elif not boxes:
            yield images, np.array([row[1] for row in chunk], np.int32)
        else:
            yield images, np.array([row[1] for row in chunk], np.int32), np.array(boxes, np.int32)
