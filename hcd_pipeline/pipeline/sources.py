"""Enumerating the input: image files and tar shards under a folder, prefix, glob or list file."""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import SettingsError
from ..imageio import IMAGE_EXTENSIONS
from ..storage import Storage, StorageOptions

__all__ = ["InputItem", "list_inputs", "iter_inputs", "iter_tar_images", "output_stem", "is_image_name"]

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputItem:
    """One unit of work: an image file, or a tar shard of images.

    ``uri`` is absolute (folder path or ``s3://...``); ``key`` is relative to the input root and is
    the stem of the outputs (``key`` of a tar shard: its path without ``.tar``; its members' keys are
    ``<key>/<member>``).
    """

    kind: str  # "file" | "tar"
    uri: str
    key: str


def is_image_name(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _classify(uri: str, key: str) -> InputItem | None:
    low = key.lower()
    if low.endswith(".tar"):
        return InputItem("tar", uri, key[: -len(".tar")])
    if is_image_name(key):
        return InputItem("file", uri, key)
    return None


def list_inputs(uri: str, options: StorageOptions | None = None) -> list[InputItem]:
    """All input items of ``uri`` in key order (a list: for small inputs and tests; jobs stream :func:`iter_inputs`)."""
    return list(iter_inputs(uri, options))


def iter_inputs(uri: str, options: StorageOptions | None = None) -> Iterator[InputItem]:
    """The input items of ``uri``, one at a time, in a deterministic order (``--limit`` takes the first N).

    Folders and prefixes are walked in key order without holding the listing (local folders: one directory
    at a time; object stores: the client's paged listing); list files in their own line order; globs sorted.
    """
    opts = options or StorageOptions()
    base = uri.rstrip("/") if "://" in uri else uri
    if _GLOB_CHARS & set(base):
        root = base[: min(base.index(c) for c in _GLOB_CHARS if c in base)]
        root = root.rsplit("/", 1)[0]
        st = Storage(root, opts)
        pattern = base[len(root) :].lstrip("/")
        for key in st.glob(pattern):
            item = _classify(st.uri_of(key), key)
            if item:
                yield item
    elif base.lower().endswith((".txt", ".lst")):
        parent = base.rsplit("/", 1)[0] if "/" in base else "."
        st = Storage(parent, opts)
        try:
            lines = st.read(base.rsplit("/", 1)[-1]).decode().splitlines()
        except FileNotFoundError as exc:
            raise SettingsError(f"{uri}: list file not found") from exc
        for line in (ln.strip() for ln in lines):
            if not line or line.startswith("#"):
                continue
            full = line if "://" in line or line.startswith("/") else st.uri_of(line)
            key = line.split("://", 1)[-1].lstrip("/") if full == line else line
            item = _classify(full, key)
            if item is None:
                raise SettingsError(f"{uri}: entry {line!r} is neither an image nor a .tar shard")
            yield item
    else:
        st = Storage(base, opts)
        if not st.fs.exists(st.root):
            raise SettingsError(f"{uri}: input not found")
        if st.fs.isfile(st.root):
            name = base.rsplit("/", 1)[-1]
            item = _classify(base, name)
            if item is None:
                raise SettingsError(f"{uri}: not an image, a .tar shard, or a list file")
            yield item
            return
        for key in st.iter_keys():
            item = _classify(st.uri_of(key), key)
            if item:
                yield item


def iter_tar_images(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every image member of a tar shard, in archive order."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            if member.isfile() and is_image_name(member.name):
                fh = tar.extractfile(member)
                if fh is not None:
                    yield member.name, fh.read()


def output_stem(key: str) -> str:
    """Output key stem of an image key: ``a/b.jpg`` -> ``a/b`` (LR is ``lr/a/b.png``)."""
    return posixpath.splitext(key)[0]
