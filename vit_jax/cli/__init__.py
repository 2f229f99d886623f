"""What every `python -m vit_jax.X` command line shares.

config_flag.py   the `--config FILE --config.key=value` flag of train and plan, its errors
config_files.py  `--config digits` and `--config configs/digits.py` outside a checkout
huge_pages.py    train and infer re-execute themselves once with glibc's huge-page tunable
                 (XLA:CPU's large per-step buffers; VIT_JAX_HUGE_PAGES=0 opts out)
quiet.py         TensorFlow's import banners and the libraries' start-up narration kept off
                 the console (`install` runs whenever vit_jax is imported)

Nothing is imported here: `vit_jax/__init__.py` imports `quiet` on every `import vit_jax`.
"""
