"""Entry point: `python -m vit_jax.convert SRC DST --to {hf,timm,npz}`."""

import sys

from vit_jax.convert.cli import main

if __name__ == "__main__":
    sys.exit(main())
