"""Experiment configs for `python -m vit_jax.train --config configs/<file>.py[:arg]`."""
