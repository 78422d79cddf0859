"""DVC stage 'pretrain_vae' (stage 1: the β-VAE, exported frozen): thin entry point; arguments as in `python -m pipeline train --help`."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
