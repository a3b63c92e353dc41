"""The package layers hold (pyproject.toml [tool.importlinter], checked with import-linter),
and no package imports another package's private names (what import-linter does not check)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("ga_jax", "kernels", "launch", "benchmarks")


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _package(module: str) -> str:
    """The package a module belongs to: ga_jax.<sub> for the library, else the top level."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ga_jax" and len(parts) > 2 else parts[0]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_imports(source: str, module: str, where: str) -> list[str]:
    """`from X import _name` and `X._name` (X a module imported by name) in the source of
    `module` where X lies in another package (dunder names are not private)."""
    tree = ast.parse(source, where)
    found, aliases = [], {}
    private = lambda name: name.startswith("_") and not name.startswith("__")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                imported = f"{node.module}.{alias.name}"
                if _package(node.module) == _package(module):
                    continue
                if private(alias.name) or any(private(p) for p in node.module.split(".")):
                    found.append(f"{where}:{node.lineno} from {imported}")
                aliases[alias.asname or alias.name] = imported
        elif isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and private(node.attr)
            and aliases[node.value.id].split(".")[0] in CHECKED
            and _package(aliases[node.value.id]) != _package(module)
        ):
            found.append(f"{where}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_package_imports_another_packages_private_names():
    found = [
        hit
        for top in CHECKED
        for path in sorted((ROOT / top).rglob("*.py"))
        for hit in private_imports(
            path.read_text(), _module_name(path), str(path.relative_to(ROOT))
        )
    ]
    assert not found, "private names imported across packages:\n" + "\n".join(found)


def test_the_private_name_check_sees_both_forms():
    source = (
        "from ga_jax.train.loop import _Window\nimport ga_jax.train.loop as loop\nloop._Window\n"
        "from ga_jax.evaluation.vae_jobs import _ordered\n"  # the same package: allowed
    )
    hits = private_imports(source, "ga_jax.evaluation.probe", "probe.py")
    assert len(hits) == 2 and "_Window" in hits[0] and "loop._Window" in hits[1], hits
