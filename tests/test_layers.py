"""The package's layers (docs/architecture.md): a module may import its own layer and the ones
below, never one above. Every import counts, those inside functions too (heavy imports live
there), so a `models` helper reaching into `backends` fails here, not in a review."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rlctl"

# bottom to top; a package not listed here fails the test until it is placed
LAYERS = [
    {
        "__init__",
        "errors",
        "data",
        "config",
        "options",
        "net",
        "logs",
        "cache",
        "files",
        "signals",
        "clock",
    },
    {"records"},
    {"store"},
    {"models"},
    {"backends"},
    {"stages", "train", "slurm"},
    {"cli", "__main__"},
]


def _layer(name: str) -> int:
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"rlctl.{name} is in no layer: place it in tests/test_layers.py")


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        out += [(node.lineno, n) for n in names if n == "rlctl" or n.startswith("rlctl.")]
    return out


def upward_imports(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        own = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        for line, module in _imports(path):
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else "__init__"
            if _layer(target) > _layer(own):
                found.append(f"rlctl/{rel}:{line}: {own} imports {module} (a layer above)")
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The test above is only worth something if it can fail: a copy with one upward import."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "x.py").write_text(
        "def f():\n    from rlctl.backends.generation import quiet\n"
    )
    (tmp_path / "backends").mkdir()
    (tmp_path / "backends" / "y.py").write_text("from rlctl.models import x\n")
    assert upward_imports(tmp_path) == [
        "rlctl/models/x.py:2: models imports rlctl.backends.generation (a layer above)"
    ]


def test_the_python_example_records_a_run_as_the_cli_does(tmp_path: Path) -> None:
    """docs/architecture.md's example, run as written on a real store: the judged records, the
    run and its lineage are what `rlctl judge` would have recorded."""
    import re
    import subprocess
    import sys

    import orjson

    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", doc, re.S)
    (tmp_path / "rollouts.jsonl").write_bytes(
        b"".join(
            orjson.dumps({"id": f"q{i}", "prompt": "2+2?", "reference": "4", "completion": c})
            + b"\n"
            for i, c in enumerate(["#### 4", "#### 5"])
        )
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert [orjson.loads(x)["reward"] for x in r.stdout.splitlines()] == [1.0, 0.0]
    from rlctl.store import Index, Store

    index = Index(Store(tmp_path / ".rlctl"))
    (row,) = index.query("SELECT command, status FROM runs").rows
    assert row == ("judge", "ok")
    (via,) = index.query("SELECT via FROM lineage").rows
    assert via == ("file",)
