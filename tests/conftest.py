"""Shared test set-up: quiet TensorFlow, deterministic seeds, no GPU TF32 surprises."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import settings  # noqa: E402

tf.config.experimental.enable_tensor_float_32_execution(False)  # exact fp32 on GPUs too

# Hypothesis draws the same examples on every run (a test's own `@settings` keep this unless
# they set `derandomize` themselves), so a failure is reproducible and the suite deterministic.
settings.register_profile("keras_cam", derandomize=True)
settings.load_profile("keras_cam")


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same seeds, so results do not depend on test order."""
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
