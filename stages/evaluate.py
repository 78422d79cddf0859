"""DVC stage 'evaluate': thin entry point; arguments as in `python -m pipeline evaluate --help`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
