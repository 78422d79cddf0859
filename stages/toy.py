"""DVC stage 'toy': thin entry point; arguments as in `python -m pipeline toy --help`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["toy", *sys.argv[1:]]))
