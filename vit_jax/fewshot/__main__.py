"""Entry point: `python -m vit_jax.fewshot --checkpoint X.npz --dataset NAME`."""

import sys

if __name__ == "__main__":  # First: huge pages for XLA:CPU's buffers (cli/huge_pages.py).
    from vit_jax.cli import huge_pages

    huge_pages.reexec_with_huge_pages()

    from vit_jax.fewshot.cli import main

    sys.exit(main())
