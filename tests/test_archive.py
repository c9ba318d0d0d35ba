"""Archive-scale guarantees: resume after a real SIGKILL, damaged tar shards, rows rebuilt from sidecars,
progress lines in logs, and a driver that keeps no per-image state."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hcd_pipeline.pipeline import PipelineSettings, read_metrics, run_pipeline
from hcd_pipeline.pipeline.progress import Progress
from hcd_pipeline.pipeline.schema import SCHEMA_VERSION
from tests.services import session_pids

HCD = str(Path(sys.executable).parent / "hcd")


def _crops(root: Path, n: int, size: int = 24) -> list[str]:
    src = Image.open(Path(__file__).resolve().parents[1] / "samples" / "astronaut_crop.png").convert("RGB")
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        x, y = (i * 7) % (src.width - size), (i * 11) % (src.height - size)
        names.append(f"img{i:03d}.png")
        src.crop((x, y, x + size, y + size)).save(root / names[-1])
    return names


def _lr_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "lr").rglob("*.png"))}


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session at once and wait until none is left, as when a machine dies. Killing the
    driver's process group alone leaves Ray's workers alive for a moment, long enough to finish an image."""
    deadline = time.time() + 30
    while (pids := session_pids(sid)) and time.time() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    assert not session_pids(sid), f"processes of session {sid} survived SIGKILL"


