"""Autoscaling GPU workers on a simulated cluster: does the model actor pool grow, do GPU nodes come and go?

    python -m benchmarks.autoscaling --images 64 --max-actors 4 --out docs/eval/autoscaling.json

Starts a Ray head with Ray's fake multi-node provider (``tests/services.py``: worker "nodes" are local raylets
declaring the resources of cluster.yaml's ``gpu_worker`` type, ``GPU: 1`` included, idle timeout scaled down to
seconds), runs ``hcd run --job <spec> --address <head>`` with ``actors: {min: 1, max: N}``, ``num_gpus: 1`` and
``simulated_gpus: true`` (the actors ask Ray for a GPU, so the autoscaler must launch GPU nodes, and run on the
CPU, since these nodes have none), and samples every second: alive nodes by type, alive model actors, images
done (sidecars written). It then waits for the idle GPU nodes to be released. The JSON holds the timeline and
the checks: rows = images, one ``ok`` attempt per image (no image written twice), the largest pool, GPU nodes
launched and released.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "token")  # the head uses token authentication; clients must know before import
ROOT = Path(__file__).resolve().parents[1]

MODEL_ACTOR = "MapBatches(ModelStage)"
"""Part of the class name Ray Data gives the model stage's actors (``MapWorker(MapBatches(ModelStage))``)."""


def worker_type(name: str, max_workers: int) -> dict[str, Any]:
    """cluster.yaml's worker node type ``name`` (its CPUs and GPUs per node), with ``max_workers`` for this machine."""
    import yaml

    node = yaml.safe_load((ROOT / "cluster.yaml").read_text())["available_node_types"][name]
    # A small object store per fake node: they share this machine's memory.
    return {"resources": {**node["resources"], "object_store_memory": 256 * 1024**2}, "min_workers": 0, "max_workers": max_workers}


def gpu_worker_type(max_workers: int) -> dict[str, Any]:
    return worker_type("gpu_worker", max_workers)


def _images(root: Path, n: int, side: int) -> None:
    import numpy as np
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = np.asarray(Image.open(ROOT / "samples" / "astronaut_crop.png").convert("RGB"))
    for i in range(n):
        y, x = rng.integers(0, base.shape[0] - side), rng.integers(0, base.shape[1] - side)
        Image.fromarray(base[y : y + side, x : x + side]).save(root / f"img{i:04d}.png")


def _sample(out: Path, t0: float) -> dict[str, Any]:
    """One point of the timeline: alive nodes by type, model actors alive and waiting for a node, images done."""
    import ray
    from ray._private.state import actors as actor_table  # the GCS's table: complete, no dashboard needed

    nodes: dict[str, int] = {}
    for n in ray.nodes():
        if n.get("Alive"):
            res = n.get("Resources", {})
            kind = "head" if "node:__internal_head__" in res else ("gpu_worker" if res.get("GPU", 0) > 0 else "cpu_worker")
            nodes[kind] = nodes.get(kind, 0) + 1
    states = [a["State"] for a in actor_table().values() if MODEL_ACTOR in str(a.get("ActorClassName"))]
    done = sum(1 for _ in (out / "lr").glob("*.json")) if (out / "lr").is_dir() else 0
    return {"t": round(time.perf_counter() - t0, 1), "nodes": nodes, "actors": states.count("ALIVE"),
            "pending": sum(s in ("PENDING_CREATION", "DEPENDENCIES_UNREADY") for s in states), "done": done}  # fmt: skip


def _actor_lifetimes(t0: float) -> list[tuple[float, float]]:
    """(start, end) seconds since ``t0`` of every model actor the run had, from the GCS's actor table (dead ones
    included): the pool's size at any moment, exactly, where one-second samples can miss a short overlap."""
    from ray._private.state import actors as actor_table

    now_ms, now = time.time() * 1000, time.perf_counter()
    spans = []
    for a in actor_table().values():
        if MODEL_ACTOR in str(a.get("ActorClassName")) and a.get("StartTime"):
            end = a.get("EndTime") or now_ms
            spans.append((round((a["StartTime"] - now_ms) / 1000 + now - t0, 1), round((end - now_ms) / 1000 + now - t0, 1)))
    return sorted(spans)


