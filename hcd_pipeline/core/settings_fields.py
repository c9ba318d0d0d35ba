"""One declaration per setting: a dataclass field that carries its help, its CLI flag, its job-spec key and its role
in the result fingerprint. The CLI's flags, job specs and fingerprints are derived from these fields
(``tests/test_settings_source.py`` walks them), so a new setting is declared once, here-style, and appears everywhere.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, field, fields
from typing import Any, get_type_hints

__all__ = ["setting", "setting_fields", "field_types", "default_of", "FP_ROLES", "SPEC_PLACES"]

FP_ROLES = ("always", "unless-default", "")
"""A field's place in the result fingerprint: ``always``; ``unless-default`` (added after outputs existed: only when
set, so that earlier fingerprints stay valid); ``""`` (not in it: it does not change the output bits, or it enters
resolved, as a preset does through the HCD settings it names)."""
SPEC_PLACES = ("top", "required", "resources", "actors", "storage")
"""Where a job spec holds a field: a top-level key, a required top-level key, or inside ``resources:``, ``actors:``,
``storage:``."""


def setting(
    default: Any,
    help: str,  # noqa: A002 - the name click and argparse use
    *,
    spec: str = "top",
    cli: bool = True,
    choices: tuple[Any, ...] | None = None,
    fp: str = "",
    bounds: tuple[int | None, int | None] | None = None,
    parse: str = "",
    flag: str = "",
) -> Any:
    """A settings field and what the CLI, job specs and the fingerprint make of it.

    Args:
        default: the value; a callable is a default factory; None with ``spec="required"``: no default.
        help: one line for ``--help`` and the docs.
        spec: where a job spec holds it (:data:`SPEC_PLACES`).
        cli: whether the commands that take these settings have a ``--flag`` for it (``--name-with-dashes``).
        choices: the values it takes (checked by the settings, offered by the CLI).
        fp: its role in the result fingerprint (:data:`FP_ROLES`).
        bounds: (min, max) of an integer, either None for open (the CLI checks them as a usage error).
        parse: a named CLI parser for values that are not plain (``threads``: a number or ``auto``).
        flag: the CLI flag when it is not ``--name-with-dashes`` (kept for flags that users already type).
    """
    if spec not in SPEC_PLACES or fp not in FP_ROLES:
        raise ValueError(f"setting: spec {spec!r} / fp {fp!r} not in {SPEC_PLACES} / {FP_ROLES}")
    meta = {"help": help, "spec": spec, "cli": cli, "choices": choices, "fp": fp, "bounds": bounds, "parse": parse, "flag": flag}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    if default is None and spec == "required":
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def setting_fields(cls: type) -> dict[str, Field[Any]]:
    """The fields of a settings dataclass that were declared with :func:`setting`, by name."""
    return {f.name: f for f in fields(cls) if "help" in f.metadata}  # type: ignore[arg-type]


def field_types(cls: type, name: str) -> tuple[type, ...]:
    """The Python types a value of field ``name`` may have (None always allowed for optional fields)."""
    hint = get_type_hints(cls)[name]
    args = getattr(hint, "__args__", None)
    types = tuple(a for a in args if a is not type(None)) if args and type(None) in args else (hint,)
    types = tuple(getattr(t, "__origin__", t) for t in types)
    return (int, float) if types == (float,) else types


def default_of(f: Field[Any]) -> Any:
    """A field's default value (the factory's product for mutable ones; MISSING for required fields)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING
