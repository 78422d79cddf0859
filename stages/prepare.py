"""DVC stage 'prepare': thin entry point; arguments as in `python -m pipeline prepare --help`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
