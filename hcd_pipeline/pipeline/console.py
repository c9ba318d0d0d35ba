"""The CLI's Ray process: started and stopped without Ray's start-up and shutdown chatter, SIGTERM as Ctrl-C, Ray
Data's console logging set aside (``hcd --verbose`` keeps it all). These change process-wide state (file
descriptors, signal handlers, logging): only the ``hcd`` command calls them, never the library."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


def start_ray_quietly(settings: Any) -> None:
    """Start Ray with the process's stderr set aside: its C++ start-up lines are not for users. Shown on failure."""
    import tempfile

    from hcd_pipeline.pipeline.cluster import init_ray

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as cap:
        os.dup2(cap.fileno(), 2)
        try:
            init_ray(settings)
        except BaseException:
            os.dup2(saved, 2)
            cap.seek(0)
            sys.stderr.write(cap.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def stop_on_sigterm() -> None:
    """SIGTERM (how schedulers and ``kill`` stop a job) stops a run as Ctrl-C does. Installed after Ray starts: Ray's
    core otherwise answers it with a stack dump and rc 134."""
    import signal

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)


def quiet_exit(code: int) -> None:
    """Stop Ray without its shutdown chatter, then exit with ``code``; finished work is on storage already."""
    import ray

    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        ray.shutdown()
    finally:
        os._exit(code)  # noqa: SLF001 - no atexit hooks: Ray's would print again


def quiet_ray_data() -> None:
    """Ray Data's console handler silenced but for critical errors (its log file under the Ray session keeps everything).

    Ray Data announces every execution at INFO, warns about its own switches (the progress bars that ours replace)
    and prints the stack of a failed operator at ERROR before raising it; our progress, summary, failed rows and the
    one ``error:`` line of a failed run say what matters. ``hcd --verbose`` keeps them all.
    """
    import ray.data  # noqa: F401 - importing it installs the handlers

    for h in logging.getLogger("ray.data").handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.setLevel(logging.CRITICAL)
