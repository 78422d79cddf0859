"""DVC stage 'aggregate': thin entry point; arguments as in `python -m pipeline aggregate --help`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["aggregate", *sys.argv[1:]]))
