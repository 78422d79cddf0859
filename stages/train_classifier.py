"""DVC stage 'train_classifier': thin entry point; arguments as in `python -m pipeline train-classifier --help`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-classifier", *sys.argv[1:]]))
