"""The `--config FILE --config.key=value` flag every config-driven CLI shares, and its errors.

Flag styles: `train` and `plan` take a config, and ml_collections' `--config.key=value`
overrides exist only as absl flags, so those two use absl; the CLIs without a config (infer,
figures, export, convert, fewshot, data.records) use argparse. All of them report user errors
the same way (`vit_jax.errors.report`: `Error: <message>`, exit 2).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import ml_collections

from vit_jax import errors

CONFIG_HELP = "Config file, e.g. configs/digits.py or configs/finetune.py:b16,cifar10."


def define_config_flag(flag_values: Any, argv: list[str]) -> Any:
    """`--config` in `flag_values`; overrides `--config.a.b=...` are read from `argv`."""
    from ml_collections import config_flags

    return config_flags.DEFINE_config_file(
        "config", None, CONFIG_HELP, flag_values=flag_values, sys_argv=argv
    )


def parse_command_line(
    argv: list[str], define_flags: Callable[[Any, list[str]], Any], doc: str, usage: str
) -> tuple[ml_collections.ConfigDict, Any] | int:
    """Parses `argv` with the flags `define_flags(flag_values, argv)` defines (it returns the
    config flag). Returns (config, flag_values), or the exit code: 0 after printing `doc` for
    --help, 2 after printing a one-line error and `usage` for a bad flag or config file.
    """
    from absl import flags

    from vit_jax.cli import config_files

    # A config given by name or as configs/NAME.py also works outside a checkout (the wheel).
    argv = config_files.resolve_argv(argv)
    flag_values = flags.FlagValues()
    config_flag = define_flags(flag_values, argv)
    if {"-h", "--help"} & set(argv[1:]):
        print(f"{doc}\nFlags:\n{flag_values.get_help()}")
        return 0
    try:
        flag_values(argv)
        config = config_flag.value
        config.keys()  # A config file that failed to load raises here.
    except Exception as e:  # Whatever the flag or config-file problem, report it plainly.
        message = config_key_error(argv) or last_line(e)
        return errors.report(f"{message}\n{usage}")
    return config, flag_values


def flatten(config: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """`('model.hidden_size', 768)`, ... for every leaf of a ConfigDict."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def config_key_error(argv: list[str]) -> str | None:
    """Names the first `--config.a.b=...` override whose key the config does not have."""
    from absl import flags

    # The config file alone (either `--config=F` or `--config F`), to look the keys up.
    plain = [argv[0]]
    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith("--config="):
            plain.append(arg)
        elif arg == "--config" and i + 1 < len(argv):
            plain.append(f"--config={argv[i + 1]}")
    try:
        flag_values = flags.FlagValues()
        config = define_config_flag(flag_values, plain)
        flag_values(plain)
        known = [path for path, _ in flatten(config.value)]
    except Exception:
        return None
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0]
        if path not in known and not any(k.startswith(path + ".") for k in known):
            close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]}?" if close else ""
            return (
                f"Unknown config key {path!r} in {arg}.{hint} Every key is defined, with a "
                "comment, in configs/base.py."
            )
    return None


def last_line(error: Exception) -> str:
    """The gist of a flag error: config-file errors arrive with their traceback as text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return f"{type(error).__name__}: {error}"
    return f"cannot load the config: {lines[-1]}"
