"""The package's layers are folders and imports only go down (docs/architecture.md): a lower layer never imports a
higher one, so each layer can be read, tested and reused without those above it."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

LAYERS = {
    "core": 0,
    "io": 1,
    "jpeg": 2,
    "models": 3,
    "hcd": 4,
    "downscaler": 5,
    "training": 6,
    "evaluation": 6,
    "pipeline": 6,
    "report": 7,
    "cli": 8,
}
"""Layer of each subpackage, bottom up (equal numbers: siblings that do not import each other)."""
PACKAGE = ROOT / "hcd_pipeline"


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hcd_pipeline."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hcd_pipeline."):
                    yield alias.name.split(".")[1]


def test_every_module_lives_in_a_layer_folder():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "_version.py"], top  # the public API and the version; everything else in a layer
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)


def test_imports_only_go_down():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        if len(rel) == 1:
            continue
        me = rel[0]
        for other in _imports(path):
            if other in LAYERS and other != me and LAYERS[other] >= LAYERS[me]:
                upward.append(f"{path.relative_to(ROOT)} imports hcd_pipeline.{other}")
    assert not upward, upward


def test_no_library_module_is_larger_than_a_reader_can_hold():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    cli = {k: v for k, v in sizes.items() if "/cli/" in k}
    assert max(cli.values()) <= 300, cli
    big = {k: v for k, v in sizes.items() if v > 400}
    assert not big, big


def test_benchmarks_are_a_package_that_uses_the_public_modules():
    # Run as `python -m benchmarks.NAME` from the checkout: no script edits sys.path, and none imports a private name
    # (a leading underscore) of the library, so a refactoring of the library's insides cannot break them unseen.
    bench = ROOT / "benchmarks"
    assert (bench / "__init__.py").exists()
    bad = []
    for path in bench.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys":
                bad.append(f"{path.name}: sys.path")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hcd_pipeline"):
                bad += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, bad


def test_the_library_has_no_path_into_a_checkout():
    # Data sets are found by name under $HCD_DATA_ROOT or the checkout's data folder (io.datasets), never by a
    # relative path written into a default: an installed package has no ../shared beside it.
    hits = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings may name the layout
        hits += [
            f"{path.relative_to(ROOT)}:{n.lineno}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and "../shared" in n.value and id(n) not in docs
        ]
    assert not hits, hits
