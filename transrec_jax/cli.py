"""What every entry point shares: quiet library logs, and user errors as one `error: ...` line.

`cli.run(main)` replaces `app.run(main)`. Flag parsing (including the config file and its
`--config.a.b=value` overrides) and `main` itself turn a user's mistake — an unknown key, a
bad value, a missing file, a ConfigError or DataError — into `error: <one line>` and exit
code 1, before any heavy work. `--verbosity=0` brings the library INFO logs back.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from transrec_jax.config import ConfigError
from transrec_jax.data.errors import DataError

USER_ERRORS = (ConfigError, DataError)


class UsageError(ConfigError):
    """A bad command-line argument of an entry point (not a config key)."""


def run(main) -> None:
    app.run(_reporting_user_errors(main), flags_parser=_parse_flags)


def fail(message: str):
    sys.exit(f"error: {message}")


def _reporting_user_errors(main):
    def wrapped(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]}: every argument is a --flag")
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # Orbax and JAX log every step at INFO
        try:
            main(argv)
        except USER_ERRORS as e:
            fail(_first_line(str(e)))
        except OSError as e:
            if "Failed loading config file" not in str(e):  # raised when the flag is first read
                raise
            fail(_flag_error(e, sys.argv))

    return wrapped


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    # absl's own errors; ml_collections' overrides raise the others (KeyError: no such key)
    except (flags.Error, KeyError, AttributeError, OSError, ValueError) as e:
        fail(_flag_error(e, argv))


def _flag_error(error: BaseException, argv: list[str]) -> str:
    """One line for a flag-parsing failure: the ConfigError inside, or the flag that caused it."""
    user_errors = [cause for cause in _chain(error) if isinstance(cause, USER_ERRORS)]
    if user_errors:  # ml_collections re-raises get_config's error wrapped: the innermost is ours
        return _first_line(str(user_errors[-1]))
    config_flags = [a for a in argv[1:] if a.startswith("--config.")]
    if isinstance(error, (KeyError, AttributeError)):  # an override naming a key that is not there
        missing = str(error.args[0]).strip("'\"") if error.args else ""
        for arg in config_flags:
            key = arg.removeprefix("--config.").split("=")[0]
            if missing in key.split("."):
                return f"config key {key!r} unknown (flag {arg.split('=')[0]})"
    if isinstance(error, flags.UnrecognizedFlagError) and error.flagname.startswith("config."):
        return f"config key {error.flagname.removeprefix('config.')!r} unknown"
    text = str(error)
    if "Failed loading config file" in text:
        path = next((a.split("=", 1)[1].split(":")[0] for a in argv if a.startswith("--config=")), "")
        where = "" if os.path.isabs(path) else f" (relative to the working directory {os.getcwd()})"
        return f"--config={path}: no such config file{where}"
    return _first_line(text)


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
