"""results.md is re-rendered from the JSON that ``python -m benchmarks.bench`` and the benchmark scripts write."""

from __future__ import annotations

import json

from click.testing import CliRunner

from benchmarks.bench import main as bench
from hcd_pipeline.cli import main


def test_render_only_rebuilds_results_md_with_benchmark_sections(tmp_path):
    mean = {"psnr_y": 40.1234, "ssim_y": 0.98, "gain_y": 0.5}
    runs = [{"scale": 2, "set": "Set5", "method": "hcd", "mean": mean, "peak_rss_mib": 512.0, "wall_s": 1.0, "images": []}]
    mean["seconds"] = 3.0
    (tmp_path / "results.json").write_text(json.dumps({"command": "hcd bench --sets Set5", "draws": 1, "runs": runs}))
    ev = tmp_path / "eval"
    ev.mkdir()
    speed_row = {
        "stage": "lr",
        "variant": "ours",
        "ms_per_step": 123.4,
        "step_memory_mib": 700,
        "speedup_vs_official": 1.42,
        "grad_rel_err": 0.0,
    }
    settings = {"model": "irn-x2", "size": 256, "threads": 2, "steps": 5}
    (ev / "step_speed.json").write_text(json.dumps({"settings": settings, "rows": [speed_row]}))
    large = {"scale": 2, "layout": "whole", "command": "downscale a.png", "seconds": 600, "peak_rss_mib": 3000.4,
             "plain_psnr_y": 30.0, "psnr_y": 30.5}  # fmt: skip
    (ev / "large_image.json").write_text(json.dumps([large]))
    (ev / "caveats.md").write_text("- shared machine\n")
    assert bench(["--render-only", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "results.md").read_text()
    # Runs made before the preset was recorded ran the then-default `adam` preset.
    assert "| hcd (adam) | 40.123 | 0.9800 | +0.500 | 3.00 | 512 |" in md
    assert "| LR | ours | 123 | 700 | 1.42x | 0.0e+00 |" in md
    assert "| x2 | whole | `hcd downscale a.png` | 600 | 3000 | 30.000 | 30.500 | +0.500 |" in md
    assert md.rstrip().endswith("- shared machine")
    assert "### Pipeline throughput" not in md  # no JSON, no section


def test_render_only_names_a_bad_json(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"command": "c", "draws": 1, "runs": []}))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "throughput.json").write_text("[1, 2]")
    assert bench(["--render-only", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "throughput.json" in err
    # The command that used to make the docs says where it went, in one line.
    res = CliRunner().invoke(main, ["bench", "--render-only"])
    assert res.exit_code == 1 and "python -m benchmarks.bench" in res.output


def test_peak_rss_sees_an_allocation_after_a_reset():
    import torch

    from hcd_pipeline.core.memstats import peak_rss_mib, reset_peak_rss, rss_mib

    if not reset_peak_rss():
        import pytest

        pytest.skip("no /proc/self/clear_refs here")
    before = rss_mib()
    block = torch.ones(64 * 1024 * 1024, dtype=torch.uint8)  # 64 MiB, touched
    assert peak_rss_mib() - before > 48
    del block
