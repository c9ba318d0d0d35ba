"""Installing like a library: the core (downscale, upscale, eval, models on local files) runs without the optional
packages, the commands that need them say which extra to install, and the pinned versions agree everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version

import pytest

from tests.conftest import ROOT, SAMPLES

OPTIONAL = ("ray", "pyarrow", "fsspec", "s3fs", "jpeglib", "yaml", "botocore", "aiobotocore")

# Runs the CLI in a process where the optional packages cannot be imported (as in a core-only install).
_CORE_ONLY = f"""
import sys
for name in {OPTIONAL!r}:
    sys.modules[name] = None  # import raises ImportError, find_spec raises ValueError: as good as absent
from hcd_pipeline.cli import main
sys.argv = ["hcd", *sys.argv[1:]]
main()
"""


def _core_only(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CORE_ONLY, *args], capture_output=True, text=True, timeout=300)


def test_core_commands_run_without_the_optional_packages(tmp_path):
    src = str(SAMPLES / "coffee_crop.png")
    proc = _core_only("downscale", src, "-o", str(tmp_path / "lr"), "--set", "lr_steps=2")
    assert proc.returncode == 0, proc.stderr
    proc = _core_only("upscale", str(tmp_path / "lr"), "-o", str(tmp_path / "up"))
    assert proc.returncode == 0 and (tmp_path / "up" / "coffee_crop.png").is_file(), proc.stderr
    assert _core_only("models").returncode == 0


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["run", "-i", "in", "-o", "out"], "pipeline"),
        (["report", "out"], "report"),
        (["downscale", str(SAMPLES / "coffee_crop.png"), "-o", "x", "--lr-format", "jpeg"], "jpeg"),
    ],
)
def test_commands_that_need_an_extra_name_it_in_one_line(tmp_path, args, extra):
    proc = subprocess.run([sys.executable, "-c", _CORE_ONLY, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1 and f"hcd_pipeline[{extra}]" in proc.stderr, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [proc.stderr.splitlines()[-1]]
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_core_dependencies_and_the_tested_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert not any(name in core for name in ("ray", "s3fs", "jpeglib", "pyarrow", "fsspec", "yaml"))
    assert not any("==" in d for d in project["dependencies"])  # ranges in the library, exact versions in constraints.txt
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M))
    for name in ("torch", "pillow", "ray", "jpeglib", "numpy"):  # what this suite runs is the tested set
        assert version(name).split("+")[0] == pins[name], name  # "2.13.0+cpu" is the CPU build of 2.13.0
    ray_pin = re.search(r'"ray\[[^]]*\]==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert ray_pin and ray_pin.group(1) == pins["ray"]
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text() and "-c constraints.txt" in (ROOT / "docker" / "Dockerfile").read_text()


def test_readme_is_for_newcomers():
    """At most 200 lines; Quick start gives exactly two commands; no internal references (issue numbers, the
    development machine's shared folders); every relative link resolves."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line for line in quick.splitlines() if line.strip()] == ["make demo", "make test"]
    assert "../shared" not in text and not re.search(r"(?<![\w/])#\d+", text)
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        assert "://" in target or (ROOT / target).exists(), target
