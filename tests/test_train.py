"""Training: resumable bit for bit after SIGKILL, and data-parallel with torchrun (gloo)."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hcd_pipeline.core.errors import SettingsError
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


@pytest.mark.parametrize("scale", [2, 4])
def test_a_grown_chain_starts_as_the_model_it_grew_from(scale):
    """#25: the default models grow to the original 8 blocks per level from the shipped 4 (``--init irn-x2 --blocks 8``):
    the old blocks keep their place in each level, the added ones start as the identity, so the grown model's LR and
    reconstruction are the smaller model's before its first step."""
    from hcd_pipeline.models import load_model
    from hcd_pipeline.training.config import TrainConfig
    from hcd_pipeline.training.objective import build_model
    from hcd_pipeline.training.train import init_from

    small = load_model(f"tiny-irn-x{scale}")
    cfg = TrainConfig(scale=scale, blocks=small.config.blocks + 2, width=small.config.width, z_train=small.config.z_std)
    grown = build_model(cfg).eval()
    loaded = init_from(grown, f"tiny-irn-x{scale}")
    assert loaded and all(k.startswith("operations.") for k in loaded)
    assert len(grown.operations) == len(small.operations) + 2 * grown.config.levels
    x = torch.rand(1, 3, 16 * scale, 16 * scale, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lr_small, z_small = small.downscale(x)
        lr_grown, z_grown = grown.downscale(x)
        assert torch.allclose(lr_grown, lr_small, atol=1e-6) and torch.allclose(z_grown, z_small, atol=1e-6)
        assert torch.allclose(grown.upscale(lr_small, z_small), small.upscale(lr_small, z_small), atol=1e-5)
    with pytest.raises(SettingsError, match="blocks may grow"):
        init_from(build_model(TrainConfig(scale=scale, blocks=1, width=small.config.width + 8, z_train=small.config.z_std)),
                  f"tiny-irn-x{scale}")  # fmt: skip


def test_irn_weights_stored_as_float16_load_and_compute_in_float32(tmp_path):
    """#25's models ship as float16 files (half the bytes; 1.66 M parameters at x2 is 3.3 MB): they load strictly,
    compute in float32, and differ from the float32 file by float16's rounding only."""
    from hcd_pipeline.models import load_model
    from hcd_pipeline.models.weights import save_weights

    model = load_model("tiny-irn-x2")
    save_weights(model, tmp_path / "f32.safetensors", provenance={})
    save_weights(model, tmp_path / "f16.safetensors", provenance={}, dtype=torch.float16)
    assert (tmp_path / "f16.safetensors").stat().st_size < 0.6 * (tmp_path / "f32.safetensors").stat().st_size
    half = load_model(weights=tmp_path / "f16.safetensors")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model.downscale(x)[0], half.downscale(x)[0]
    assert 0 < float((a - b).abs().max()) < 2e-3


def test_bf16_training_steps_and_logs_its_speed(tmp_path):
    """#24: ``hcd train --precision bf16`` runs the step's forward and backward under bfloat16 autocast (validation in
    float32); every log line says the steps per second since the previous one."""
    import json

    from hcd_pipeline.training.config import TrainConfig
    from hcd_pipeline.training.train import train
    from tests.conftest import SAMPLES

    cfg = TrainConfig(blocks=1, width=8, data=str(SAMPLES), val=str(SAMPLES), steps=4, patch=32, batch=2, log_every=2,
                      val_every=4, precision="bf16", out=str(tmp_path / "run"), device="cpu", z_train=0.0)  # fmt: skip
    path = train(cfg, progress=False)
    assert path.is_file()
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4] and all(r["steps_per_s"] > 0 and math.isfinite(r["loss"]) for r in steps)
    assert torch.is_autocast_enabled("cpu") is False
    with pytest.raises(SettingsError, match="precision"):
        TrainConfig(precision="fp8").check()


