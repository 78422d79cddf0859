"""DVC stage 'report': thin entry point; arguments as in `python -m pipeline report --help`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