def max_concurrent(spans: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one moment."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def measure(workdir: Path, *, images: int, max_actors: int, side: int = 48, lr_steps: int = 20, max_nodes: int | None = None,
            hold: float = 0.0,
            release_wait: float = 120.0, run_timeout: float = 900.0) -> dict[str, Any]:  # fmt: skip
    """Run the pipeline on a fake autoscaling cluster and return the timeline and the checks (see the module doc)."""
    import pyarrow.parquet as pq
    import ray

    from tests.services import FakeAutoscalingCluster

    inp, out = workdir / "in", workdir / "out"
    _images(inp, images, side)
    worker = gpu_worker_type(max_nodes or max_actors)
    types = {"gpu_worker": worker}  # cluster.yaml's only worker type
    cluster = FakeAutoscalingCluster(head_cpus=2, worker_types=types, idle_timeout_minutes=0.1)
    spec = workdir / "autoscale.yaml"
    spec.write_text(
        f"name: autoscale\ninput: {inp}\noutput: {out}\nmodel: tiny-irn-x2\nmethod: hcd\noverrides: {{lr_steps: {lr_steps}}}\n"
        f"actors: {{min: 1, max: {max_actors}}}\nresources: {{num_gpus: 1, threads: 1}}\nbatch_size: 1\n"
        f"simulated_gpus: true\naddress: {cluster.address}\nprogress_interval: 5\n" + (f"simulated_image_seconds: {hold}\n" if hold else "")
    )
    cluster.start(workdir)
    timeline: list[dict[str, Any]] = []
    try:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        t0 = time.perf_counter()
        hcd = str(Path(sys.executable).parent / "hcd")
        proc = subprocess.Popen([hcd, "run", "--job", str(spec)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log: list[str] = []
        reader = threading.Thread(target=lambda: log.extend(proc.stdout or []), daemon=True)
        reader.start()
        while proc.poll() is None and time.perf_counter() - t0 < run_timeout:
            timeline.append(_sample(out, t0))
            time.sleep(1.0)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=10)
        t_run = time.perf_counter() - t0
        # After the work: the idle GPU nodes must go (idle_timeout_minutes, scaled down to 6 s here).
        while time.perf_counter() - t0 < t_run + release_wait:
            timeline.append(_sample(out, t0))
            if not timeline[-1]["nodes"].get("gpu_worker"):
                break
            time.sleep(1.0)
        lifetimes = _actor_lifetimes(t0)
        ray.shutdown()
    finally:
        cluster.stop()
    final = pq.read_table(out / "metrics.parquet").to_pylist() if (out / "metrics.parquet").exists() else []
    attempts = [r for p in sorted((out / "metrics" / "parts").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    ok_attempts = [r["key"] for r in attempts if r["status"] == "ok"]
    gpu_counts = [s["nodes"].get("gpu_worker", 0) for s in timeline]
    peak_at = gpu_counts.index(max(gpu_counts)) if gpu_counts else 0
    return {
        "command": "python -m benchmarks.autoscaling " + " ".join(sys.argv[1:]) if __name__ == "__main__" else "tests/test_autoscaling.py",
        "cluster": {
            "head": {"CPU": 2},
            **types,
            "idle_timeout_minutes": 0.1,
            "upscaling_speed": 1.0,
            "provider": "Ray's fake multi-node provider (local raylets)",
        },  # fmt: skip
        "job": {
            "actors": {"min": 1, "max": max_actors},
            "num_gpus": 1,
            "simulated_gpus": True,
            "model": "tiny-irn-x2",
            "lr_steps": lr_steps,
            "simulated_image_seconds": hold,
            "image_side": side,
            "batch_size": 1,
        },  # fmt: skip
        "rc": proc.returncode,
        "run_seconds": round(t_run, 1),
        "log_tail": "".join(log)[-1500:],
        "timeline": timeline,
        "images": images,
        "rows": len(final),
        "ok_rows": sum(1 for r in final if r["status"] == "ok"),
        "ok_attempts": len(ok_attempts),
        "distinct_ok_keys": len(set(ok_attempts)),
        "max_actors": max((s["actors"] for s in timeline), default=0),  # as sampled once a second
        "actor_lifetimes": lifetimes,  # (start, end) of each model actor, seconds
        "max_concurrent_actors": max_concurrent(lifetimes),  # the pool's largest size, from the lifetimes
        "max_gpu_nodes": max(gpu_counts, default=0),
        "gpu_nodes_at_end": gpu_counts[-1] if gpu_counts else 0,
        "released_after_s": next(
            (round(s["t"] - t_run, 1) for s in timeline[peak_at:] if s["t"] >= t_run and not s["nodes"].get("gpu_worker")), None
        ),  # fmt: skip
    }


def chart(res: dict[str, Any]) -> str:
    """The timeline as an SVG: GPU nodes and model actors (alive, waiting for a node) against time; images done."""
    from hcd_pipeline.report.svgplot import curve_panels

    tl = res["timeline"]
    series = {
        "GPU nodes alive": lambda s: s["nodes"].get("gpu_worker", 0),
        "model actors alive": lambda s: s["actors"],
        "model actors waiting for a node": lambda s: s.get("pending", 0),
    }
    pool = [(name, s["t"], float(v(s)), "") for s in tl for name, v in series.items()]
    done = [("images done", s["t"], float(s["done"]), "") for s in tl]
    title = (f"hcd run on a simulated autoscaling cluster: {res['images']} images, actors 1-{res['job']['actors']['max']}, "
             f"GPU nodes idle timeout {res['cluster']['idle_timeout_minutes'] * 60:.0f} s")  # fmt: skip
    return curve_panels([("nodes and actors", pool), ("progress", done)], xlabel="seconds", ylabel="count", title=title)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--max-actors", type=int, default=4)
    ap.add_argument("--side", type=int, default=48, help="image side in pixels")
    ap.add_argument("--lr-steps", type=int, default=20, help="HCD LR-domain steps (the work per image)")
    ap.add_argument("--hold", type=float, default=0.0, help="simulated_image_seconds: least seconds per image on an actor")
    ap.add_argument("--out", default="docs/eval/autoscaling.json")
    ap.add_argument("--chart", default="docs/autoscaling.svg", help="the timeline as an SVG chart")
    ap.add_argument("--render-only", action="store_true", help="redraw the chart from --out")
    args = ap.parse_args()
    if args.render_only:
        Path(args.chart).write_text(chart(json.loads(Path(args.out).read_text())))
        return
    with tempfile.TemporaryDirectory(prefix="hcd-autoscale-") as tmp:
        res = measure(Path(tmp), images=args.images, max_actors=args.max_actors, side=args.side, lr_steps=args.lr_steps, hold=args.hold)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    Path(args.chart).write_text(chart(res))
    print(json.dumps({k: v for k, v in res.items() if k not in ("timeline", "log_tail")}, indent=1))


if __name__ == "__main__":
    main()
