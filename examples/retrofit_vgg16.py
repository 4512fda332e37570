"""A VGG16 with its fully connected head, retrofitted with global average pooling for CAM.

The story of the CAM paper (Zhou et al., 2016, Sec. 2) on a network you already have:

1. A VGG16 with its original `Flatten -> fc1 -> fc2 -> predictions` head is trained on the
   built-in shapes data (the stand-in for a pretrained network; `--weights imagenet` starts
   from the real ImageNet conv base, frozen). CAM cannot read such a head; its Grad-CAM is
   shown.
2. `keras_cam.retrofit_gap` replaces the head by conv base -> GlobalAveragePooling2D ->
   Dense(softmax), sharing the trained conv layers, and `keras_cam.fine_tune_gap` trains the
   new head, then the whole base at a lower rate.
3. CAM reads the maps straight from the new head. Held-out accuracy and the pointing game
   (the map's peak inside the object's box) of both stages are printed, and a figure with
   the images, the FC network's Grad-CAM and the retrofitted network's CAM is saved.

`--quick` (what the tests run, about 2-3 minutes on 2 CPU cores) trains a VGG16 whose layers
are 8 times narrower (8-16-32-64-64 filters, fc 512) on 64x64 images, and cuts the base at
`block4_conv3` instead of removing only the last max-pool: at 64x64 VGG16's block5 is 4x4 with
a receptive field larger than the image, while `block4_conv3` gives 8x8 maps (the paper's
14x14 at 224x224 is the same 1/16 of the input). The full mode keeps the widths and the
paper's cut (`block5_conv3`, last max-pool removed) at 128x128. Without `--weights` nothing is
downloaded and the conv layers are initialized with He-normal weights (plain VGG16 stacks train
poorly from Keras' default Glorot initialization).

Run:
    python examples/retrofit_vgg16.py --quick
    python examples/retrofit_vgg16.py                       # full width, 128x128, CPU: slow
    python examples/retrofit_vgg16.py --weights imagenet    # the real conv base (downloads)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import keras
import numpy as np
from keras import layers

import keras_cam as kc
from keras_cam.datasets import SHAPE_NAMES, shapes
from keras_cam.metrics import pointing_game

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
"""Filters and convolutions of VGG16's five blocks (Simonyan & Zisserman, 2015, config D)."""
FC_UNITS = 4096

QUICK = dict(image_size=64, width_divisor=8, cut="block4_conv3", train=2000, epochs=6,
             gap_epochs=2, fine_tune_epochs=3)
FULL = dict(image_size=128, width_divisor=1, cut=None, train=4096, epochs=10,
            gap_epochs=3, fine_tune_epochs=5)


