"""`python -m vit_jax.plan`: see `vit_jax.plan.cli`."""

import os
import sys

# The host only compiles: with libtpu installed, jax would otherwise look for a local TPU.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from vit_jax.plan.cli import main

sys.exit(main())
