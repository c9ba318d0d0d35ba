"""Training: resumable bit for bit after SIGKILL, and data-parallel with torchrun (gloo)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import SAMPLES

HCD = str(Path(sys.executable).parent / "hcd")
TINY = [
    "--blocks",
    "1",
    "--width",
    "4",
    "--patch",
    "16",
    "--batch",
    "2",
    "--warmup",
    "2",
    "--threads",
    "1",
    "--val",
    "",
    "--ckpt-every",
    "1",
]


def _train_args(out: Path, steps: int) -> list[str]:
    return ["train", "--scale", "2", "--data", str(SAMPLES), "--out", str(out), "--steps", str(steps), *TINY]


def test_sigkill_resume_matches_uninterrupted_run(tmp_path):
    steps = 14
    ref = tmp_path / "ref"
    subprocess.run([HCD, *_train_args(ref, steps)], check=True, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    rng = random.Random(0)
    for _ in range(2):  # kill it twice at random moments after it has started checkpointing
        proc = subprocess.Popen([HCD, *_train_args(killed, steps)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run([HCD, *_train_args(killed, steps)], check=True, capture_output=True, timeout=600)
    a = load_file(ref / "irn-x2.safetensors")
    b = load_file(killed / "irn-x2.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), f"{k} differs after resume"
    assert not list(killed.glob("*.tmp"))


@pytest.mark.skipif(sys.platform != "linux", reason="gloo on loopback")
def test_torchrun_two_ranks_stay_identical(tmp_path):
    out = tmp_path / "ddp"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node=2", "--module", "hcd_pipeline.cli", *_train_args(out, 4)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    h0, h1 = (out / "rank0.sha256").read_text(), (out / "rank1.sha256").read_text()
    assert h0 == h1
    trained = load_file(out / "irn-x2.safetensors")
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "conv5" in k)  # left the zero init
