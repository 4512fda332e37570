"""Retrofit VGG16 with global average pooling, fine-tune it, and compare CAM with Grad-CAM.

VGG16's stock head (Flatten -> Dense -> Dense -> Dense) has no global average pooling, so
the original CAM cannot be read from it. `keras_cam.retrofit_gap` rebuilds it as
VGG16 conv base (last max-pool removed) -> GlobalAveragePooling2D -> Dense(softmax),
`keras_cam.fine_tune_gap` trains it on the built-in synthetic shapes data, and the script
saves CAM next to Grad-CAM for a few held-out images. On a GAP -> Dense model the two are
the same map (Grad-CAM's weights are CAM's divided by the map's area), which the printed
agreement confirms.

Nothing is downloaded by default (`--weights none` trains the whole network from random
weights, which is slow to learn on a CPU); with `--weights imagenet` Keras downloads the
ImageNet weights, the base starts frozen and its last block is fine-tuned afterwards.

Run:
    python examples/retrofit_vgg16.py                       # 64x64, random init, CPU
    python examples/retrofit_vgg16.py --weights imagenet --image-size 128
"""

from __future__ import annotations

import argparse
import pathlib
import time

import keras
import numpy as np

import keras_cam as kc
from keras_cam.datasets import SHAPE_NAMES, shapes
from keras_cam.metrics import pointing_game
from keras_cam.methods.cam import CAM
from keras_cam.retrofit import BACKBONES, fine_tune_gap, retrofit_gap
from keras_cam.visualize import plot_cams, save_figure


class EpochTimer(keras.callbacks.Callback):
    """Records the wall-clock seconds of every training epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="vgg16", choices=sorted(BACKBONES),
                        help="the keras.applications base to retrofit")
    parser.add_argument(
        "--weights",
        default="none",
        help="'none' (random init, whole network trains), 'imagenet' or a weights file path",
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=4, help="2 to 4 shape classes")
    parser.add_argument("--train", type=int, default=1024, help="training images")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--fine-tune-epochs", type=int, default=2,
                        help="stage 2 epochs (last block unfrozen); used with pretrained weights")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="stage 1 learning rate (default 1e-4 from scratch, 1e-3 pretrained)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--show", type=int, default=6, help="images in the figure")
    parser.add_argument("--out", default="examples_output/retrofit_vgg16.png")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    weights = None if args.weights.lower() == "none" else args.weights
    size = args.image_size

    # Data: coloured shapes on clutter, labelled by shape, with ground-truth boxes.
    train_images, train_labels, _ = shapes(
        args.train, image_size=size, seed=args.seed, num_classes=args.classes
    )
    test_images, test_labels, test_boxes = shapes(
        256, image_size=size, seed=args.seed + 1, num_classes=args.classes
    )
    # The base's own preprocessing (vgg16.preprocess_input for VGG16) on 0-255 RGB.
    preprocess = BACKBONES[args.base].preprocess_input
    x_train, x_test = preprocess(train_images * 255.0), preprocess(test_images * 255.0)

    # From scratch nothing is worth freezing; pretrained, the head trains first.
    from_scratch = weights is None
    model = retrofit_gap(
        args.base,
        num_classes=args.classes,
        input_shape=(size, size, 3),
        weights=weights,
        train_base=from_scratch,
    )
    timer = EpochTimer()
    fine_tune_gap(
        model,
        (x_train, train_labels),
        validation_data=(x_test, test_labels),
        epochs=args.epochs,
        learning_rate=args.learning_rate or (1e-4 if from_scratch else 1e-3),
        fine_tune_epochs=0 if from_scratch else args.fine_tune_epochs,
        unfreeze="last_block",
        callbacks=[timer],
        batch_size=args.batch_size,
        verbose=2,
    )
    per_epoch = np.median(timer.seconds[1:] or timer.seconds)
    print(
        f"fine-tune time per epoch: {per_epoch:.1f} s (median; {args.train} images of "
        f"{size}x{size}, batch {args.batch_size}; first epoch incl. tracing: "
        f"{timer.seconds[0]:.1f} s)"
    )
    predictions = model.predict(x_test, verbose=0).argmax(axis=1)
    print(f"test accuracy: {np.mean(predictions == test_labels):.3f} "
          f"(chance {1 / args.classes:.3f})")

    # CAM from the Dense kernel; Grad-CAM with the logit score on the same layer.
    cam = CAM(model)
    gradcam = kc.GradCAM(model, layer=cam.layer)
    cam_maps = cam(x_test, targets=predictions)
    grad_maps = gradcam(x_test, targets=predictions)
    difference = np.abs(cam_maps - grad_maps).max()
    correlation = np.corrcoef(cam_maps.ravel(), grad_maps.ravel())[0, 1]
    print(f"explained layer: {cam.layer.name} {tuple(cam.layer.output.shape[1:3])}")
    print(f"CAM vs Grad-CAM: max |difference| {difference:.2e}, correlation {correlation:.6f}")
    for name, maps in (("CAM", cam_maps), ("Grad-CAM", grad_maps)):
        print(f"pointing game ({name}): {pointing_game(maps, test_boxes).mean:.3f}")

    shown = slice(0, args.show)
    figure = plot_cams(
        test_images[shown],
        {"CAM": cam_maps[shown], "Grad-CAM": grad_maps[shown]},
        class_names=SHAPE_NAMES,
        labels=test_labels[shown],
        predictions=predictions[shown],
    )
    path = save_figure(figure, pathlib.Path(args.out))
    print(f"figure saved to {path}")


if __name__ == "__main__":
    main()
