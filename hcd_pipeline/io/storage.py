"""Object storage and local folders behind one small interface (fsspec; s3fs for ``s3://``).

Credentials are never part of settings: s3fs reads them from the environment
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``), the shared config files or
the instance role. What can be set: the endpoint (``endpoint_url``, for MinIO, Ceph or a test server),
anonymous access (``anon``) and the region.

Completeness: a local write goes to a temporary name and is renamed into place; an object-store
``PUT`` is atomic per object. For a group of files (an LR PNG and its sidecar) the sidecar is written
last and acts as the commit marker.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hcd_pipeline.core.errors import ImageWriteError, StorageError
from hcd_pipeline.io.images import atomic_write_bytes

if TYPE_CHECKING:
    import fsspec

__all__ = ["StorageOptions", "Storage", "join_uri", "version_of", "content_type", "ENDPOINT_VARIABLES"]

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "HCD_S3_ENDPOINT_URL")
"""Environment variables that name the S3 endpoint when the settings do not, first set wins: the AWS SDKs' standard
two, then this project's older name (kept so that existing setups go on working)."""

_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                  ".json": "application/json", ".parquet": "application/vnd.apache.parquet", ".html": "text/html",
                  ".svg": "image/svg+xml"}  # fmt: skip


def content_type(key: str) -> str:
    """The Content-Type an object of this name is stored with (browsers then show an LR instead of downloading it)."""
    return _CONTENT_TYPES.get(posixpath.splitext(key)[1].lower(), "application/octet-stream")


@dataclass(frozen=True)
class StorageOptions:
    """Connection settings for object storage (ignored for local paths)."""

    endpoint_url: str | None = None
    anon: bool = False
    region: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fsspec_kwargs(self, protocol: str) -> dict[str, Any]:
        if protocol not in ("s3", "s3a"):
            return {}
        kw: dict[str, Any] = {"anon": self.anon, **self.extra}
        client: dict[str, Any] = {}
        endpoint = self.endpoint_url or next((os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)), None)
        if endpoint:
            client["endpoint_url"] = endpoint
        if self.region:
            client["region_name"] = self.region
        if client:
            kw["client_kwargs"] = client
        # Listings must reflect writes made moments ago (resume after a crash).
        kw.setdefault("use_listings_cache", False)
        return kw


def join_uri(base: str, *parts: str) -> str:
    """Join key parts onto a local path or URI with ``/``."""
    return posixpath.join(base.rstrip("/"), *parts) if "://" in base else os.path.join(base, *parts)


@contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Turn any client error (botocore, aiohttp, OSError) into :class:`StorageError` naming ``what``."""
    try:
        yield
    except (FileNotFoundError, StorageError):
        raise
    except ImageWriteError as exc:  # a local write (atomic_write_bytes): already names the file
        raise StorageError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - storage clients raise many unrelated types
        raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc


class Storage:
    """One filesystem for a base URI; paths below are relative keys (``a/b.png``).

    Every operation raises :class:`StorageError` (or ``FileNotFoundError``) with the URI on failure.
    """

    def __init__(self, uri: str, options: StorageOptions | None = None) -> None:
        self.uri = uri.rstrip("/") if "://" in uri else uri
        self.options = options or StorageOptions()
        protocol = uri.split("://", 1)[0] if "://" in uri else "file"
        from fsspec.core import url_to_fs  # imported on use: settings and the model stage run without fsspec

        self.fs, self.root = url_to_fs(uri, **self.options.fsspec_kwargs(protocol))
        self.protocol = protocol
        self.local = protocol == "file"

    def full(self, key: str) -> str:
        """The filesystem path of ``key``; a key that would leave the base (``..``, absolute, NUL) raises
        :class:`StorageError`: every read and write goes through here, so no key names a place outside."""
        if not key:
            return self.root
        if "\0" in key or key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"{self.uri}: key {key!r} would leave the storage root; refused")
        return posixpath.join(self.root.rstrip("/"), key)

    def uri_of(self, key: str) -> str:
        return join_uri(self.uri, key)

    def read(self, key: str) -> bytes:
        with _storage_errors(f"reading {self.uri_of(key)}"), self.fs.open(self.full(key), "rb") as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        with _storage_errors(f"checking {self.uri_of(key)}"):
            return bool(self.fs.exists(self.full(key)))

    def write(self, key: str, data: bytes) -> None:
        """Write ``data`` so that readers see either nothing or all of it."""
        if self.local:
            with _storage_errors(f"writing {self.uri_of(key)}"):
                atomic_write_bytes(self.full(key), data)
            return
        with _storage_errors(f"writing {self.uri_of(key)}"), self.fs.open(self.full(key), "wb", **self._put_kwargs(key)) as fh:
            fh.write(data)

    def put_file(self, local_path: str, key: str) -> None:
        """Upload a local file to ``key`` as :meth:`write` would write its bytes, without reading it into memory."""
        if self.local:
            with _storage_errors(f"writing {self.uri_of(key)}"), open(local_path, "rb") as fh:
                atomic_write_bytes(self.full(key), fh)
            return
        with _storage_errors(f"writing {self.uri_of(key)}"):
            self.fs.put_file(local_path, self.full(key), **self._put_kwargs(key))

    def _put_kwargs(self, key: str) -> dict[str, str]:
        return {"ContentType": content_type(key)} if self.protocol in ("s3", "s3a") else {}

    def delete(self, key: str) -> None:
        if self.exists(key):
            with _storage_errors(f"deleting {self.uri_of(key)}"):
                self.fs.rm(self.full(key))

    def move(self, key: str, to: str) -> None:
        """Rename ``key`` to ``to`` (object stores: copy, then delete)."""
        with _storage_errors(f"moving {self.uri_of(key)} to {self.uri_of(to)}"):
            if self.local:
                os.makedirs(posixpath.dirname(self.full(to)), exist_ok=True)
            self.fs.mv(self.full(key), self.full(to))

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """The file keys under ``prefix`` (recursive, relative to the base) in sorted order, without holding the listing."""
        return (k for k, _ in self.iter_entries(prefix, versions=False))

    def iter_entries(self, prefix: str = "", *, versions: bool = True) -> Iterator[tuple[str, str]]:
        """(key, version) of the files under ``prefix`` in sorted key order, without holding the listing.

        ``version`` (see :func:`version_of`) is the size and the modification time
        (local) or ETag (object stores) that the listing gives at no extra cost; empty with ``versions=False``.
        Local folders are walked one directory at a time, without following links to directories (a link loop
        would never end); object stores are listed by their client (s3fs pages through the prefix).
        """
        if not self.local:
            base = self.full(prefix)
            with _storage_errors(f"listing {self.uri_of(prefix)}"):
                if not self.fs.exists(base):
                    return
                found = {base: self.fs.info(base)} if self.fs.isfile(base) else self.fs.find(base, detail=True)
            root = self.root.rstrip("/")
            for p in sorted(found):
                yield (p[len(root) :].lstrip("/") if p.startswith(root) else p), (version_of(found[p]) if versions else "")
            return
        top = self.full(prefix)
        if os.path.isfile(top):
            yield prefix, (_stat_version(os.stat(top)) if versions else "")
            return
        if not os.path.isdir(top):
            return
        root = self.root.rstrip("/")

        def walk(path: str) -> Iterator[tuple[str, str]]:
            try:
                with os.scandir(path) as it:
                    # Directories sort as "name/" so that the walk yields keys in plain string order.
                    entries = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in it)
            except OSError as exc:
                raise StorageError(f"listing {path}: {exc}") from exc
            for name, e in entries:
                if name.endswith("/"):
                    yield from walk(e.path)
                elif versions:
                    try:
                        yield e.path[len(root) :].lstrip("/"), _stat_version(e.stat())
                    except OSError:  # a dangling link or a file gone since the listing: its read fails as a row
                        yield e.path[len(root) :].lstrip("/"), ""
                else:
                    yield e.path[len(root) :].lstrip("/"), ""

        yield from walk(top)

    def glob_entries(self, pattern: str) -> list[tuple[str, str]]:
        """(key, version) of the files matching ``pattern``, sorted by key."""
        root = self.root.rstrip("/")
        with _storage_errors(f"listing {self.uri_of(pattern)}"):
            found = self.fs.glob(self.full(pattern), detail=True)
        return sorted((p[len(root) :].lstrip("/"), version_of(info)) for p, info in found.items() if info.get("type") == "file")


def version_of(info: dict[str, Any]) -> str:
    """The content version of a listing entry (fsspec ``info``): its size plus ETag, else modification time.

    A rerun redoes an image whose version changed; copying a file without keeping its time counts as a change.
    """
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or info.get("created") or ""
    return f"{info.get('size', '')}-{str(tag).strip(chr(34))}"


def _stat_version(st: os.stat_result) -> str:
    return f"{st.st_size}-{st.st_mtime_ns}"


def open_uri(uri: str, options: StorageOptions | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path) of a single URI."""
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    from fsspec.core import url_to_fs

    return url_to_fs(uri, **(options or StorageOptions()).fsspec_kwargs(protocol))
