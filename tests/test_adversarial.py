"""Hostile and messy archives, through the CLI entry point on a real local Ray (and the S3-compatible server).

Each test builds a small input the way a careless or hostile archive would look, runs ``hcd`` as a user would,
and checks what the tool must never do: write outside its output, mix two images, trust a name over content,
expand a bomb, fetch what a table names, ship a secret, or die with a traceback. docs/hardening.md lists the
cases; add one here for every new case there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hcd_pipeline.core.errors import ImageReadError, SettingsError, StorageError
from hcd_pipeline.io.images import decode_image
from hcd_pipeline.io.storage import Storage
from hcd_pipeline.pipeline.keys import UnsafeKey, check_key
from hcd_pipeline.pipeline.schema import rows_to_table

HCD = str(Path(sys.executable).parent / "hcd")
PLAIN = ["--model", "bicubic", "--scale", "2", "--method", "plain"]


def _png(seed: int, w: int = 16, h: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _image(path: Path, seed: int, fmt: str | None = None, w: int = 16, h: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(io.BytesIO(_png(seed, w, h))).save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _hcd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HCD, *args], capture_output=True, text=True, timeout=timeout)


def _plain_run(inp: Path, out: Path) -> None:
    """A finished first run, made through the API on the suite's Ray (setup only: the cases run the CLI)."""
    from hcd_pipeline.pipeline import PipelineSettings, run_pipeline

    summary = run_pipeline(PipelineSettings(input=str(inp), output=str(out), model="bicubic", scale=2, method="plain"), progress=False)
    assert summary.failed == 0


def _rows(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in pq.read_table(out / "metrics.parquet").to_pylist()}


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize(
    ("key", "why"),
    [("../x.png", "'..'"), ("a/../../x.png", "'..'"), ("/etc/x.png", "absolute"), ("C:x.png", "drive"), ("a\\..\\x.png", "backslash"),
     ("a\nb.png", "control"), ("a\x00.png", "control"), ("./", "empty")],
)  # fmt: skip
def test_unsafe_keys_are_refused_with_the_reason(key, why):
    with pytest.raises(UnsafeKey, match=why):
        check_key(key)


def test_keys_are_normalised():
    assert check_key("./a//b/./c.png") == "a/b/c.png"


def test_storage_refuses_keys_that_leave_its_root(tmp_path):
    st = Storage(str(tmp_path / "out"))
    for key in ("../x.json", "lr/../../x.json", "/etc/x.json", "a\x00b"):
        with pytest.raises(StorageError, match="leave the storage root"):
            st.write(key, b"{}")
    assert not (tmp_path / "x.json").exists()


