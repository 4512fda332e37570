"""`python -m keras_cam`: the `keras-cam` command line (see `keras_cam.cli`)."""

import sys

from keras_cam.cli import main

if __name__ == "__main__":
    sys.exit(main())
