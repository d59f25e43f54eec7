"""Typed settings: dataclass fields are the one definition of every flag and config-file key.

A settings dataclass declares each field with :func:`setting`, whose metadata carries the help
text, the choices, ``nargs``, a metavar and, when it is not ``--field-name``, the flag itself.
:func:`add_arguments` turns the fields into ``argparse`` flags; :func:`explicit_values` reads
back only the flags the user typed, so a run can be assembled as *defaults, then a config file,
then the command line* (:func:`merge`, DINOv2-style ``--config``). Booleans become
``--flag`` (default False), ``--flag/--no-flag`` (default True), or keep a special negative
flag such as ``--no-pea`` (``flag="--no-pea"``: stores False).

:func:`load_file` reads JSON or YAML, :func:`write_json_atomic` writes a run's ``config.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from videorep.errors import VideorepError


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",  # noqa: A002
    flag: str | None = None,
    choices: Sequence[Any] | None = None,
    nargs: str | int | None = None,
    metavar: str | None = None,
    cli: bool = True,
    required: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its command-line description (see the module docstring).

    ``cli=False``: a field with no flag (set from another setting or from a config file only).
    ``required``: the flag must be given on the command line.
    """
    meta = {
        "help": help,
        "flag": flag,
        "choices": tuple(choices) if choices is not None else None,
        "nargs": nargs,
        "metavar": metavar,
        "cli": cli,
        "required": required,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class _Default:
    """An argparse default that is recognisable after parsing (the flag was not given).

    ``str`` shows the wrapped value, so ``--help`` prints the real default.
    """

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


def _scalar_type(hint: Any) -> Any:
    """``int`` for ``int | None``, ``str`` for ``list[str]`` and so on."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (list, tuple) and args:
        return args[0]
    if args and get_origin(hint) is not None:
        return _scalar_type(args[0])
    return hint


def dest(section: str, name: str) -> str:
    """The ``argparse`` dest of field ``name`` of ``section`` (``"data.fps"``; no section:
    ``"fps"``)."""
    return f"{section}.{name}" if section else name


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    section: str,
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """Add one flag per field of dataclass ``cls`` (dest ``"section.field"``); return the flags.

    ``defaults`` overrides field defaults for this parser (e.g. another batch size per method).
    """
    defaults = dict(defaults or {})
    hints = get_type_hints(cls)
    flags = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        if f.name in defaults:
            value = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = None
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": dest(section, f.name), "default": _Default(value)}
        if meta.get("help"):
            kw["help"] = meta["help"]
        if meta.get("required"):
            kw["required"] = True
        hint = hints[f.name]
        if hint is bool:
            if flag.startswith("--no-"):
                kw["action"] = "store_false"
                # "(default: True)" after "--no-pea" reads as "PEA off by default"; the empty
                # "%(default).0s" keeps the help formatter from appending it
                kw["help"] = kw.get("help", "") + "%(default).0s"
            elif value:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw["action"] = "store_true"
        else:
            kw["type"] = _scalar_type(hint)
            kw["metavar"] = meta.get("metavar") or f.name.upper()
            if meta.get("choices") is not None:
                kw["choices"] = meta["choices"]
                kw.pop("metavar")
            if meta.get("nargs") is not None:
                kw["nargs"] = meta["nargs"]
        parser.add_argument(flag, **kw)
        flags.append(flag)
    return flags


def explicit_values(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The fields of ``section`` given on the command line (not left at their default)."""
    prefix = section + "."
    return {
        k[len(prefix) :]: v
        for k, v in vars(args).items()
        if k.startswith(prefix) and not isinstance(v, _Default)
    }


def parser_defaults(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The per-parser defaults of ``section`` (those :func:`add_arguments` was given)."""
    prefix = section + "."
    return {
        k[len(prefix) :]: v.value
        for k, v in vars(args).items()
        if k.startswith(prefix) and isinstance(v, _Default)
    }


def build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """``cls(**values)``; an unknown key is a :class:`VideorepError` naming ``where``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise VideorepError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    hints = get_type_hints(cls)
    fixed = {}
    for k, v in values.items():
        if isinstance(v, list) and get_origin(hints[k]) is tuple:
            v = tuple(v)  # JSON has no tuples
        fixed[k] = v
    return cls(**fixed)


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers override earlier ones, key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """A JSON or YAML (``.yaml``/``.yml``) mapping, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise VideorepError(f"{path}: no such config file")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - yaml and json raise their own types
        detail = " ".join(str(exc).split())
        raise VideorepError(f"{path}: not a valid config file ({detail})") from None
    if not isinstance(data, dict):
        raise VideorepError(f"{path}: a config file must hold a mapping of sections")
    return data


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented JSON to a temporary file, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise VideorepError(f"could not write {path} ({exc.strerror or exc})") from None