def test_provenance_sums_the_seconds_of_every_part_of_a_resumed_run(tmp_path):
    """#25: exported weights say how long their run trained (wall seconds over every resumed part), on what devices
    (a part resumed elsewhere adds its own), and from which ``--init`` file by content; a checkpoint carries all three,
    and ``export_checkpoint`` of it keeps them."""
    import json
    from dataclasses import replace

    from hcd_pipeline.models.registry import safetensors_header
    from hcd_pipeline.training.config import TrainConfig
    from hcd_pipeline.training.train import export_checkpoint, train

    run = tmp_path / "run"
    cfg = TrainConfig(blocks=1, width=4, data=str(SAMPLES), val="", steps=2, patch=16, batch=2, warmup=1, ckpt_every=1,
                      threads=1, out=str(run), device="cpu", z_train=0.0)  # fmt: skip
    t = time.time()
    first = json.loads(safetensors_header(train(cfg, progress=False))["provenance"])
    assert 0 < float(first["train_seconds"]) <= time.time() - t + 0.1
    assert first["device"] == "cpu (1 thread)" and first["steps"] == "2" and "init_sha256" not in first
    # Pretend the first part took 1000 s on a GPU and stopped halfway through a 4-step schedule: the resumed part
    # trains the last 2 steps on the CPU, adds its own seconds to the 1000 and its device to the GPU.
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    ck["train_seconds"], ck["total"], ck["device_name"] = 1000.0, 4, "NVIDIA H200"
    torch.save(ck, run / "checkpoint.pt")
    t = time.time()
    second = json.loads(safetensors_header(train(replace(cfg, steps=4), progress=False))["provenance"])
    assert 1000 <= float(second["train_seconds"]) <= 1000 + time.time() - t + 0.1 and second["steps"] == "4"
    assert second["device"] == "NVIDIA H200 + cpu (1 thread)"
    exported = export_checkpoint(run / "checkpoint.pt", tmp_path / "e.safetensors")
    again = json.loads(safetensors_header(tmp_path / "e.safetensors")["provenance"])
    assert exported == 4 and float(again["train_seconds"]) >= 1000 and again["device"] == "NVIDIA H200 + cpu (1 thread)"
    # A run started from a weights file names that file by its sha256, whatever the file is later called.
    from hcd_pipeline.models.weights import file_sha256

    grown = train(replace(cfg, init=str(tmp_path / "e.safetensors"), out=str(tmp_path / "grown")), progress=False)
    init_sha = json.loads(safetensors_header(grown)["provenance"])["init_sha256"]
    assert init_sha == file_sha256(tmp_path / "e.safetensors") and len(init_sha) == 16


def test_learning_curve_draws_a_continued_run_after_the_one_it_continued(tmp_path, monkeypatch):
    """``benchmarks.learning_curve``: ``LABEL=log@STEPS`` shifts a continuing run's steps by the earlier run's length,
    so its line starts where the earlier one ends (a log's repeated step, from a resume, is drawn once)."""
    import json
    import re

    from benchmarks import learning_curve

    def log(path: Path, points: list[tuple[int, float]]) -> str:
        path.write_text("".join(json.dumps({"step": s, "val_psnr_z0": v}) + "\n" for s, v in points))
        return str(path)

    first = log(tmp_path / "a.jsonl", [(0, 30.0), (100, 31.0), (100, 31.0), (200, 32.0)])
    later = log(tmp_path / "b.jsonl", [(0, 32.0), (100, 33.0)])
    out = tmp_path / "c.svg"
    monkeypatch.setattr(sys, "argv", ["learning_curve", str(out), f"a={first}", f"b={later}@200"])
    learning_curve.main()
    lines = [[tuple(map(float, p.split(","))) for p in m.split()] for m in re.findall(r'points="([^"]+)"', out.read_text())]
    assert [len(pts) for pts in lines] == [3, 2]
    assert lines[1][0] == lines[0][-1]  # the continued run starts at the point where the first one ended
    assert lines[1][-1][0] > lines[0][-1][0]


def test_prime_steps_fill_adams_moments_and_leave_the_init_weights_bit_for_bit(tmp_path):
    """#25: ``--prime N`` runs N steps at learning rate 0 before the warm-up. A run continued from a weights file then
    keeps those weights exactly while Adam's moments fill (a fresh Adam's first steps move every weight by about the
    learning rate, whatever its gradient's scale), and the schedule after the prime is the unprimed one, shifted."""
    from dataclasses import replace

    from hcd_pipeline.training.config import TrainConfig
    from hcd_pipeline.training.train import _lr_at, train

    base = TrainConfig(blocks=1, width=4, data=str(SAMPLES), val="", steps=3, patch=16, batch=2, warmup=1, ckpt_every=1,
                       threads=1, out=str(tmp_path / "base"), device="cpu", z_train=0.0)  # fmt: skip
    init = train(base, progress=False)
    primed = replace(base, init=str(init), init_lr_scale=1.0, prime=3, steps=3, out=str(tmp_path / "primed"))
    out = train(primed, progress=False)
    before, after = load_file(str(init)), load_file(str(out))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    ck = torch.load(tmp_path / "primed" / "checkpoint.pt", weights_only=False)
    states = ck["optimizer"]["state"].values()
    assert states and all(int(s["step"]) == 3 and float(s["exp_avg_sq"].abs().sum()) > 0 for s in states)
    # One step past the prime moves the weights; the learning rates are the unprimed run's, 3 steps later.
    moved = load_file(str(train(replace(primed, steps=4, out=str(tmp_path / "moved")), progress=False)))
    assert any(not torch.equal(before[k], moved[k]) for k in before)
    longer = replace(base, steps=40, warmup=5)
    assert [_lr_at(replace(longer, prime=3), s) for s in range(3)] == [0.0, 0.0, 0.0]
    assert all(_lr_at(replace(longer, prime=3), s + 3, 43) == _lr_at(longer, s, 40) for s in range(40))
    with pytest.raises(SettingsError, match="prime"):
        replace(base, prime=-1).check()