def test_resume_after_sigkill_keeps_finished_images(ray_local, tmp_path):
    inp, out, clean = tmp_path / "in", tmp_path / "out", tmp_path / "clean"
    names = _crops(inp, 24, size=64)
    args = ["--input", str(inp), "--model", "tiny-irn-x2", "--method", "hcd", "--seed", "3", "--threads", "1"]
    proc = subprocess.Popen([HCD, "run", *args, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list((out / "lr").glob("*.json"))) < 3:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    _kill_session(proc.pid)  # the driver and its local Ray with all its workers
    proc.wait()
    sidecars = sorted(p.stem for p in (out / "lr").glob("*.json"))  # img000.png.json -> img000.png
    assert 3 <= len(sidecars) < 24
    # An LR written without its sidecar (killed between the two writes) must be redone.
    victim = next(n for n in names if n not in sidecars)
    (out / "lr" / f"{victim}.png").write_bytes(b"half an image")
    kept = {s: (out / "lr" / f"{s}.png").stat().st_mtime_ns for s in sidecars}
    summary = run_pipeline(PipelineSettings(input=str(inp), output=str(out), model="tiny-irn-x2", seed=3), progress=False)
    assert summary.failed == 0
    assert summary.done == 24 - len(kept)  # finished images are not redone ...
    assert summary.skipped + summary.recovered >= len(kept) - summary.recovered  # ... they are skipped or recovered
    assert {s: (out / "lr" / f"{s}.png").stat().st_mtime_ns for s in kept} == kept
    final = read_metrics(str(out))
    assert sorted(final["key"].to_pylist()) == names and set(final["status"].to_pylist()) == {"ok"}
    attempts = read_metrics(str(out), all_attempts=True)
    ok_keys = [k for k, s in zip(attempts["key"].to_pylist(), attempts["status"].to_pylist(), strict=True) if s == "ok"]
    assert sorted(ok_keys) == names  # one ok row per key
    # The bytes equal a clean run's.
    run_pipeline(PipelineSettings(input=str(inp), output=str(clean), model="tiny-irn-x2", seed=3), progress=False)
    assert _lr_files(out) == _lr_files(clean)


def test_rows_lost_with_their_part_come_back_from_sidecars(ray_local, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    names = _crops(inp, 6)
    s = PipelineSettings(input=str(inp), output=str(out), model="bicubic", scale=2, method="plain", batch_size=2)
    first = run_pipeline(s, progress=False)
    assert first.done == 6
    before = read_metrics(str(out)).sort_by("key")
    for p in (out / "metrics" / "parts").glob("*.parquet"):
        p.unlink()  # as if the run died after writing images and before writing rows
    again = run_pipeline(s, progress=False)
    assert (again.done, again.recovered, again.skipped) == (0, 6, 6)
    after = read_metrics(str(out)).sort_by("key")
    assert after["key"].to_pylist() == names
    for col in ("psnr_y", "plain_psnr_y", "ssim_rgb", "lr_width", "changed_values", "weights_sha256", "settings_json"):
        assert after[col].to_pylist() == before[col].to_pylist(), col


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def test_damaged_tar_shards_fail_only_their_unreadable_members(ray_local, small_images, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    png = (small_images / "a.png").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(3):
            tar.addfile(*_member(f"m{i}.png", png))
    whole = buf.getvalue()
    # Truncated: the third member's data is cut in half.
    third = whole.index(png, whole.index(png, whole.index(png) + 1) + 1)
    (inp / "cut.tar").write_bytes(whole[: third + len(png) // 2])
    # A member whose bytes are not an image, between two good ones.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(*_member("good1.png", png))
        tar.addfile(*_member("bad.png", b"\x89PNG but not really" * 10))
        tar.addfile(*_member("good2.png", png))
    (inp / "corrupt.tar").write_bytes(buf.getvalue())
    summary = run_pipeline(PipelineSettings(input=str(inp), output=str(out), model="bicubic", scale=2, method="plain"), progress=False)
    rows = {r["key"]: r for r in read_metrics(str(out)).to_pylist()}
    assert {k: r["status"] for k, r in rows.items()} == {
        "cut.tar/m0.png": "ok", "cut.tar/m1.png": "ok", "cut.tar/m2.png": "failed",
        "corrupt.tar/good1.png": "ok", "corrupt.tar/bad.png": "failed", "corrupt.tar/good2.png": "ok",
    }  # fmt: skip
    assert "truncated" in rows["cut.tar/m2.png"]["error"] or "end of" in rows["cut.tar/m2.png"]["error"]
    assert (summary.done, summary.failed) == (4, 2)
    # A rerun redoes only the failed members.
    again = run_pipeline(PipelineSettings(input=str(inp), output=str(out), model="bicubic", scale=2, method="plain"), progress=False)
    assert (again.done, again.failed) == (0, 2)


def test_progress_lines_for_logs():
    buf = io.StringIO()
    p = Progress(10, mode="auto", interval=0.0, stream=buf)  # a StringIO is not a terminal: lines
    p.update(3, 1)
    p.close()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[hcd] 4/10 images (40.0%): 3 done, 1 failed,") and "ETA" in lines[0]
    assert len(lines) == 2


def test_run_output_is_readable_with_older_schema_parts(ray_local, small_images, tmp_path):
    out = tmp_path / "out"
    s = PipelineSettings(input=str(small_images), output=str(out), model="bicubic", scale=2, method="plain")
    run_pipeline(s, progress=False)
    # Rewrite every part as an earlier release would have (one column fewer, no schema stamp).
    for p in (out / "metrics" / "parts").glob("*.parquet"):
        t = pq.read_table(p)
        pq.write_table(t.drop_columns(["ssim_rgb", "settings", "device"]).replace_schema_metadata(None), p)
    (out / "metrics.parquet").unlink()
    again = run_pipeline(s, progress=False)
    assert (again.done, again.skipped) == (0, 4)
    final = read_metrics(str(out))
    assert final.num_rows == 4 and final["ssim_rgb"].null_count == 4
    # The settings struct is rebuilt from settings_json for files that lack it.
    assert [json.loads(j)["lr_steps"] for j in final["settings_json"].to_pylist()] == [v["lr_steps"] for v in final["settings"].to_pylist()]
    meta = pq.read_schema(out / "metrics.parquet").metadata
    assert meta[b"hcd_pipeline.schema"] == SCHEMA_VERSION.encode()
    assert json.loads((out / "job.json").read_text())["fingerprint"]
    # And reports over them (the old-schema parts; without metrics.parquet, from the parts).
    from hcd_pipeline.report.build import build_report, load_tables

    (out / "metrics.parquet").unlink()
    rep = build_report(load_tables([str(out)]))
    assert rep["counts"]["done"] == 4 and rep["groups"][0]["gain_y"]["n"] + rep["groups"][0]["gain_y"]["n_inf"] == 4


def test_stages_are_not_fused(ray_local, small_images, tmp_path):
    from hcd_pipeline.pipeline import build_dataset

    s = PipelineSettings(input=str(small_images), output=str(tmp_path / "o"), model="bicubic", scale=2, method="plain")
    ref = ray_local.put(pa.table({"kind": ["file"], "uri": [str(small_images / "a.png")], "key": ["a.png"], "version": [""],
                                  "error": pa.array([None], pa.string())}))  # fmt: skip
    ds = build_dataset(s, [ref], "t")
    rows = ds.take_all()
    assert rows[0]["ok"] == 1
    names = ds.stats()
    # Decode runs in tasks, the model in actors, writes in tasks: three operators, none fused with another.
    assert "MapBatches(decode_stage)->" not in names and "MapBatches(ModelStage)" in names and "MapBatches(write_stage)" in names


def test_settings_that_cannot_all_run_are_refused():
    from hcd_pipeline.core.errors import SettingsError
    from hcd_pipeline.pipeline.cluster import check_fits

    s = PipelineSettings(input="in", output="out", min_actors=2, max_actors=2)
    check_fits(s, {"CPU": 3.0})  # 2 actors + 0.5 decode + 0.5 write
    with pytest.raises(SettingsError, match=r"= 3 CPUs, but Ray has 2"):
        check_fits(s, {"CPU": 2.0})
    with pytest.raises(SettingsError, match=r"but Ray has 0 GPUs: .*--num-gpus 0"):  # says how to run it on CPUs
        check_fits(PipelineSettings(input="in", output="out", num_gpus=1), {"CPU": 8.0})


def test_a_size_window_fills_model_calls_with_same_size_images(ray_local, tmp_path):
    # Listing order alternates two sizes: calls of 4 consecutive images hold 2 + 2, so at most 2 are optimised together.
    # A decode task that takes two calls' worth and orders them by size hands on 4 + 4: full batches, same LRs' sizes.
    src = Image.open(Path(__file__).resolve().parents[1] / "samples" / "astronaut_crop.png").convert("RGB")
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(8):
        src.crop((i * 5, 0, i * 5 + (24 if i % 2 else 32), 24)).save(inp / f"img{i}.png")
    together = {}
    for window in (1, 2):
        out = tmp_path / f"out{window}"
        s = PipelineSettings(input=str(inp), output=str(out), model="tiny-irn-x2", method="lr", overrides={"lr_steps": 1},
                             batch_size=4, hcd_batch=4, size_window=window)  # fmt: skip
        assert s.decode_rows() == 4 * window
        assert run_pipeline(s, progress=False).done == 8
        together[window] = sorted(json.loads(p.read_text())["batch"] for p in (out / "lr").glob("*.json"))
    assert together == {1: [2] * 8, 2: [4] * 8}
    assert PipelineSettings(input="i", output="o", num_gpus=1, batch_size=8, method="hcd").decode_rows() == 32  # GPU default: 4
