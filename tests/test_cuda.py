"""Device paths: the prepared GPU check in its CPU mode (always), and CUDA itself (skipped without a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hcd_pipeline.core.device import device_mode, resolve_device
from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
from hcd_pipeline.io.images import DecodedImage
from tests.conftest import ROOT

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_gpu_check_cpu_mode_writes_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--tiny",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    sec = doc["sections"]
    assert set(sec) == {"environment", "precision", "throughput", "mixed_sizes", "step_ms", "cpu_vs_device", "repeatability",
                        "pipeline_stage"}  # fmt: skip
    assert sec["environment"]["kind"] == "cpu" and sec["environment"]["torch"] == torch.__version__
    assert {(r["scale"], r["batch"]) for r in sec["throughput"]["rows"]} == {(2, 1), (2, 4), (4, 1), (4, 4)}
    assert all(r["images_per_s"] > 0 for r in sec["throughput"]["rows"])
    assert {r["memory"] for r in sec["step_ms"]["rows"]} == {"fast", "low", "lowest"}
    prec = sec["precision"]["rows"]
    assert {(r["scale"], r["precision"]) for r in prec} == {(2, "fp32"), (2, "bf16"), (4, "fp32"), (4, "bf16")}
    assert all("error" not in r and r["gflop_per_image"] > 0 and r["achieved_tflops"] > 0 for r in prec), prec
    assert all(r["gain_vs_fp32_db"] == 0 for r in prec if r["precision"] == "fp32")
    assert sec["repeatability"]["run_to_run"]["differing_values"] == 0
    assert sec["pipeline_stage"]["errors"] == [] and sec["pipeline_stage"]["lr_values_differing_from_alone"] == 0
    mixed = sec["mixed_sizes"]  # every image through the model stage in each order; one size fills every call
    assert mixed["listed"]["images"] == mixed["size_window"]["images"] == mixed["same_size"]["images"] == 16
    assert mixed["same_size"]["mean_batch"] == mixed["call"] and mixed["window_share_of_same_size"] > 0


def test_gpu_check_measures_training_speed_in_both_precisions(tmp_path):
    out = tmp_path / "train.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--tiny", "--sections",
                           "train_speed", "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["sections"]["train_speed"]["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "bf16"] and rows[0]["speed_vs_fp32"] == 1.0
    assert all(r["steps_per_s"] > 0 and r["last_loss"] > 0 for r in rows), rows


def test_gpu_check_compares_a_compiled_step_with_eager(tmp_path):
    """#24's compile variant as the GPU run will measure it, on the tiny model: it compiles (inductor on the CPU
    needs a C compiler; without one the row carries the error and the test skips) and its loss and gradient are
    eager's up to float rounding."""
    out = tmp_path / "compiled.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--tiny", "--sections",
                           "compiled_step", "--out", str(out)], capture_output=True, text=True, timeout=400, cwd=ROOT)  # fmt: skip
    rows = json.loads(out.read_text())["sections"]["compiled_step"]["rows"]
    assert [(r["precision"], r["mode"]) for r in rows] == [("fp32", "eager"), ("fp32", "default")]
    eager, compiled = rows
    assert "error" not in eager and eager["speed_vs_eager"] == 1.0 and eager["grad_max_diff_vs_eager_fp32"] == 0
    if "error" in compiled and "compiler" in compiled["error"].lower():  # any other error fails below
        pytest.skip(f"inductor has no C++ compiler here: {compiled['error'][:200]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert compiled["ms_per_step"] > 0 and compiled["first_call_s"] > compiled["ms_per_step"] / 1000
    assert compiled["grad_max_diff_vs_eager_fp32"] <= 1e-4 * compiled["grad_max_abs"], compiled


@CUDA
def test_cuda_graphs_replay_the_step_that_eager_takes(tmp_path):
    """CUDA graphs (``torch.compile`` mode reduce-overhead) on the tiny model: same loss and gradient as eager."""
    out = tmp_path / "graphs.json"
    variants = "fp32:eager,fp32:reduce-overhead"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cuda", "--quick", "--tiny", "--sections",
                           "compiled_step", "--compile-variants", variants, "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    rows = json.loads(out.read_text())["sections"]["compiled_step"]["rows"]
    if "error" in rows[1] and "triton" in rows[1]["error"].lower():
        pytest.skip(f"no Triton for inductor here: {rows[1]['error'][:200]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert rows[1]["grad_max_diff_vs_eager_fp32"] <= 1e-4 * rows[1]["grad_max_abs"], rows


def test_unavailable_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SettingsError, match="sees no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(SettingsError, match="expected cpu, cuda"):
        resolve_device("tpu:0")


def _image(seed: int = 0) -> DecodedImage:
    return DecodedImage(torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(seed)), None, 8, "RGB", "noise")


@CUDA
def test_cuda_downscaler_records_device_and_repeats_bytes():
    ds = Downscaler(DownscaleSettings(model="tiny-irn-x2", device="cuda"))
    a, b = ds.optimise(_image()), ds.optimise(_image())
    assert a.device["kind"] == "cuda" and a.device["cudnn_deterministic"] and not a.device["tf32_matmul"]
    assert torch.equal(a.lr, b.lr)  # deterministic numerics: run-to-run identical


@CUDA
def test_device_mode_restores_flags():
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    with device_mode(torch.device("cuda"), "fast"):
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before


@CUDA
def test_cuda_batch_equals_alone_and_cpu_close():
    imgs = [_image(i) for i in range(3)]
    batched = Downscaler(DownscaleSettings(model="tiny-irn-x2", device="cuda", hcd_batch=3)).optimise_batch(imgs)
    alone = Downscaler(DownscaleSettings(model="tiny-irn-x2", device="cuda", hcd_batch=1))
    cpu = Downscaler(DownscaleSettings(model="tiny-irn-x2", device="cpu"))
    for img, out in zip(imgs, batched, strict=True):
        assert out.batch == 3
        assert int((out.lr.int() - alone.optimise(img).lr.int()).abs().max()) <= 1
        assert int((out.lr.int() - cpu.optimise(img).lr.int()).abs().max()) <= 2  # another device's arithmetic


def _job(tmp_path, **kw):
    from hcd_pipeline.pipeline.settings import PipelineSettings

    return PipelineSettings(input=str(tmp_path / "in"), output=str(tmp_path / "out"), **kw)


def test_outputs_of_another_device_kind_are_refused_unless_allowed(tmp_path):
    """A GPU run into a CPU-made output (or back) is refused: their bytes differ. The fingerprint comes from the
    settings (num_gpus), never from the machine that submits."""
    from hcd_pipeline.io.storage import Storage
    from hcd_pipeline.pipeline.runner import _check_job, _write_job

    out = Storage(str(tmp_path / "out"))
    _check_job(out, _job(tmp_path))  # a new output passes
    _write_job(out, _job(tmp_path))  # a CPU run writes job.json
    with pytest.raises(SettingsError, match="made on cpu, this run would add cuda"):
        _check_job(out, _job(tmp_path, num_gpus=1.0))
    _check_job(out, _job(tmp_path, num_gpus=1.0, allow_mixed_devices=True))
    with pytest.raises(SettingsError, match="differing: seed"):
        _check_job(out, _job(tmp_path, num_gpus=1.0, allow_mixed_devices=True, seed=3))  # other settings still refused


def test_naming_the_default_model_is_the_same_setting(tmp_path):
    """--model irn-x2, --scale 2 and neither are one setting; another model is refused. A job.json that recorded the
    default unresolved (None) or by its bare name, as earlier releases did, means the weights of that release (the
    float32 irn-x2.v1): this release's float16 files are not added to it."""
    from hcd_pipeline.io.storage import Storage
    from hcd_pipeline.pipeline.runner import _check_job, _write_job

    out = Storage(str(tmp_path / "out"))
    _write_job(out, _job(tmp_path))
    for kw in ({"model": "irn-x2"}, {"scale": 2}, {"model": "irn-x2", "scale": 2}):
        _check_job(out, _job(tmp_path, **kw))
    with pytest.raises(SettingsError, match="differing: model, scale"):
        _check_job(out, _job(tmp_path, scale=4))
    record = json.loads((tmp_path / "out" / "job.json").read_text())
    for then in ({"model": None, "scale": None}, {"model": "irn-x2", "scale": 2}):  # as releases before tags wrote it
        record["settings"].update(then)
        (tmp_path / "out" / "job.json").write_text(json.dumps(record))
        with pytest.raises(SettingsError, match="differing: model"):
            _check_job(out, _job(tmp_path, model="irn-x2"))
    record["settings"].update(model="irn-x2.v1-fp16", scale=2)  # as this release writes it
    (tmp_path / "out" / "job.json").write_text(json.dumps(record))
    _check_job(out, _job(tmp_path, model="irn-x2"))
    _check_job(out, _job(tmp_path))
    with pytest.raises(SettingsError, match="differing: model"):
        _check_job(out, _job(tmp_path, model="edsr-x2"))


def test_job_json_of_an_earlier_release_is_not_added_to(tmp_path):
    """job.json files of output layout 1 (names without the source's extension) are refused, whatever their settings:
    this release's names would sit beside the old ones and a key could have two LRs."""
    from hcd_pipeline.io.storage import Storage
    from hcd_pipeline.pipeline.runner import _check_job
    from hcd_pipeline.pipeline.settings import fingerprint_hash

    old = {**{k: v for k, v in _job(tmp_path).result_fingerprint().items() if k != "hcd"}, "preset": "default", "overrides": {}}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job.json").write_text(json.dumps({"fingerprint": fingerprint_hash(old), "settings": old}))
    out = Storage(str(tmp_path / "out"))
    with pytest.raises(SettingsError, match="layout 1"):
        _check_job(out, _job(tmp_path, preset="adam"))
