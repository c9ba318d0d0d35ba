"""The ``hcd`` command group, its options and error handling.

Every command prints a one-line ``error: <file>: <reason>`` and exits with status 1 on bad input
(status 2 for usage errors) and writes outputs atomically. Overwriting: commands that write into a folder of
per-image outputs (``downscale``, ``upscale``) and commands that write weights (``export``, ``convert``) refuse to
replace an existing file without ``--force``; commands whose output is a result they regenerate (``eval -o``,
``roundtrip -o``, ``report``, ``bench``) replace it (README, "Commands"). Nothing is written where no ``-o`` points,
but for ``report`` (into the run output it reads, when that is one local folder).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from hcd_pipeline.core.errors import HcdError

__all__ = ["main"]


def verbosity() -> int:
    """-1 with ``hcd --quiet``, 1 with ``hcd --verbose``, else 0."""
    ctx = click.get_current_context(silent=True)
    params = ctx.find_root().params if ctx else {}
    return -1 if params.get("quiet") else (1 if params.get("verbose") else 0)


def no_progress() -> bool:
    # Progress bars only on a terminal: CI logs stay readable.
    return verbosity() < 0 or not sys.stderr.isatty()


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (HcdError, FileNotFoundError, FileExistsError, PermissionError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:  # what we did not foresee: one line; the traceback with --verbose
            if verbosity() > 0:
                raise
            if isinstance(exc, ConnectionError):  # a Ray cluster or an object store that does not answer
                click.echo(f"error: {exc} (is it up? the address comes from --address or RAY_ADDRESS)", err=True)
            else:
                click.echo(f"error: {type(exc).__name__}: {exc} (hcd --verbose ... shows where)", err=True)
            sys.exit(1)

    return inner


def _note_line(message: Warning | str, category: type[Warning], *_args: Any, **_kwargs: Any) -> str:
    return f"note: {message}\n" if issubclass(category, FutureWarning) else f"{category.__name__}: {message}\n"


@click.group()
@click.version_option(package_name="hcd_pipeline")
@click.option("--quiet", "-q", is_flag=True, help="no progress display, only results and errors")
@click.option("--verbose", "-v", is_flag=True, help="also Ray's own logs and warnings")
def main(quiet: bool, verbose: bool) -> None:
    """hcd: Hierarchical Collaborative Downscaling, from one image to a Ray cluster."""
    if not verbose:
        # Ray's core workers warn about their own internals (actor arguments in the object store) on stderr.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    # Our deprecations (a model name of an earlier release) are advice to users: one "note:" line, not a source line.
    warnings.formatwarning = _note_line
