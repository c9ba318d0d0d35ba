"""Submitting job specs to a Ray cluster through Ray's Job Submission API.

The runtime environment carries the project (package, shipped weights, job specs) as its
``working_dir``; the cluster's nodes provide the dependencies (``cluster.yaml`` installs them). The job's
entrypoint is ``python -m hcd_pipeline.cli run --job <spec>``, the same command that runs a spec locally.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from hcd_pipeline.io.storage import ENDPOINT_VARIABLES
from hcd_pipeline.pipeline.jobs import SPEC_ENV, SPEC_NAME_ENV, JobSpec, load_job

__all__ = ["project_root", "runtime_env", "submit_job", "job_status", "job_logs", "DEFAULT_ADDRESS"]

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
AGENT_WAIT_S = 90.0
"""How long a submission waits for a just-started head's job agent."""
_EXCLUDES = [".venv", "runs", "out", "checkpoints", ".git", "**/__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "*.egg-info"]


def project_root() -> Path:
    """The folder holding ``hcd_pipeline/``: a source checkout (with ``pyproject.toml``, uploaded whole) or, for an
    installed package, its site-packages (of which only ``hcd_pipeline/`` is uploaded)."""
    return Path(__file__).resolve().parents[2]


def _client(address: str | None):  # noqa: ANN202 - ray type imported lazily
    # Ray >= 2.5x heads require a token; the client only looks for it in token mode, which must be
    # set before ray is imported. Use it when a token is available and the user chose no mode.
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS)


def runtime_env(spec: JobSpec) -> dict[str, Any]:
    """The Ray runtime environment of a submitted spec: the project as ``working_dir`` and the spec in ``env_vars``.

    The spec travels in the job's environment (visible in the dashboard), so it may live anywhere; credentials never
    do: what travels is the validated mapping (:func:`~.jobs.load_job` refuses credential-like keys), not the file's
    text with its comments, and of this machine's environment only the endpoint and region.
    """
    env_vars = {k: v for k, v in os.environ.items() if k in (*ENDPOINT_VARIABLES, "AWS_DEFAULT_REGION", "AWS_REGION")}
    env_vars.update({SPEC_ENV: json.dumps(spec.raw, sort_keys=True, default=str), SPEC_NAME_ENV: f"{spec.path.stem}.json"})
    root = project_root()
    if (root / "pyproject.toml").is_file():  # a source checkout: the project as the job's working directory
        return {"working_dir": str(root), "excludes": _EXCLUDES, "env_vars": env_vars}
    # An installed package (a wheel in site-packages): only the package travels, never the environment around it.
    return {"py_modules": [str(root / "hcd_pipeline")], "excludes": _EXCLUDES, "env_vars": env_vars}


def submit_job(spec_path: str | Path, address: str | None = None, *, submission_id: str | None = None) -> str:
    """Validate the spec, then submit it; returns the submission id. Nothing is submitted if invalid."""
    spec = load_job(spec_path)  # raises SettingsError with the file name on any problem
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", spec.name)
    client = _client(address)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(
                entrypoint=f"python -m hcd_pipeline.cli run --job env:{SPEC_ENV}",
                runtime_env=runtime_env(spec),
                submission_id=submission_id,
                metadata={"hcd_job": safe, "spec": spec.path.name},
            )
        except RuntimeError as exc:
            # A head that has just started answers before its job agent is up ("No available agent to submit
            # job, please try again later"): wait for it instead of failing a freshly launched cluster.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def job_status(job_id: str, address: str | None = None) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    return str(_client(address).get_job_status(job_id).value)


def job_logs(job_id: str, address: str | None = None) -> str:
    return str(_client(address).get_job_logs(job_id))