def test_hostile_tar_and_same_stem_files_stay_inside_the_output(ray_local, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _image(inp / "x.png", 1)
    _image(inp / "x.jpg", 2, "JPEG")
    _image(inp / "x.webp", 3, "WEBP")
    (inp / "bad\nname.png").write_bytes(_png(4))
    with tarfile.open(inp / "s.tar", "w") as tar:
        _add(tar, "../../../../escape.png", _png(5))
        _add(tar, "a/../../../x.png", _png(6))
        _add(tar, "/abs.png", _png(7))
        _add(tar, "..\\..\\win.png", _png(8))
        _add(tar, "ok.png", _png(9))
        _add(tar, "ok.png", _png(10))  # a second member of the same name
        _add(tar, "link.png", kind=tarfile.SYMTYPE, link="/etc/passwd")
        _add(tar, "hard.png", kind=tarfile.LNKTYPE, link="ok.png")
    before = _tree(tmp_path)
    proc = _hcd("run", "--input", str(inp), "--output", str(out), *PLAIN)
    assert proc.returncode == 1, proc.stderr  # failed rows: the run says so
    assert "Traceback" not in proc.stderr
    # Nothing was written outside the output; the input is untouched.
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before
    rows = _rows(out)
    # Three images that share a stem keep three LRs, each with its own pixels and its own sidecar.
    for name in ("x.png", "x.jpg", "x.webp"):
        side = json.loads((out / "lr" / f"{name}.json").read_text())
        assert side["key"] == name and rows[name]["status"] == "ok" and rows[name]["lr_uri"] == str(out / "lr" / f"{name}.png")
        assert side["source_sha256"] == rows[name]["source_sha256"] and side["source_bytes"] == (inp / name).stat().st_size
    lrs = {n: (out / "lr" / f"{n}.png").read_bytes() for n in ("x.png", "x.jpg", "x.webp")}
    assert len(set(lrs.values())) == 3
    assert rows["s.tar/ok.png"]["status"] == "ok"
    assert rows["s.tar/ok.png"]["source_sha256"] == hashlib.sha256(_png(9)).hexdigest()  # the first member of the name
    reasons = {k: r["error"].split(":", 1)[0] for k, r in rows.items() if r["status"] != "ok"}
    assert reasons == {
        "bad\nname.png": "UnsafeKey",
        "s.tar/../../../../escape.png": "UnsafeKey",
        "s.tar/a/../../../x.png": "UnsafeKey",
        "s.tar//abs.png": "UnsafeKey",
        "s.tar/..\\..\\win.png": "UnsafeKey",
        "s.tar/link.png": "UnsafeKey",
        "s.tar/hard.png": "UnsafeKey",
    }
    assert "DuplicateKey" in proc.stderr  # the second ok.png: its failed row is an attempt; the final row is the first's
    assert all(".." not in (r["lr_uri"] or "") for r in rows.values())
    # A rerun redoes nothing that is finished, and the progress count stays true (tar shards: no total).
    again = _hcd("run", "--input", str(inp), "--output", str(out), *PLAIN)
    assert "0 done" in again.stdout and "3 skipped" in again.stdout, again.stdout
    lr_after = {k: v for k, v in after.items() if k.startswith("out/lr/")}
    assert {k: v for k, v in _tree(tmp_path).items() if k.startswith("out/lr/")} == lr_after


def test_list_file_entries_cannot_overwrite_sources(ray_local, tmp_path):
    imgs, job, out = tmp_path / "imgs", tmp_path / "job" / "deep", tmp_path / "job" / "deep" / "out"
    _image(imgs / "a.png", 1)
    _image(job / "b.png", 2)
    (job / "list.txt").write_text(f"../../imgs/a.png\nb.png\nb.png\n{imgs / 'a.png'}\n")
    (job / "out" / "lr").mkdir(parents=True)
    before = _tree(imgs)
    proc = _hcd("run", "--input", str(job / "list.txt"), "--output", str(out), *PLAIN)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert _tree(imgs) == before  # the sources were not overwritten
    rows = _rows(out)
    assert rows["../../imgs/a.png"]["error"].startswith("UnsafeKey")
    assert rows["b.png"]["status"] == "ok"  # listed twice: done once, the second listing a failed attempt
    assert rows[str(imgs / "a.png").lstrip("/")]["status"] == "ok"  # an absolute entry: its key is the path, inside lr/
    assert "DuplicateKey" in proc.stderr
    assert not list(tmp_path.glob("**/a.json")) or all("out/lr" in str(p) for p in tmp_path.glob("**/a.json"))


@pytest.mark.parametrize("where", ["output-in-input", "input-in-output"])
def test_overlapping_input_and_output_are_refused_before_anything_runs(tmp_path, where):
    _image(tmp_path / "photos" / "a.png", 1)
    inp, out = (tmp_path / "photos", tmp_path / "photos" / "lr") if where == "output-in-input" else (tmp_path / "photos", tmp_path)
    before = _tree(tmp_path)
    t0 = time.perf_counter()
    proc = _hcd("run", "--input", str(inp), "--output", str(out), *PLAIN)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("error:") and "inside" in proc.stderr
    assert _tree(tmp_path) == before and time.perf_counter() - t0 < 30  # refused before Ray starts: no job.json


@pytest.mark.parametrize(
    ("address", "says"),
    [("http://127.0.0.1:8265", "dashboard URL"), ("127.0.0.1:9", "cannot connect")],  # port 9: discard, closed here
)
def test_a_ray_address_that_cannot_be_joined_fails_in_one_line(tmp_path, address, says):
    """RAY_ADDRESS set to the dashboard (as for hcd submit) or to a cluster that is down: one error line, nothing
    written, before Ray spends minutes retrying."""
    _image(tmp_path / "photos" / "a.png", 1)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_ADDRESS": address}
    t0 = time.perf_counter()
    proc = subprocess.run([HCD, "run", "--input", str(tmp_path / "photos"), "--output", str(tmp_path / "out"), *PLAIN],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert says in proc.stderr and address in proc.stderr
    assert not (tmp_path / "out").exists() and time.perf_counter() - t0 < 30


def test_naming_the_default_model_resumes_the_same_output(ray_local, tmp_path):
    """A rerun that names the default model (or its scale) is the same job: nothing redone, nothing refused."""
    _image(tmp_path / "in" / "a.png", 1)
    first = _hcd("run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--method", "plain")
    assert first.returncode == 0, first.stderr
    again = _hcd("run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--method", "plain", "--model", "irn-x2")
    assert again.returncode == 0 and "1 skipped" in again.stderr + again.stdout, again.stderr
    # The first line, before Ray starts, says what runs: the model resolved, with the tag of its weights.
    said = f"[hcd] {tmp_path / 'in'} -> {tmp_path / 'out'}: model irn-x2.v1-fp16 x2, plain, png LRs; 1 model actor(s)"
    assert again.stderr.startswith(said), again.stderr


def test_changed_and_replaced_sources_are_redone_and_another_input_is_refused(ray_local, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _image(inp / "a.png", 1)
    _image(inp / "b.png", 2)
    _plain_run(inp, out)
    old_b = (out / "lr" / "b.png.png").read_bytes()
    _image(inp / "a.png", 3, w=20, h=14)  # another picture of another size
    _image(inp / "b.png", 4)  # same size, other content
    proc = _hcd("run", "--input", str(inp), "--output", str(out), *PLAIN)
    assert "2 done" in proc.stdout and "0 skipped" in proc.stdout, proc.stdout
    rows = _rows(out)
    assert (rows["a.png"]["width"], rows["a.png"]["lr_width"]) == (20, 10)
    assert (out / "lr" / "b.png.png").read_bytes() != old_b
    assert json.loads((out / "lr" / "b.png.json").read_text())["source_sha256"] == rows["b.png"]["source_sha256"]
    # A changed source whose new content fails shows the failure, not the old image's row.
    (inp / "b.png").write_bytes(b"not an image any more")
    assert _hcd("run", "--input", str(inp), "--output", str(out), *PLAIN).returncode == 1
    assert _rows(out)["b.png"]["status"] == "failed"
    # The same names from another folder into the same output: refused, in one line.
    other = tmp_path / "other"
    _image(other / "a.png", 5)
    proc = _hcd("run", "--input", str(other), "--output", str(out), *PLAIN)
    assert proc.returncode == 1 and "made from the input" in proc.stderr and proc.stderr.count("\n") == 1


def test_output_of_an_earlier_layout_is_not_resumed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "job.json").write_text(json.dumps({"fingerprint": "x", "settings": {}}))
    _image(tmp_path / "in" / "a.png", 1)
    proc = _hcd("run", "--input", str(tmp_path / "in"), "--output", str(out), *PLAIN)
    assert proc.returncode == 1 and "layout 1" in proc.stderr and "Traceback" not in proc.stderr


def _png16_bomb(inflated: int) -> bytes:
    """A 4x4 16-bit RGB PNG whose image data inflates to ``inflated`` bytes of zeros (the header allows 100)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + (zlib.crc32(kind + body) & 0xFFFFFFFF).to_bytes(4, "big")

    z = zlib.compressobj(9)
    block = bytes(1 << 20)
    idat = b"".join(z.compress(block) for _ in range(inflated >> 20)) + z.flush()
    ihdr = (4).to_bytes(4, "big") * 2 + bytes([16, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png16_bomb_is_refused_without_inflating_it():
    bomb = _png16_bomb(256 << 20)
    assert len(bomb) < 300_000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageReadError, match="decompression bomb"):
        decode_image(bomb, "bomb.png")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 64 * 1024  # KiB: far below the 256 MiB it holds


def test_yaml_alias_bomb_and_nested_specs_are_refused_at_once(tmp_path):
    lol = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 9))
    spec = tmp_path / "bomb.yaml"
    spec.write_text("input: in\noutput: out\nstorage:\n  extra:\n    l0: &l0 x\n    " + lol.replace("\n", "\n    "))
    t0 = time.perf_counter()
    proc = _hcd("run", "--job", str(spec))
    assert proc.returncode == 1 and "aliases" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize(
    "storage",
    ["{extra: {client_kwargs: {aws_secret_access_key: abc}}}", "{extra: {config_kwargs: {x: [{session_token: t}]}}}",
     "{extra: {password: p}}"],
)  # fmt: skip
def test_credentials_anywhere_in_storage_are_refused(tmp_path, storage):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"input: s3://b/in/\noutput: s3://b/out/\nstorage: {storage}\n")
    proc = _hcd("run", "--job", str(spec))
    assert proc.returncode == 1 and "credentials do not belong" in proc.stderr and "abc" not in proc.stderr


@pytest.mark.parametrize(
    ("line", "expect"),
    [("storage: {extra: 5}", "storage.extra must be dict"), ("seed: 1e23", "seed must be int"), ("scale: 0", "scale"),
     ("actors: {min: 1.7, max: 1.2}", "actors")],
)  # fmt: skip
def test_bad_spec_values_are_one_line(tmp_path, line, expect):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"input: {tmp_path}/in\noutput: {tmp_path}/out\n{line}\n")
    proc = _hcd("run", "--job", str(spec))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and expect in proc.stderr, proc.stderr


def test_submit_ships_the_validated_spec_not_its_text(tmp_path):
    from hcd_pipeline.pipeline.jobs import SPEC_ENV, load_job
    from hcd_pipeline.pipeline.submit import runtime_env

    spec = tmp_path / "s.yaml"
    spec.write_text("# ops: the key is AKIA-not-here\ninput: s3://b/in/\noutput: s3://b/out/\nseed: 3\n")
    env = runtime_env(load_job(spec))["env_vars"]
    assert json.loads(env[SPEC_ENV]) == {"input": "s3://b/in/", "output": "s3://b/out/", "seed": 3} and "AKIA" not in env[SPEC_ENV]
    assert not any(k.startswith("AWS_SECRET") or k == "AWS_ACCESS_KEY_ID" for k in env)


def test_submit_from_an_installed_package_uploads_only_the_package(tmp_path, monkeypatch):
    """From a source checkout the project is the working directory; from a wheel install (no pyproject.toml beside
    the package) only hcd_pipeline/ travels, never the site-packages around it."""
    from hcd_pipeline.pipeline import submit
    from hcd_pipeline.pipeline.jobs import load_job

    spec = tmp_path / "s.yaml"
    spec.write_text("input: s3://b/in/\noutput: s3://b/out/\n")
    checkout = submit.runtime_env(load_job(spec))
    assert checkout["working_dir"] == str(submit.project_root()) and "py_modules" not in checkout
    site = tmp_path / "site-packages"
    (site / "hcd_pipeline").mkdir(parents=True)
    monkeypatch.setattr(submit, "project_root", lambda: site)
    installed = submit.runtime_env(load_job(spec))
    assert installed["py_modules"] == [str(site / "hcd_pipeline")] and "working_dir" not in installed


class _Counter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        _Counter.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(_png(1))

    def log_message(self, *args) -> None:
        pass


def test_report_reads_pictures_only_of_the_run(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        secret = tmp_path / "private" / "secret.png"
        _image(secret, 7)
        out = tmp_path / "run"
        (out / "metrics").mkdir(parents=True)
        url = f"http://127.0.0.1:{server.server_port}/x.png"
        rows = [
            {"key": f"k{i}", "status": "ok", "source_uri": src, "lr_uri": lr, "plain_psnr_y": 30.0, "psnr_y": 30.5 + i, "gain_y": 0.5 + i,
             "ssim_y": 0.9, "plain_ssim_y": 0.9, "seconds": 1.0, "model": "bicubic", "scale": 2, "method": "plain", "preset": "default",
             "width": 16, "height": 12}
            for i, (src, lr) in enumerate([(url, url), (str(secret), str(secret))])
        ]  # fmt: skip
        pq.write_table(rows_to_table(rows), out / "metrics.parquet")
        proc = _hcd("report", str(out), "--html", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json"))
        assert proc.returncode == 0, proc.stderr
        page = (tmp_path / "r.html").read_text()
        assert _Counter.hits == [] and "not read: the picture lies outside" in page
        assert "data:image/png" not in page  # the private file was not embedded either
    finally:
        server.shutdown()
    missing = _hcd("report", str(tmp_path / "no-such-run"), "--html", str(tmp_path / "m.html"))
    assert missing.returncode == 1 and "no run output here" in missing.stderr and not (tmp_path / "m.html").exists()


def test_corrupt_part_is_set_aside_and_the_run_resumes(ray_local, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _image(inp / "a.png", 1)
    _image(inp / "b.png", 2)
    _plain_run(inp, out)
    (part,) = (out / "metrics" / "parts").glob("*.parquet")
    part.write_bytes(b"PAR1 torn by a disk" + bytes(40))
    (out / "metrics.parquet").unlink()
    proc = _hcd("run", "--input", str(inp), "--output", str(out), *PLAIN)
    assert proc.returncode == 0 and "set aside" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (out / "metrics" / "corrupt" / part.name).is_file() and not part.exists()
    rows = _rows(out)
    assert {k: r["status"] for k, r in rows.items()} == {"a.png": "ok", "b.png": "ok"}  # recovered from the sidecars


def test_unwritable_output_is_one_line(tmp_path):
    _image(tmp_path / "in" / "a.png", 1)
    (tmp_path / "file").write_text("a file where a folder should be")
    proc = _hcd("run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "file" / "out"), *PLAIN)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("[hcd] ")]  # the run's header may come first
    assert proc.returncode == 1 and len(errors) == 1 and errors[0].startswith("error:"), proc.stderr


def test_sigterm_stops_the_run_like_ctrl_c_and_keeps_finished_work(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(40):
        _image(inp / f"i{i:02d}.png", i, w=48, h=48)
    args = ["run", "--input", str(inp), "--output", str(out), "--model", "tiny-irn-x2", "--seed", "1", "--batch-size", "1"]
    proc = subprocess.Popen([HCD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list((out / "lr").glob("*.json")):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be stopped"
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr and "*** " not in stderr, stderr[-2000:]
    finished = {p.name[: -len(".json")]: (out / "lr" / f"{p.name[: -len('.json')]}.png").stat().st_mtime_ns
                for p in (out / "lr").glob("*.json")}  # fmt: skip
    assert finished
    done = _hcd(*args)
    assert done.returncode == 0 and "40 ok of 40" in done.stdout, done.stdout + done.stderr
    assert {k: (out / "lr" / f"{k}.png").stat().st_mtime_ns for k in finished} == finished  # not redone


def test_s3_hostile_keys_and_overlapping_prefixes(ray_local, s3_server, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server.url}, use_listings_cache=False)
    fs.mkdir("hostile")
    fs.pipe("hostile/in/ok.png", _png(1))
    fs.pipe("hostile/in/x.jpg", _png(2))
    fs.pipe("hostile/in/x.png", _png(3))
    fs.pipe("hostile/config.json", b'{"precious": true}')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "../../config.png", _png(4))
    fs.pipe("hostile/in/s.tar", buf.getvalue())
    env = {**os.environ, "HCD_S3_ENDPOINT_URL": s3_server.url}
    run = subprocess.run([HCD, "run", "--input", "s3://hostile/in/", "--output", "s3://hostile/out/", *PLAIN], capture_output=True,
                         text=True, env=env, timeout=300)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert fs.cat("hostile/config.json") == b'{"precious": true}'
    written = sorted(k for k in fs.find("hostile") if not k.startswith(("hostile/in/", "hostile/out/")))
    assert written == ["hostile/config.json"]
    assert sorted(k[len("hostile/out/lr/") :] for k in fs.find("hostile/out/lr")) == [
        "ok.png.json", "ok.png.png", "x.jpg.json", "x.jpg.png", "x.png.json", "x.png.png"]  # fmt: skip
    nested = subprocess.run([HCD, "run", "--input", "s3://hostile/in/", "--output", "s3://hostile/in/lr/", *PLAIN], capture_output=True,
                            text=True, env=env, timeout=120)  # fmt: skip
    assert nested.returncode == 1 and "inside the input" in nested.stderr


def test_overlap_rule_on_prefixes_and_list_files(tmp_path):
    from hcd_pipeline.pipeline.keys import check_disjoint

    for inp, out in (("s3://b/p", "s3://b/p/out"), ("s3://b/p/out/in", "s3://b/p/"), (str(tmp_path), str(tmp_path / "o"))):
        with pytest.raises(SettingsError, match="inside"):
            check_disjoint(inp, out)
    check_disjoint("s3://b/photos", "s3://b/photos-lr")  # a shared name prefix is not nesting
    check_disjoint(str(tmp_path / "job" / "list.txt"), str(tmp_path / "job" / "out"))  # list entries are checked one by one


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF"])
def test_animated_and_multi_page_images_are_refused_not_cut_to_a_frame(fmt):
    frames = [Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match="3 frames"):
        decode_image(buf.getvalue(), f"x.{fmt.lower()}")


def test_upscale_checks_the_sidecar_against_the_lr(tmp_path):
    src = tmp_path / "a.png"
    _image(src, 1, w=20, h=14)
    assert _hcd("downscale", str(src), "-o", str(tmp_path / "lr"), *PLAIN).returncode == 0
    side = tmp_path / "lr" / "a.json"
    good = json.loads(side.read_text())
    side.write_text(json.dumps({**good, "source_size": [40, 28]}))  # another image's sidecar
    proc = _hcd("upscale", str(tmp_path / "lr" / "a.png"), "-o", str(tmp_path / "up"))
    assert proc.returncode == 1 and "belongs to another image" in proc.stderr and "Traceback" not in proc.stderr
    side.write_text("[1, 2]")
    proc = _hcd("upscale", str(tmp_path / "lr" / "a.png"), "-o", str(tmp_path / "up"))
    assert proc.returncode == 1 and "not a JSON object" in proc.stderr and "Traceback" not in proc.stderr


def test_oversized_files_and_tar_members_are_failed_rows_not_reads(tmp_path, monkeypatch):
    import pyarrow as pa

    from hcd_pipeline.pipeline import stages
    from hcd_pipeline.pipeline.plan import MANIFEST_SCHEMA

    monkeypatch.setattr(stages, "MAX_SOURCE_BYTES", 100)  # the real limit is 1 GiB; the rule is the same
    (tmp_path / "big.png").write_bytes(_png(1, 64, 64))
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        _add(tar, "big.png", _png(2, 64, 64))
    manifest = pa.Table.from_pylist(
        [{"kind": "file", "uri": str(tmp_path / "big.png"), "key": "big.png", "version": "v", "error": None},
         {"kind": "tar", "uri": str(tmp_path / "s.tar"), "key": "s.tar", "version": "v", "error": None}],
        schema=MANIFEST_SCHEMA,
    )  # fmt: skip
    rows = {r["key"]: r for t in stages.decode_stage(manifest, {}) for r in t.to_pylist()}
    assert "more than 100 bytes" in rows["big.png"]["error"] and "larger than 100" in rows["s.tar/big.png"]["error"]
    assert rows["big.png"]["pixels"] is None and rows["s.tar/big.png"]["pixels"] is None


def test_downscale_never_lets_two_inputs_share_an_output(tmp_path):
    _image(tmp_path / "x.png", 1)
    _image(tmp_path / "x.jpg", 2, "JPEG")
    proc = _hcd("downscale", str(tmp_path / "x.png"), str(tmp_path / "x.jpg"), "-o", str(tmp_path / "out"), "--force", *PLAIN)
    assert proc.returncode == 1 and "is " in proc.stderr and "x.png's in this command" in proc.stderr, proc.stderr
    side = json.loads((tmp_path / "out" / "x.json").read_text())
    assert side["source"].endswith("x.png")  # the first input's LR, not overwritten by the second


def test_credentials_in_the_endpoint_url_are_refused(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("input: s3://b/in/\noutput: s3://b/out/\nstorage: {endpoint_url: 'https://AKIA:hunter2@minio:9000'}\n")
    proc = _hcd("run", "--job", str(spec))
    assert proc.returncode == 1 and "credentials do not belong" in proc.stderr and "hunter2" not in proc.stderr


def test_missing_input_is_one_line_before_ray_and_writes_nothing(tmp_path):
    t0 = time.perf_counter()
    proc = _hcd("run", "--input", str(tmp_path / "no-such-folder"), "--output", str(tmp_path / "out"), *PLAIN)
    assert proc.returncode == 1 and proc.stderr == f"error: {tmp_path / 'no-such-folder'}: input not found\n"
    assert not (tmp_path / "out").exists() and time.perf_counter() - t0 < 30
