"""One-line messages for the configuration errors Hydra and OmegaConf raise on a user's overrides.

Hydra prints its own multi-line report and exits 1 for an unknown key, a missing group option or an
override it cannot parse; detsim apps turn these into the same one line as every other user error:
what the user wrote, what was expected (the keys or the options of the group), what was found.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Sequence

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

_SHOWN_KEYS = 12  # a config with more keys than this lists only the first ones in a message


def describe(exc: BaseException, argv: Sequence[str], config_name: str) -> str:
    """A one-line `<what the user wrote>: expected ..., found ...` for a Hydra/OmegaConf config error."""
    cause = exc.__cause__
    if isinstance(exc, MissingConfigException) and exc.options is not None and exc.missing_cfg_file:
        return _missing_option(exc.missing_cfg_file, list(exc.options), argv)
    if isinstance(exc, OverrideParseException):
        return (f"override {exc.override!r}: expected key=value in Hydra's override grammar (n=1000, "
                f"+new_key=1, ~key, 'text=a b'), found {_parse_problem(exc.message)!r}")
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.parent_node is not None:
        return _unknown_key(cause, argv)
    if isinstance(exc, OmegaConfBaseException):
        return _in_config(exc, config_name)
    return _hydra_message(exc)


def _missing_option(missing: str, options: list[str], argv: Sequence[str]) -> str:
    group, _, option = missing.rpartition("/")
    written = _override_for(group, argv) or f"{group}={option}"
    close = difflib.get_close_matches(option, options, n=1)
    hint = f" (did you mean {group}={close[0]}?)" if close else ""
    return (f"{written}: expected one of the options of '{group}': {', '.join(options)}{hint}, "
            f"found no conf/{group}/{option}.yaml")


def _unknown_key(cause: ConfigKeyError | ConfigAttributeError, argv: Sequence[str]) -> str:
    full_key = str(cause.full_key or cause.key)
    leaf = str(cause.key)
    written = _override_for(full_key, argv) or full_key
    keys = [str(k) for k in cause.parent_node.keys() if k != "hydra"]  # type: ignore[union-attr]
    parent = full_key.rpartition(".")[0]
    where = f"under '{parent}'" if parent else "at the top level"
    close = difflib.get_close_matches(leaf, keys, n=3)
    if close:
        expected = f"a key {where} (did you mean {', '.join(close)}?)"
    else:
        shown = ", ".join(keys[:_SHOWN_KEYS]) + (", ..." if len(keys) > _SHOWN_KEYS else "")
        expected = f"one of the keys {where}: {shown}"
    return f"{written}: expected {expected}; add a new key with +{written.lstrip('+~')}, found no key '{full_key}'"


def _in_config(exc: OmegaConfBaseException, config_name: str) -> str:
    """An OmegaConf error met while the task read its config: a missing value, a removed key, a bad ${...}."""
    key = str(getattr(exc, "full_key", None) or getattr(exc, "key", None) or "config")
    if isinstance(exc, MissingMandatoryValue):
        return f"{key}: expected a value ({key}=...), found none (conf/{config_name}.yaml leaves it ???)"
    if isinstance(exc, InterpolationResolutionError):
        return f"{key}: expected an interpolation that resolves, found {_first_line(str(exc))!r}"
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
        return f"{key}: expected this key in conf/{config_name}.yaml (was it removed with ~{key}?), found no such key"
    return f"{key}: expected a valid value, found {_first_line(str(exc))!r}"


_APPEND = re.compile(r"Could not append to config\. An item is already at '(?P<key>[^']+)'")
_DELETE = re.compile(r"Could not delete from config\. '(?P<key>[^']+)' does not exist")


def _hydra_message(exc: BaseException) -> str:
    text = str(exc)
    if match := _APPEND.search(text):
        key = match["key"]
        return (f"+{key}: expected a new key after '+', found '{key}' already in the config "
                f"(write {key}=... to change it, ++{key}=... to add or change)")
    if match := _DELETE.search(text):
        key = match["key"]
        return f"~{key}: expected a key of the config to delete, found no key '{key}'"
    return f"configuration: expected a config and overrides Hydra can apply, found {_first_line(text)!r}"


def _override_for(key: str, argv: Sequence[str]) -> str | None:
    """The command-line override that sets `key` (with any +/++/~ prefix), as the user wrote it."""
    for arg in argv:
        written = arg.split("=", 1)[0].lstrip("+~")
        if not arg.startswith("-") and (written == key or written.startswith(f"{key}.")):
            return arg
    return None


def _parse_problem(message: str) -> str:
    """The parser's own words from an OverrideParseException message, without Hydra's preamble and link."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("See https://", "Error parsing override"))]
    return (useful or lines or [""])[0]


def _first_line(text: Any) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")
