"""keras_cam: class activation maps for Keras 3 / TensorFlow image classifiers."""

__version__ = "0.1.0"
