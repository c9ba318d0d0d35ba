"""Autoscaling GPU workers on a simulated cluster (Ray's fake multi-node provider): the model actor pool grows with
the backlog, the autoscaler launches GPU nodes for it and releases them when idle, and every image is done once.

The full-size run is ``python -m benchmarks.autoscaling`` (docs/eval/autoscaling.json); this is the same at a size
that the suite affords on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_pool_and_gpu_nodes_grow_with_the_backlog_and_shrink_after(tmp_path):
    # Its own process: it connects to the fake cluster's head, and this process may hold the suite's local Ray.
    # Each image holds its actor 4 s (simulated_image_seconds: the GPU's work time, slept, so not slowed or sped up by
    # how busy the 2 cores are): 80 s of backlog for one actor, time enough for the pool and the nodes to grow. Without
    # it the work took a few seconds of CPU and a busy CI machine ended it before a second node came up. 32 images:
    # 128 s of backlog for one actor; here (quiet) the pool reached 4 by 70 s, with the suite beside it 3 of 4.
    args = ["--images", "32", "--max-actors", "4", "--side", "40", "--lr-steps", "4", "--hold", "4", "--out", str(tmp_path / "a.json"),
            "--chart", str(tmp_path / "a.svg")]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "benchmarks.autoscaling", *args], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "a.json").read_text())
    assert res["rc"] == 0, res["log_tail"]
    assert "<svg" in (tmp_path / "a.svg").read_text()
    tl = res["timeline"]
    assert tl[0]["nodes"].get("gpu_worker", 0) == 0  # no GPU node before the job asks for one (min_workers 0)
    assert res["max_gpu_nodes"] >= 3, tl  # the autoscaler launched GPU nodes for the pool
    assert res["max_concurrent_actors"] >= 3, (res["actor_lifetimes"], tl)  # the pool grew from 1 towards its max of 4
    assert res["gpu_nodes_at_end"] == 0, tl[-5:]  # and the idle nodes were released
    # Every image exactly once: one row each, one ok attempt each (no image written twice).
    assert res["rows"] == res["ok_rows"] == res["images"] == res["ok_attempts"] == res["distinct_ok_keys"]


@pytest.mark.slow
def test_gpu_actor_on_a_node_without_cuda_is_one_line_not_a_silent_cpu_run(tmp_path):
    from PIL import Image

    from tests.services import FakeAutoscalingCluster

    (tmp_path / "in").mkdir()
    Image.open(ROOT / "samples" / "astronaut_crop.png").crop((0, 0, 32, 32)).save(tmp_path / "in" / "a.png")
    cluster = FakeAutoscalingCluster(2, {"gpu_worker": {"resources": {"CPU": 4, "GPU": 1, "object_store_memory": 256 * 1024**2},
                                                        "min_workers": 0, "max_workers": 1}})  # fmt: skip
    cluster.start(tmp_path)
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "hcd"), "run", "--input", str(tmp_path / "in"), "--output",
                               str(tmp_path / "out"), "--model", "tiny-irn-x2", "--num-gpus", "1", "--address", cluster.address],
                              capture_output=True, text=True, timeout=400)  # fmt: skip
    finally:
        cluster.stop()
    assert proc.returncode == 1
    # One line on stderr after the run's header. (Ray's driver prints the cluster's error notices, "(raylet) ...", on
    # stdout whatever we ask.)
    header, *rest = proc.stderr.splitlines()
    assert header.startswith("[hcd] ") and "tiny-irn-x2" in header and "1 GPU each" in header, proc.stderr
    assert len(rest) == 1 and rest[0].startswith("error: a model actor could not start: ") and "sees no CUDA device" in rest[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").glob("lr/*"))  # nothing was made on the CPU behind the user's back
