"""Enumerating the input: image files and tar shards under a folder, prefix, glob or list file."""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hcd_pipeline.core.errors import SettingsError, StorageError
from hcd_pipeline.io.images import IMAGE_EXTENSIONS
from hcd_pipeline.io.storage import Storage, StorageOptions, open_uri, version_of
from hcd_pipeline.pipeline.keys import UnsafeKey, check_key, input_root, inside, is_list_file

__all__ = ["InputItem", "check_input", "list_inputs", "iter_inputs", "iter_tar_images", "is_image_name", "is_tar_name", "TAR_SUFFIXES"]

_GLOB_CHARS = set("*?[")


TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
"""Shard names read as tar archives of images (webdataset style; gzip-compressed ones too)."""
_STAT_THREADS = 16  # list-file entries are looked up concurrently (object-store HEADs wait, not compute)


@dataclass(frozen=True)
class InputItem:
    """One unit of work: an image file, a tar shard of images, or an entry refused before it is read.

    ``uri`` is absolute (folder path or ``s3://...``); ``key`` is relative to the input root, checked by
    :func:`~.keys.check_key`, and names the outputs (a tar shard's members' keys are ``<shard key>/<member>``,
    the shard key keeping its ``.tar``). ``version`` is what the listing says of the content (size and
    modification time, or size and ETag on object stores): a finished image is redone when it changes.
    ``kind == "invalid"``: ``error`` says why the entry is refused; it becomes a failed row, never a write.
    """

    kind: str  # "file" | "tar" | "invalid"
    uri: str
    key: str
    version: str = ""
    error: str | None = None


def is_image_name(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_tar_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def _classify(uri: str, key: str, version: str = "") -> InputItem | None:
    """The item of a listed name (None: neither an image nor a tar shard, so not ours to read)."""
    if not (is_tar_name(key) or is_image_name(key)):
        return None
    try:
        safe = check_key(key)
    except UnsafeKey as exc:
        return InputItem("invalid", uri, key, version, f"UnsafeKey: {exc}")
    return InputItem("tar" if is_tar_name(key) else "file", uri, safe, version)


def list_inputs(uri: str, options: StorageOptions | None = None) -> list[InputItem]:
    """All input items of ``uri`` in key order (a list: for small inputs and tests; jobs stream :func:`iter_inputs`)."""
    return list(iter_inputs(uri, options))


def iter_inputs(uri: str, options: StorageOptions | None = None, *, output: str | None = None) -> Iterator[InputItem]:
    """The input items of ``uri``, one at a time, in a deterministic order (``--limit`` takes the first N).

    Folders and prefixes are walked in key order without holding the listing (local folders: one directory
    at a time; object stores: the client's paged listing); list files in their own line order; globs sorted.
    A list file's entries are looked up for their version; an entry listed twice, or inside ``output``, is
    an ``invalid`` item after its first listing.
    """
    opts = options or StorageOptions()
    base = uri.rstrip("/") if "://" in uri else uri
    if _GLOB_CHARS & set(base):
        root = base[: min(base.index(c) for c in _GLOB_CHARS if c in base)]
        root = root.rsplit("/", 1)[0]
        st = Storage(root, opts)
        pattern = base[len(root) :].lstrip("/")
        for key, version in st.glob_entries(pattern):
            item = _classify(st.uri_of(key), key, version)
            if item:
                yield item
    elif is_list_file(base):
        yield from _list_file_items(uri, base, opts, output)
    else:
        st = Storage(base, opts)
        if not st.fs.exists(st.root):
            raise SettingsError(f"{uri}: input not found")
        if st.fs.isfile(st.root):
            name = base.rsplit("/", 1)[-1]
            item = _classify(base, name, version_of(st.fs.info(st.root)))
            if item is None:
                raise SettingsError(f"{uri}: not an image, a .tar shard, or a list file")
            yield item
            return
        for key, version in st.iter_entries():
            item = _classify(st.uri_of(key), key, version)
            if item:
                yield item


def check_input(uri: str, options: StorageOptions | None = None) -> None:
    """Refuse an input that does not exist (a folder, prefix, file or list file; a glob's folder), before anything
    runs: the listing itself runs in a Ray task, where the error would come back wrapped in Ray's traceback."""
    base = uri.rstrip("/") if "://" in uri else uri
    st = Storage(input_root(base) if _GLOB_CHARS & set(base) else base, options or StorageOptions())
    try:
        found = st.fs.exists(st.root)
    except Exception as exc:  # noqa: BLE001 - storage clients raise many types (no credentials, no endpoint)
        raise StorageError(f"{uri}: cannot check the input ({type(exc).__name__}: {exc})") from exc
    if not found:
        raise SettingsError(f"{uri}: input not found")


def _list_file_items(uri: str, base: str, opts: StorageOptions, output: str | None) -> Iterator[InputItem]:
    st = Storage(input_root(base), opts)
    try:
        lines = st.read(base.rsplit("/", 1)[-1]).decode().splitlines()
    except FileNotFoundError as exc:
        raise SettingsError(f"{uri}: list file not found") from exc
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{uri}: a list file is UTF-8 text, one entry a line ({exc.reason} at byte {exc.start})") from exc
    entries: list[tuple[str, str]] = []
    for line in (ln.strip() for ln in lines):
        if not line or line.startswith("#"):
            continue
        full = line if "://" in line or line.startswith("/") else st.uri_of(line)
        key = line.split("://", 1)[-1].lstrip("/") if full == line else line
        if _classify(full, key) is None:
            raise SettingsError(f"{uri}: entry {line!r} is neither an image nor a .tar shard")
        entries.append((full, key))
    seen: set[str] = set()
    with ThreadPoolExecutor(_STAT_THREADS) as pool:
        for (full, key), version in zip(entries, pool.map(lambda e: _version_or_empty(e[0], opts), entries), strict=True):
            item = _classify(full, key, version)
            assert item is not None  # checked above
            if item.kind != "invalid" and item.key in seen:
                item = InputItem(
                    "invalid", full, item.key, version, f"DuplicateKey: {item.key!r} is listed more than once; the first is used"
                )
            elif item.kind != "invalid" and output is not None and inside(full, output):
                item = InputItem("invalid", full, item.key, version, f"InsideOutput: {full} is inside the output {output}")
            seen.add(item.key)
            yield item


def _version_or_empty(uri: str, opts: StorageOptions) -> str:
    """The version of one listed URI; empty when it cannot be looked up (the read then fails as a row)."""
    try:
        fs, path = open_uri(uri, opts)
        return version_of(fs.info(path))
    except Exception:  # noqa: BLE001 - a missing or unreadable entry is the decode stage's failed row
        return ""


def iter_tar_images(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every image member of a tar shard, in archive order."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            if member.isfile() and is_image_name(member.name):
                fh = tar.extractfile(member)
                if fh is not None:
                    yield member.name, fh.read()
