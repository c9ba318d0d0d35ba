"""The pipeline on a real local Ray, with local folders and a real S3-compatible server (moto)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import s3fs

from hcd_pipeline.io.storage import StorageOptions
from hcd_pipeline.pipeline import PipelineSettings, read_metrics, run_pipeline

HCD = str(Path(sys.executable).parent / "hcd")


def _settings(inp: str, out: str, **kw) -> PipelineSettings:
    return PipelineSettings(input=inp, output=out, model="tiny-irn-x2", **kw)


def test_local_folder_matches_single_image_cli_byte_for_byte(ray_local, small_images, tmp_path):
    out = tmp_path / "out"
    summary = run_pipeline(_settings(str(small_images), str(out), seed=7), progress=False)
    assert (summary.done, summary.failed, summary.skipped) == (4, 0, 0)
    table = read_metrics(str(out))
    assert sorted(table["key"].to_pylist()) == ["a.png", "d.png", "sub/b.jpg", "sub/c.png"]
    assert set(table["status"].to_pylist()) == {"ok"}
    assert all(g is not None for g in table["gain_y"].to_pylist())
    # The same images through `hcd downscale` give the same bytes.
    cli_out = tmp_path / "cli"
    subprocess.run([HCD, "downscale", str(small_images / "a.png"), str(small_images / "sub" / "b.jpg"), "-o", str(cli_out),
                    "--model", "tiny-irn-x2", "--seed", "7"], check=True, capture_output=True)  # fmt: skip
    assert (cli_out / "a.png").read_bytes() == (out / "lr" / "a.png.png").read_bytes()
    assert (cli_out / "b.png").read_bytes() == (out / "lr" / "sub" / "b.jpg.png").read_bytes()
    side = json.loads((out / "lr" / "sub" / "b.jpg.json").read_text())
    assert side["key"] == "sub/b.jpg" and side["seed"] == 7 and side["model"] == "tiny-irn-x2"
    # The sidecars agree too, the no-harm record included (it crosses from the model stage to the write stage).
    for cli_side, run_side in ((cli_out / "a.json", out / "lr" / "a.png.json"), (cli_out / "b.json", out / "lr" / "sub" / "b.jpg.json")):
        a, b = json.loads(cli_side.read_text()), json.loads(run_side.read_text())
        for k in ("kept", "judged", "changed_values", "metrics", "losses", "tile", "memory"):
            assert a[k] == b[k], (k, a[k], b[k])
    # A rerun skips everything and leaves one row per image.
    again = run_pipeline(_settings(str(small_images), str(out), seed=7), progress=False)
    assert (again.done, again.skipped) == (0, 4)
    assert read_metrics(str(out)).num_rows == 4
    # Other settings into the same output are refused.
    with pytest.raises(Exception, match="other settings"):
        run_pipeline(_settings(str(small_images), str(out), seed=8), progress=False)


def test_resume_after_partial_run_and_bad_files(ray_local, small_images, tmp_path):
    inp = tmp_path / "in"
    shutil.copytree(small_images, inp)
    (inp / "broken.png").write_bytes((inp / "a.png").read_bytes()[:100])
    out = tmp_path / "out"
    first = run_pipeline(_settings(str(inp), str(out), method="plain", limit=2), progress=False)  # "killed halfway"
    assert first.done + first.failed == 2
    second = run_pipeline(_settings(str(inp), str(out), method="plain"), progress=False)
    assert second.skipped == first.done and second.failed == 1
    assert "broken.png" in second.failures[0]["key"]
    attempts = read_metrics(str(out), all_attempts=True)
    ok_keys = [k for k, s in zip(attempts["key"].to_pylist(), attempts["status"].to_pylist(), strict=True) if s == "ok"]
    assert sorted(ok_keys) == sorted(set(ok_keys)) and len(ok_keys) == 4  # every image done exactly once
    final = read_metrics(str(out))
    assert final.num_rows == 5 and sorted(final["key"].to_pylist()) == sorted(set(final["key"].to_pylist()))
    failed = next(r for r in final.to_pylist() if r["status"] == "failed")
    assert failed["key"] == "broken.png" and "broken.png" in failed["error"]
    # The failed image is fixed: a third run redoes only it.
    shutil.copy(inp / "a.png", inp / "broken.png")
    third = run_pipeline(_settings(str(inp), str(out), method="plain"), progress=False)
    assert (third.done, third.failed, third.skipped) == (1, 0, 4)
    assert set(read_metrics(str(out))["status"].to_pylist()) == {"ok"}


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_s3_shards_in_lr_and_parquet_out(ray_local, s3_server, small_images):
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server.url}, use_listings_cache=False)
    fs.mkdir("archive")
    fs.pipe("archive/in/a.png", (small_images / "a.png").read_bytes())
    fs.pipe("archive/in/bad.jpg", b"definitely not a jpeg")
    fs.pipe("archive/in/broken.tar", b"\x00garbage, not a tar archive" * 30)
    shard = _tar({"x/b.jpg": (small_images / "sub" / "b.jpg").read_bytes(), "c.png": (small_images / "sub" / "c.png").read_bytes(),
                  "notes.txt": b"skipped"})  # fmt: skip
    fs.pipe("archive/in/shards/000.tar", shard)
    opts = StorageOptions(endpoint_url=s3_server.url)
    settings = _settings("s3://archive/in/", "s3://archive/out/", storage=opts)
    summary = run_pipeline(settings, progress=False)
    assert (summary.done, summary.failed) == (3, 2)
    keys = sorted(fs.find("archive/out/lr"))
    assert keys == sorted(f"archive/out/lr/{k}" for k in ["a.png.png", "a.png.json", "shards/000.tar/x/b.jpg.png",
                                                           "shards/000.tar/x/b.jpg.json", "shards/000.tar/c.png.png",
                                                           "shards/000.tar/c.png.json"])  # fmt: skip
    table = pq.read_table(io.BytesIO(fs.cat("archive/out/metrics.parquet")))
    rows = {r["key"]: r for r in table.to_pylist()}
    assert set(rows) == {"a.png", "bad.jpg", "broken.tar", "shards/000.tar/x/b.jpg", "shards/000.tar/c.png"}
    assert rows["broken.tar"]["status"] == "failed" and "tar shard" in rows["broken.tar"]["error"]
    assert rows["bad.jpg"]["status"] == "failed" and "bad.jpg" in rows["bad.jpg"]["error"]
    assert rows["a.png"]["lr_uri"] == "s3://archive/out/lr/a.png.png"
    from hcd_pipeline.io.images import decode_image

    lr = decode_image(fs.cat("archive/out/lr/shards/000.tar/c.png.png"), "c.png")
    assert (lr.width, lr.height) == (17, 15)
    # Rerun: nothing new is done, the bad file is retried and fails again; one final row per key.
    again = run_pipeline(settings, progress=False)
    assert (again.done, again.failed, again.skipped) == (0, 2, 1)
    assert read_metrics("s3://archive/out/", opts).num_rows == 5


def test_cli_run_prints_summary(ray_local, small_images, tmp_path):
    out = tmp_path / "o"
    # No --model: the documented default (irn-x2), as in the README demo.
    proc = subprocess.run([HCD, "run", "--input", str(small_images), "--output", str(out), "--method", "plain", "--limit", "2"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 done, 0 failed" in proc.stdout and "metrics.parquet" in proc.stdout
    # Not a terminal (a submitted job's log): progress as lines, and none of Ray's own chatter.
    assert "[hcd] 2/2 images (100.0%): 2 done, 0 failed" in proc.stderr, proc.stderr
    for noise in ("streaming_executor", "Progress bars disabled", "constructor arguments in the object store"):
        assert noise not in proc.stdout + proc.stderr, proc.stderr


def test_storage_outage_fails_cleanly_and_rerun_completes(ray_local, s3_server, small_images):
    import threading

    from hcd_pipeline.core.errors import StorageError
    from tests.services import TcpProxy

    proxy = TcpProxy(s3_server.port)
    proxy.start()
    direct = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server.url}, use_listings_cache=False)
    direct.mkdir("outage")
    names = []
    for i in range(6):
        src = sorted(small_images.rglob("*.*"))[i % 4]
        names.append(f"img{i}{src.suffix}")
        direct.pipe(f"outage/in/{names[-1]}", src.read_bytes())
    # A short retry budget so that the outage is noticed quickly.
    opts = StorageOptions(
        endpoint_url=proxy.url,
        extra={"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2, "read_timeout": 10}},
    )
    settings = _settings("s3://outage/in/", "s3://outage/out/", storage=opts, batch_size=1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_pipeline(settings, progress=False)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    import time

    deadline = time.time() + 300
    while not any(k.endswith(".json") for k in direct.find("outage/out/lr")) and time.time() < deadline and t.is_alive():
        time.sleep(0.05)
    assert t.is_alive(), f"the run ended before the outage: {errors}"
    proxy.stop()  # the server goes away mid-run
    t.join(timeout=600)
    assert errors and isinstance(errors[0], StorageError), errors
    assert "outage/out" in str(errors[0])
    proxy.start()  # back again
    summary = run_pipeline(settings, progress=False)
    assert summary.failed == 0
    attempts = read_metrics("s3://outage/out/", opts, all_attempts=True)
    ok = [k for k, s in zip(attempts["key"].to_pylist(), attempts["status"].to_pylist(), strict=True) if s == "ok"]
    assert sorted(ok) == sorted(names)  # nothing lost, nothing duplicated
    assert sorted(k.rsplit("/", 1)[-1] for k in direct.find("outage/out/lr") if k.endswith(".png")) == sorted(n + ".png" for n in names)
    proxy.stop()


def test_the_write_stage_records_without_loading_weights(small_images, tmp_path, monkeypatch):
    """The write stage turns modelled rows into files with a Recorder (settings, the scale the model stage ran at,
    the weights file's hash): loading a model there is refused, and its LR equals the single-image path's."""
    import pyarrow as pa

    import hcd_pipeline.downscaler.downscaler as service
    from hcd_pipeline import Downscaler, DownscaleSettings, read_image
    from hcd_pipeline.pipeline.stages import ModelStage, _Writer, decode_stage, write_stage

    sd = PipelineSettings(input=str(small_images), output=str(tmp_path / "out"), model="tiny-irn-x4", overrides={"lr_steps": 2}).to_dict()
    batch = pa.table({"kind": ["file"], "uri": [str(small_images / "a.png")], "key": ["a.png"], "version": ["v1"]})
    modelled = ModelStage(sd)(pa.concat_tables(list(decode_stage(batch, sd))))
    assert modelled["scale"].to_pylist() == [4]

    def no_weights(*args, **kwargs):
        raise AssertionError("the write stage loaded a model")

    monkeypatch.setattr(service, "load_model", no_weights)
    monkeypatch.setattr(_Writer, "_cache", {})
    summary = write_stage(modelled, sd, "r1").to_pylist()[0]
    assert (summary["ok"], summary["failed"]) == (1, 0), summary
    monkeypatch.undo()
    alone = Downscaler(DownscaleSettings(model="tiny-irn-x4", overrides={"lr_steps": 2})).process(read_image(small_images / "a.png"))
    assert (tmp_path / "out" / "lr" / "a.png.png").read_bytes() == alone.data
    side = json.loads((tmp_path / "out" / "lr" / "a.png.json").read_text())
    assert side["scale"] == 4 and side["weights_sha256"] == alone.sidecar["weights_sha256"]
