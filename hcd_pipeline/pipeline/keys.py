"""Image keys and the output names made from them: the one rule that keeps every write inside the output.

A *key* names one input image relative to the input root (``a/b.jpg``; a tar member: ``shard.tar/member.png``).
Keys come from folder walks, object-store listings, list files and tar headers, any of which a stranger may
have written, so a key is data, never a path: :func:`check_key` accepts only normalised relative names and
says why it refuses the rest (the image becomes a failed row; nothing is written for it).

Output names (layout 2) keep the whole key, extension included: ``lr/<key><ext>`` and ``lr/<key>.json``
(``x.jpg`` -> ``lr/x.jpg.png``). Distinct keys therefore never share an output: no LR extension (``.png``,
``.jpg``, ``.webp``) nor ``.json`` is a suffix of another, so ``key1 + ext1 == key2 + ext2`` forces equal keys.
Layout 1 (releases before it) dropped the extension, and ``x.png`` / ``x.jpg`` overwrote each other.
"""

from __future__ import annotations

import os
import re

from hcd_pipeline.core.errors import SettingsError

__all__ = [
    "LAYOUT",
    "UnsafeKey",
    "check_key",
    "lr_key",
    "sidecar_key",
    "key_of_sidecar",
    "check_disjoint",
    "location",
    "inside",
    "is_list_file",
    "input_root",
]

LAYOUT = 2
"""Output layout this release writes (``job.json`` records it; an output of another layout is not resumed)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeKey(ValueError):
    """A key that must not become an output name; the message says why."""


def check_key(key: str) -> str:
    """The normalised form of ``key`` (``./a//b.png`` -> ``a/b.png``), or :class:`UnsafeKey`.

    Refused: control characters (NUL, newline, ...), backslashes (a Windows separator: ``..\\x`` would climb
    there), absolute names, drive letters, ``..`` components, and names that are empty once normalised.
    """
    if _CONTROL.search(key):
        raise UnsafeKey(f"control character in the name {key!r}")
    if "\\" in key:
        raise UnsafeKey(f"backslash in the name {key!r}")
    if key.startswith("/"):
        raise UnsafeKey(f"absolute name {key!r}")
    if _DRIVE.match(key):
        raise UnsafeKey(f"drive letter in the name {key!r}")
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeKey(f"'..' in the name {key!r}")
    if not parts:
        raise UnsafeKey(f"empty name {key!r}")
    return "/".join(parts)


def lr_key(key: str, ext: str) -> str:
    """Output key of the stored LR of image ``key`` (``ext`` with its dot: ``.png``)."""
    return f"lr/{key}{ext}"


def sidecar_key(key: str) -> str:
    """Output key of the sidecar of image ``key``; written after the LR, it marks the pair complete."""
    return f"lr/{key}.json"


def key_of_sidecar(output_key: str) -> str | None:
    """The image key whose sidecar is ``output_key`` (``lr/a/b.jpg.json`` -> ``a/b.jpg``), or None."""
    if output_key.startswith("lr/") and output_key.endswith(".json") and len(output_key) > len("lr/.json"):
        return output_key[3 : -len(".json")]
    return None


def location(uri: str) -> tuple[str, tuple[str, ...]]:
    """(scheme, path components) of a folder, file or ``scheme://bucket/prefix`` for comparing places.

    Local paths are made absolute with symbolic links resolved, so two spellings of one folder compare equal.
    """
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        scheme = "s3" if scheme == "s3a" else scheme
        return scheme, tuple(p for p in rest.split("/") if p not in ("", "."))
    return "file", tuple(p for p in os.path.realpath(uri).split(os.sep) if p)


def input_root(uri: str) -> str:
    """The place an input reads below: a folder or file itself, a glob's folder, a list file's folder (its relative
    entries; absolute ones may lie anywhere)."""
    base = uri.rstrip("/") if "://" in uri else uri
    cut = min((base.index(c) for c in "*?[" if c in base), default=None)
    if cut is not None:
        return base[:cut].rsplit("/", 1)[0] or "/"
    if is_list_file(base):
        return base.rsplit("/", 1)[0] if "/" in base else "."
    return base


def is_list_file(uri: str) -> bool:
    """Whether an input URI is a list file (``.txt`` / ``.lst``: one URI or relative key per line)."""
    return uri.lower().endswith((".txt", ".lst"))


def inside(uri: str, root: str) -> bool:
    """Whether ``uri`` is ``root`` or below it (same scheme; local paths resolved)."""
    a, b = location(uri), location(root)
    return a[0] == b[0] and a[1][: len(b[1])] == b[1]


def check_disjoint(input_uri: str, output_uri: str) -> None:
    """Refuse an output inside the input (a rerun would read its own LRs back as images) or an input inside the
    output (the run would write beside, or over, its sources). Raises :class:`~hcd_pipeline.core.errors.SettingsError`.

    A list file's entries may lie anywhere: each one inside the output is refused as it is listed
    (:func:`~.sources.iter_inputs`), and the list file itself only must not be inside the output.
    """
    root = input_root(input_uri)
    if inside(output_uri, root) and not is_list_file(input_uri):
        raise SettingsError(f"output {output_uri} is inside the input {input_uri}: choose an output outside it")
    if inside(root, output_uri):
        raise SettingsError(f"input {input_uri} is inside the output {output_uri}: choose an output outside it")
