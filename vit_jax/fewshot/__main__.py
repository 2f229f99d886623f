"""Entry point: `python -m vit_jax.fewshot --checkpoint X.npz --dataset NAME`."""

import sys

from vit_jax.fewshot.cli import main

if __name__ == "__main__":
    sys.exit(main())