def vgg16_base(image_size: int, width_divisor: int, weights: str | None) -> keras.Model:
    """VGG16's conv base (`include_top=False`), with `keras.applications`' layer names.

    Args:
        image_size: side of the square RGB input.
        width_divisor: divides every layer's filter count (1: VGG16 itself).
        weights: `None` (He-normal initialization), `"imagenet"` or a weights file of
            `keras.applications.VGG16(include_top=False)`; those need `width_divisor=1`.

    Returns:
        The base `images -> block5_pool`.
    """
    if weights is not None:
        if width_divisor != 1:
            raise ValueError("Pretrained weights need the full VGG16 widths (--width-divisor 1).")
        return keras.applications.VGG16(
            include_top=False, weights=weights, input_shape=(image_size, image_size, 3)
        )
    inputs = keras.Input((image_size, image_size, 3), name="input_layer")
    x = inputs
    for block, (filters, convolutions) in enumerate(VGG16_BLOCKS, start=1):
        for index in range(1, convolutions + 1):
            x = layers.Conv2D(
                filters // width_divisor, 3, padding="same", activation="relu",
                kernel_initializer="he_normal", name=f"block{block}_conv{index}",
            )(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16")


def with_fc_head(base: keras.Model, num_classes: int, width_divisor: int) -> keras.Model:
    """VGG16's original head on `base`: Flatten -> fc1 -> fc2 -> predictions (softmax)."""
    inputs = keras.Input(base.input_shape[1:], name="images")
    x = layers.Flatten(name="flatten")(base(inputs))
    for name in ("fc1", "fc2"):
        x = layers.Dense(FC_UNITS // width_divisor, activation="relu", name=name)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="vgg16_fc")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="8x narrower VGG16 on 64x64 images, cut at block4_conv3: minutes")
    parser.add_argument("--weights", default=None,
                        help="'imagenet' or a VGG16 (include_top=False) weights file; "
                             "default: He-normal initialization, nothing downloaded")
    parser.add_argument("--image-size", type=int, help="input side (quick 64, full 128)")
    parser.add_argument("--width-divisor", type=int, help="divides every width (quick 8, full 1)")
    parser.add_argument("--train", type=int, help="training images (quick 2000, full 4096)")
    parser.add_argument("--epochs", type=int, help="FC-head epochs (quick 6, full 10)")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("examples_output/retrofit_vgg16.png"))
    parser.add_argument("--show", type=int, default=6, help="held-out images in the figure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    size = args.image_size
    train_images, train_labels, _ = shapes(args.train, image_size=size, seed=args.seed)
    test_images, test_labels, test_boxes = shapes(256, image_size=size, seed=args.seed + 1)
    if args.weights is None:  # from scratch: images in [0, 1]
        x_train, x_test = train_images, test_images
    else:  # VGG16's own preprocessing of 0-255 RGB
        preprocess = keras.applications.vgg16.preprocess_input
        x_train, x_test = preprocess(train_images * 255.0), preprocess(test_images * 255.0)

    # 1. VGG16 with its fully connected head.
    base = vgg16_base(size, args.width_divisor, args.weights)
    base.trainable = args.weights is None  # a pretrained base stays frozen, as in transfer
    fc_model = with_fc_head(base, len(SHAPE_NAMES), args.width_divisor)
    fc_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                     loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fc_model.fit(x_train, train_labels, epochs=args.epochs, batch_size=32, verbose=2)
    fc_probabilities = fc_model.predict(x_test, verbose=0)
    fc_predictions = fc_probabilities.argmax(axis=1)
    gradcam = kc.GradCAM(fc_model)
    grad_maps = gradcam(x_test, targets=fc_predictions)

    # 2. Retrofit: the trained conv layers (shared), cut, then GAP -> Dense; fine-tune.
    base.trainable = True
    cut = base if args.cut is None else keras.Model(
        base.input, base.get_layer(args.cut).output, name=f"vgg16_to_{args.cut}"
    )
    gap_model = kc.retrofit_gap(cut, num_classes=len(SHAPE_NAMES), train_base=False,
                                remove_last_pool=args.cut is None)
    kc.fine_tune_gap(
        gap_model, (x_train, train_labels), epochs=args.gap_epochs, learning_rate=1e-2,
        fine_tune_epochs=args.fine_tune_epochs, unfreeze=True, fine_tune_learning_rate=3e-4,
        batch_size=32, verbose=2,
    )
    gap_probabilities = gap_model.predict(x_test, verbose=0)
    gap_predictions = gap_probabilities.argmax(axis=1)

    # 3. CAM from the new head.
    cam = kc.CAM(gap_model)
    cam_maps = cam(x_test, targets=gap_predictions)

    results = {
        "fc_accuracy": float(np.mean(fc_predictions == test_labels)),
        "fc_gradcam_layer": gradcam.layer.name,
        "fc_gradcam_pointing_game": float(pointing_game(grad_maps, test_boxes).mean),
        "gap_accuracy": float(np.mean(gap_predictions == test_labels)),
        "cam_layer": cam.layer.name,
        "cam_map_size": list(cam.layer.output.shape[1:3]),
        "cam_pointing_game": float(pointing_game(cam_maps, test_boxes).mean),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(f"VGG16 (Flatten -> Dense head): held-out accuracy {results['fc_accuracy']:.3f}, "
          f"Grad-CAM ({gradcam.layer.name}) pointing game "
          f"{results['fc_gradcam_pointing_game']:.3f}")
    print(f"retrofitted (GAP -> Dense head): held-out accuracy {results['gap_accuracy']:.3f}, "
          f"CAM ({cam.layer.name}, {results['cam_map_size'][0]}x{results['cam_map_size'][1]}) "
          f"pointing game {results['cam_pointing_game']:.3f}")

    shown = slice(0, args.show)
    figure = kc.plot_cams(
        test_images[shown],
        {"Grad-CAM, FC head": grad_maps[shown], "CAM, retrofitted": cam_maps[shown]},
        class_names=SHAPE_NAMES, labels=test_labels[shown],
        predictions=gap_predictions[shown], probabilities=gap_probabilities[shown],
    )
    print(f"figure saved to {kc.save_figure(figure, args.out)}")
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
