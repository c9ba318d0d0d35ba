"""cluster.yaml against Ray's own validator; job specs; submission to a real Ray head on 127.0.0.1."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.pipeline.jobs import load_job
from tests.conftest import ROOT
from tests.services import free_port


def test_cluster_yaml_passes_ray_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    text = (ROOT / "cluster.yaml").read_text().lower()
    assert "aws_secret_access_key" not in text and "aws_access_key_id" not in text
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_worker"]["min_workers"] = "zero"
    with pytest.raises(Exception, match="not of type"):
        validate_config(prepare_config(broken))


def test_shipped_job_specs_are_valid():
    specs = sorted((ROOT / "jobs").glob("*.y*ml")) + sorted((ROOT / "jobs").glob("*.toml"))
    assert len(specs) >= 3
    for path in specs:
        job = load_job(path)
        assert job.settings.output and job.settings.min_actors <= job.settings.max_actors
    auto = load_job(ROOT / "jobs" / "archive-x2.yaml").settings
    assert (auto.min_actors, auto.max_actors, auto.num_gpus) == (1, 8, 1.0)
    jpeg = load_job(ROOT / "jobs" / "archive-x2-jpeg.yaml").settings
    assert (jpeg.model, jpeg.lr_format, jpeg.lr_quality) == ("irn-x2-jpeg-joint", "jpeg", 90)
    assert jpeg.overrides == {"lr_steps": 32, "optimizer": "adam", "judge": "y+rgb"}


def test_job_specs_fit_a_node_type_of_cluster_yaml():
    """Every shipped spec's model actor (GPUs, threads) and one decode and one write task fit on one node type."""
    nodes = yaml.safe_load((ROOT / "cluster.yaml").read_text())["available_node_types"]
    for path in sorted((ROOT / "jobs").glob("archive-*.yaml")):
        cfg = load_job(path).settings
        need_cpu = cfg.threads + cfg.decode_cpus + cfg.write_cpus
        fits = [name for name, n in nodes.items()
                if n["resources"].get("GPU", 0) >= cfg.num_gpus and n["resources"].get("CPU", 0) >= need_cpu]  # fmt: skip
        assert fits, f"{path.name}: {cfg.num_gpus} GPU + {need_cpu} CPU fit no node type of cluster.yaml"
        if cfg.num_gpus:
            assert cfg.max_actors <= sum(n.get("max_workers", 0) * n["resources"].get("GPU", 0) for n in nodes.values())


def test_one_ray_release_everywhere():
    """pyproject's ray pin = the Dockerfile's base image = the installed Ray; nodes boot from the image."""
    import re

    import ray

    pin = re.search(r'"ray\[[^]]*\]==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    docker = re.search(r"^ARG RAY_VERSION=([0-9.]+)$", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    assert pin and docker and pin.group(1) == docker.group(1) == ray.__version__
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["docker"]["image"] and not config.get("setup_commands")


@pytest.mark.parametrize(
    "text,message",
    [
        ("input: a\noutput: b\nactorz: 3\n", "unknown keys"),
        ("output: b\n", "missing required key 'input'"),
        ("input: a\noutput: b\nseed: one\n", "seed must be int"),
        ("input: a\noutput: b\nactors: {min: 3, max: 1}\n", "min"),
        ("input: a\noutput: b\nmethod: magic\n", "method"),
        ("input: a\noutput: b\nmodel: irn-x3\n", "unknown model"),
        ("input: a\noutput: b\nstorage: {extra: {secret: abc}}\n", "credentials"),
        ("input: [a\n", "not valid YAML"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_malformed_specs_are_refused_with_the_file_name(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message) as info:
        load_job(path)
    assert "bad.yaml" in str(info.value)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head` on 127.0.0.1 with its own ports, stopped at the end."""
    port, dash = free_port(), free_port()
    ray_exe = str(Path(sys.executable).parent / "ray")
    # Job entrypoints run `python` from the head's PATH: this environment's, as on a provisioned node.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [ray_exe, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats",
             # Its own agent port: a local Ray of other tests (tests/test_archive.py) holds the default one.
             f"--dashboard-agent-listen-port={free_port()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:  # 401 without a token: the server is up
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("ray head did not start")
    yield address
    os.killpg(proc.pid, 15)
    proc.wait(timeout=60)


def test_submit_spec_to_real_ray_head(ray_head, small_images, tmp_path):
    from hcd_pipeline.pipeline import read_metrics
    from hcd_pipeline.pipeline.submit import job_logs, job_status, submit_job

    out = tmp_path / "out"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(f"name: tiny\ninput: {small_images}\noutput: {out}\nmodel: tiny-irn-x2\nmethod: plain\nactors: {{min: 1, max: 2}}\n")
    job_id = submit_job(spec, ray_head)
    deadline = time.time() + 400
    while (state := job_status(job_id, ray_head)) not in ("SUCCEEDED", "FAILED", "STOPPED") and time.time() < deadline:
        time.sleep(2)
    assert state == "SUCCEEDED", job_logs(job_id, ray_head)[-3000:]
    assert "4 done, 0 failed" in job_logs(job_id, ray_head)
    assert read_metrics(str(out)).num_rows == 4
    assert (out / "lr" / "sub" / "c.png.png").is_file()


def test_malformed_spec_is_not_submitted(ray_head, tmp_path):
    from ray.job_submission import JobSubmissionClient

    from hcd_pipeline.pipeline.submit import submit_job

    before = len(JobSubmissionClient(ray_head).list_jobs())
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: a\noutput: b\nactors: lots\n")
    with pytest.raises(SettingsError, match="bad.yaml"):
        submit_job(bad, ray_head)
    assert len(JobSubmissionClient(ray_head).list_jobs()) == before


def test_memory_and_tile_reach_the_downscaler_and_the_fingerprint(tmp_path):
    from hcd_pipeline.pipeline import PipelineSettings
    from hcd_pipeline.pipeline.jobs import load_job

    spec = tmp_path / "job.yaml"
    spec.write_text("input: in/\noutput: out/\nmemory: low\ntile: 96\n")
    settings = load_job(spec).settings
    ds = settings.downscale_settings()
    assert (ds.memory, ds.tile) == ("low", 96)
    assert settings.fingerprint_hash() != PipelineSettings(input="in/", output="out/").fingerprint_hash()
    # Defaults leave the fingerprint of earlier runs (which had no such fields) unchanged.
    assert "memory" not in PipelineSettings(input="in/", output="out/").result_fingerprint()
    spec.write_text("input: in/\noutput: out/\nmemory: tiny\n")
    with pytest.raises(SettingsError, match="job.yaml.*memory"):
        load_job(spec)
