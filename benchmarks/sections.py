"""Sections of ``docs/results.md`` made from the JSON that the scripts in ``benchmarks/`` write.

``python -m benchmarks.bench`` (and its ``--render-only``) appends these after its own tables, so that every number in
``results.md`` comes from a command printed next to it. A missing JSON file leaves its section out.
``caveats.md`` in the same folder (hand-written remarks on how the runs were made) closes the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hcd_pipeline.core.errors import HcdError

__all__ = ["benchmark_sections", "section", "projection"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _speed(data: dict[str, Any]) -> list[str]:
    st = data["settings"]
    cmd = f"python -m benchmarks.hcd_step_speed --model {st['model']} --size {st['size']} --steps {st['steps']} --threads {st['threads']}"
    rows = [
        [
            r["stage"].upper(),
            r["variant"],
            f"{r['ms_per_step']:.0f}",
            f"{r['step_memory_mib']:.0f}",
            f"{r['speedup_vs_official']:.2f}x",
            f"{r['grad_rel_err']:.1e}",
        ]  # fmt: skip
        for r in data["rows"]
    ]
    return [
        f"### One HCD step, {st['model']}, {st['size']}x{st['size']} HR, {st['threads']} threads",
        "",
        f"`{cmd} --out docs/eval/step_speed.json`: median of {st['steps']} steps after a warm-up round, all variants in one",
        "process on the same weights and image. Step memory: peak resident memory of two steps above the resident",
        "memory before them (model and image loaded), each variant in its own process. Gradient error: largest",
        "difference from the official structure's gradient over its largest value.",
        "",
        *_table(["stage", "variant", "ms / step", "step memory (MiB)", "speed vs official", "gradient error"], rows),
        "",
        *_per_image(data.get("per_image_s", {})),
    ]


def _per_image(per_image: dict[str, float]) -> list[str]:
    if not per_image:
        return []
    first = next(iter(per_image.values()))
    rows = [[name, f"{sec:.1f}", f"{first / sec:.2f}x"] for name, sec in per_image.items()]
    return [
        "Per image, from these step times and the presets' step counts (official 15 HR + 15 LR, `adam` 5 HR + 20 LR):",
        "",
        *_table(["preset and structure", "seconds / image", "speed vs official"], rows),
        "",
    ]


def _large(rows: list[dict[str, Any]]) -> list[str]:
    body = [
        [
            f"x{r['scale']}",
            r["layout"],
            f"`hcd {r['command']}`",
            f"{r['seconds']:.0f}",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['plain_psnr_y']:.3f}",
            f"{r['psnr_y']:.3f}",
            f"{r['psnr_y'] - r['plain_psnr_y']:+.3f}",
        ]  # fmt: skip
        for r in rows
    ]
    return [
        "### A DIV2K-sized image (2040 x 1356)",
        "",
        f"`python -m benchmarks.large_image --layouts {','.join(dict.fromkeys(r['layout'] for r in rows))} --out"
        " docs/eval/large_image.json`: a mosaic of B100 photos through `hcd downscale`",
        "(default preset), each run its own process; peak RSS is that process's maximum resident set (from `wait4`).",
        "",
        *_table(["scale", "layout", "command", "seconds", "peak RSS (MiB)", "plain Y-PSNR", "HCD Y-PSNR", "gain"], body),
        "",
    ]


def _throughput(data: dict[str, Any]) -> list[str]:
    st = data["settings"]
    crop = f" --crop {st['crop']}" if st.get("crop") else ""
    cmd = f"python -m benchmarks.pipeline_throughput --data {st['data']} --limit {st['limit']}{crop} --model {st['model']}"
    rows = [[r["method"], r["runner"], str(r["images"]), f"{r['images_per_s']:.3f}", f"{r['seconds']:.1f}"] for r in data["rows"]]
    return [
        "### Pipeline throughput",
        "",
        f"`{cmd} --out docs/eval/throughput.json`: the same images through a Python loop over `Downscaler` and through",
        "`hcd run` (local Ray) with 1 and 2 actors; pipeline times are end to end (actor start and model load included).",
        "",
        *_table(["method", "runner", "images", "images / s", "seconds"], rows),
        "",
    ]


def _archive(data: dict[str, Any]) -> list[str]:
    rows = []
    for r in data["results"]:
        h, b = r["hcd_run"], r.get("baseline")
        rows.append(
            [f"{r['images']:,}", f"{h['seconds']:.1f}", f"{h['images_per_second']:.0f}", f"{h['peak_rss_mib']:.0f}",
             f"{b['images_per_second']:.0f}" if b else "", f"{b['peak_rss_mib']:.0f}" if b else "", f"{r['ratio']:.2f}" if b else ""]
        )  # fmt: skip
    rss = [r["hcd_run"]["peak_rss_mib"] for r in data["results"]]
    return [
        "### Archive scale: many tiny images",
        "",
        f"`{data['command']}`: folders of 16 x 16 PNGs, `hcd run --model bicubic --scale 2 --method plain` in a child",
        "process (wall time with Ray's start, peak RSS of the `hcd run` process), and at one size a hand-written Ray Data",
        "pipeline doing the same per-image work with the same library calls (`read_binary_files` -> one `map_batches` ->",
        "`write_parquet`), one after the other.",
        "",
        *_table(
            ["images", "hcd run s", "hcd run img/s", "driver peak RSS MiB", "hand-written img/s", "hand-written RSS MiB", "ratio"], rows
        ),  # fmt: skip
        "",
        f"Driver peak RSS spread over the sizes: {max(rss) - min(rss):.0f} MiB.",
        "",
    ]


def _plan_costs(data: dict[str, Any]) -> list[str]:
    rp, pq_, fin, ll = data["resume_plan"], data["parquet"], data["finalize"], data["local_listing"]
    lines = [
        "### Planning and finishing costs per item",
        "",
        f"`{data['command']}` (synthetic output of {data['keys']:,} finished images, no image processed):",
        "",
        *_table(
            ["what", "measured"],
            [
                ["local listing", f"{ll['keys_per_second']:,} keys/s"],
                [
                    "resume plan (done set + manifest, all skipped)",
                    f"{rp['us_per_key']:.1f} us/key, done set {rp['done_array_bytes_per_key']:.0f} B/key",
                ],
                ["plan process RSS growth", f"{rp['rss_growth_mib']:.0f} MiB for {data['keys']:,} keys"],
                ["Parquet part / metrics.parquet", f"{pq_['part_bytes_per_row']:.0f} / {pq_['final_bytes_per_row']:.0f} bytes per row"],
                ["finalize (rebuild metrics.parquet)", f"{fin['us_per_row']:.1f} us/row"],
            ],
        ),
        "",
    ]
    if "s3_listing" in data:
        s3 = data["s3_listing"]
        ms = s3["seconds_per_request"] * 1000
        lines[-1:-1] = [f"| S3 listing ({s3['server']}) | {s3['keys_per_second']:,} keys/s, {ms:.0f} ms per LIST request |"]
    return lines


def projection(plan: dict[str, Any], archive: dict[str, Any], images: int = 10_000_000, list_ms: float | None = None) -> list[str]:
    """A projection for ``images`` images on S3 from the measured per-item costs (plan_costs.json, archive_scale.json).

    ``list_ms``: seconds per LIST request to assume (default: the one measured against the local S3 server).
    """
    rp, pq_, fin = plan["resume_plan"], plan["parquet"], plan["finalize"]
    ms = list_ms if list_ms is not None else plan.get("s3_listing", {}).get("seconds_per_request", 0.05) * 1000
    in_req, out_req = -(-images // 1000), -(-2 * images // 1000)  # S3 lists 1000 keys a page; lr/ holds PNG + sidecar
    rss = [r["hcd_run"]["peak_rss_mib"] for r in archive["results"]]
    largest = max(archive["results"], key=lambda r: r["images"])
    gib = 1024**3
    fin_gib = pq_["final_bytes_per_row"] * images / gib
    rows = [
        ["input listing", f"{in_req:,} LIST requests, {in_req * ms / 1000 / 60:.1f} min at {ms:.0f} ms each (one plan task)"],
        ["output listing on resume (lr/: PNG + sidecar)", f"{out_req:,} LIST requests, {out_req * ms / 1000 / 60:.1f} min"],
        ["resume plan compute", f"{rp['us_per_key'] * images / 1e6 / 60:.1f} min ({rp['us_per_key']:.1f} us/key)"],
        ["plan task memory (done set)", f"{rp['done_array_bytes_per_key'] * images / gib:.2f} GiB of Arrow strings"],
        ["metric parts / metrics.parquet", f"{pq_['part_bytes_per_row'] * images / gib:.2f} / {fin_gib:.2f} GiB"],
        ["finalize per run", f"{fin['us_per_row'] * images / 1e6 / 60:.1f} min ({fin['us_per_row']:.1f} us/row), 1M-row buckets"],
        ["driver memory", f"flat: {min(rss):.0f}-{max(rss):.0f} MiB measured from {min(r['images'] for r in archive['results']):,} "
                          f"to {largest['images']:,} images"],
        ["manifest references on the driver", f"{-(-images // 4096):,} object refs (4096 items each)"],
    ]  # fmt: skip
    return [
        f"### Projection: {images:,} images on S3",
        "",
        "From the per-item costs above (`python -m benchmarks.bench --render-only` computes it; `benchmarks.sections.projection`",
        "takes another LIST latency). Linear in the image count; the LIST latency of a real bucket is what to measure first.",
        "",
        *_table(["what", "projected"], rows),
        "",
    ]


def _stage_costs(data: dict[str, Any]) -> list[str]:
    rows = [[r["method"], f"{r['decode_ms']:.1f}", f"{r['model_ms']:.1f}", f"{r['write_ms']:.1f}", f"{r['model_over_cpu_stages']:.1f}"]
            for r in data["rows"]]  # fmt: skip
    return [
        "### Stage costs per image",
        "",
        f"`{data['command']}`: the pipeline's stage callables called directly, one image per call, one thread,",
        f"{data['crop']} x {data['crop']} crops:",
        "",
        *_table(["method", "decode ms", "model ms", "write ms", "model / (decode + write)"], rows),
        "",
    ]


def _no_harm(data: dict[str, Any]) -> list[str]:
    def fmt(v: Any) -> str:  # noqa: ANN401 - JSON numbers, "inf" strings or None
        return "" if v is None else f"{float(v):+.3f}"

    rows = []
    for r in data["runs"]:
        for label, sm in ((r["data"], r["summary"]), ("synthetic", r["synthetic_summary"])):
            rows.append([f"{r['model']} x{r['scale']}", label, str(sm["images"]), str(sm["improved"]), str(sm["kept_plain"]),
                         str(sm["below_plain"]), fmt(sm["worst_gain_db"]), fmt(sm["mean_gain_db"])])  # fmt: skip
    return [
        "### No harm: per-image gain of HCD (default preset)",
        "",
        f"`{data['command']}`: every image of the set (protocol of the tables above) and 64 x 64 synthetic images (flat",
        "white, flat grey, gradient, text-like bars, noise); gain in Y-PSNR dB over plain downscaling with the same model.",
        "",
        *_table(["model", "images", "n", "improved", "kept plain", "below plain", "worst gain", "mean gain"], rows),
        "",
    ]


def preset_cost_section(docs: list[dict[str, Any]]) -> list[str]:
    """Markdown for ``benchmarks/preset_cost.py`` outputs: one table per run, then the chart."""
    lines = [
        "### Cost: presets side by side",
        "",
        "Every image went through every variant before the next image (1 torch thread). Gain: Y-PSNR over plain",
        "downscaling with the same model. Time ratio: official seconds / variant seconds over the images both ran, and",
        "for the median image (robust to a load spike on one image). The `-quiet-` runs had the machine to themselves",
        "(x2 and x4 side by side on the 2 cores); the long runs shared it with other jobs, most on Set5's first image.",
        "",
    ]
    for doc in docs:
        rows = []
        for r in doc["summary"]:
            ratio = r.get("official_time_ratio")
            rows.append([f"x{doc['scale']}", r["set"], r["variant"], f"{r['mean_gain_db']:+.3f}", f"{r['share_improved']:.0%}",
                         f"{r['worst_gain_db']:+.3f}", f"{r['s_per_image']:.2f}", "" if ratio is None else f"{ratio:.2f}x",
                         "" if ratio is None else f"{r['official_time_ratio_median_image']:.2f}x"])  # fmt: skip
        lines += [f"`{doc['command']}`", "", *_table(["scale", "set", "variant", "mean gain", "improved", "worst gain", "s/image",
                                                      "official time / time", "median image"], rows), ""]  # fmt: skip
    return [*lines, "![gain against time](gain_vs_time.svg)", ""]


def _batch_speed(data: dict[str, Any]) -> list[str]:
    rows = [[str(r["hr_side"]), str(r["batch"]), f"{r['images_per_s']:.3f}", f"{r['vs_one_at_a_time']:.2f}x",
             f"{r['lr_values_differing_from_alone']} (max {r['max_level_difference']} level)"] for r in data["rows"]]  # fmt: skip
    return [
        "### Batched HCD on the CPU",
        "",
        f"`{data['command']}` ({data['images_per_size']} B100 centre crops per size, {data['threads']} threads, "
        f"{data['model']}, {data['preset']} preset; best of the rounds):",
        "",
        *_table(["HR side", "batch", "images/s", "vs one at a time", "LR values differing from alone"], rows),
        "",
        "Batches of 4 are as fast or a little faster on this CPU and batches of 8 of 192-pixel images slower, so CPU actors",
        "optimise one image at a time (`Downscaler.batch_items`); batches are for GPUs (`benchmarks/gpu_check.py`).",
        "",
    ]


_SECTIONS = {
    "step_speed": _speed,
    "large_image": _large,
    "throughput": _throughput,
    "archive_scale": _archive,
    "plan_costs": _plan_costs,
    "stage_costs": _stage_costs,
    "no_harm": _no_harm,
    "batch_speed": _batch_speed,
}


def section(kind: str, data: Any) -> list[str]:
    """Markdown lines for one benchmark's JSON (``kind``: step_speed, large_image, throughput); the scripts print it."""
    return _SECTIONS[kind](data)


def benchmark_sections(eval_dir: Path) -> list[str]:
    """Markdown lines for the speed, large-image and throughput results found in ``eval_dir``."""
    parts: list[str] = []
    for kind in _SECTIONS:
        path = eval_dir / f"{kind}.json"
        if path.exists():
            try:
                parts += section(kind, json.loads(path.read_text()))
            except (KeyError, TypeError, ValueError) as exc:
                raise HcdError(f"{path}: not the JSON its benchmark script writes ({exc!r}); rerun the script") from exc
    costs = [json.loads(p.read_text()) for p in sorted(eval_dir.glob("preset_cost-*.json"))]
    if costs:
        parts += preset_cost_section(costs)
    plan, archive = eval_dir / "plan_costs.json", eval_dir / "archive_scale.json"
    if plan.exists() and archive.exists():
        parts += projection(json.loads(plan.read_text()), json.loads(archive.read_text()))
    lines = ["## Speed, large images and throughput", "", *parts] if parts else []
    caveats = eval_dir / "caveats.md"  # hand-written remarks about how the runs were made
    if caveats.exists():
        lines += ["## Caveats", "", *caveats.read_text().rstrip().splitlines(), ""]
    return lines
