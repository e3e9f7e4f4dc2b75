"""The layering of ARCHITECTURE.md, read from the imports of every module of the package (and of the tests)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scalecrafter_video"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_data" in path.parts:
            continue
        yield path.relative_to(PACKAGE).with_suffix("").parts, path


def _imports(parts: tuple[str, ...], path: Path) -> set[str]:
    """Absolute dotted names a module imports (relative imports resolved against the package)."""
    names = set()
    package = ("scalecrafter_video",) + parts[:-1]  # the package a relative import starts from
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ((node.module,) if node.module else ()))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


MODULES = list(_modules())


def test_the_package_was_found():
    assert len(MODULES) > 40


@pytest.mark.parametrize("parts,path", [m for m in MODULES if m[0][0] not in ("cli", "__main__")],
                         ids=lambda v: "/".join(v) if isinstance(v, tuple) else "")
def test_nothing_below_the_cli_imports_argparse_or_the_cli(parts, path):
    imported = _imports(parts, path)
    assert "argparse" not in imported, f"{path.name} imports argparse: library code takes plain arguments"
    assert not any(n == "scalecrafter_video.cli" or n.startswith("scalecrafter_video.cli.") for n in imported)


@pytest.mark.parametrize("parts,path", [m for m in MODULES if m[0][0] in ("pipelines", "models")],
                         ids=lambda v: "/".join(v) if isinstance(v, tuple) else "")
def test_pipelines_and_models_do_not_import_the_engine_or_the_recipes(parts, path):
    imported = _imports(parts, path)
    bad = sorted(n for n in imported if n.startswith(("scalecrafter_video.engine", "scalecrafter_video.recipes")))
    assert not bad, f"{'/'.join(parts)} imports {bad}: only recipes/ combines pipelines and the engine"


@pytest.mark.parametrize("parts,path", [m for m in MODULES if m[0][0] == "ops"],
                         ids=lambda v: "/".join(v) if isinstance(v, tuple) else "")
def test_ops_is_pure_tensor_maths(parts, path):
    ours = {n for n in _imports(parts, path) if n.startswith("scalecrafter_video")}
    assert ours <= {"scalecrafter_video.errors", "scalecrafter_video.errors.ConfigError",
                    "scalecrafter_video.errors.ScaleCrafterError"} | {n for n in ours if n.startswith("scalecrafter_video.ops")}


# ------------------------------------------------------------------ the tests follow the package
TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_tests_share_code_through_conftest_fixtures_and_import_only_public_names(path):
    """Shared test code lives in conftest.py as fixtures, not in helper modules imported by name."""
    siblings = {p.stem for p in TESTS.glob("*.py")}
    private = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
            private.update(a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__"))
        else:
            continue
        helpers = sorted(m for m in modules if m.split(".")[0] in siblings)
        assert not helpers, f"{path.name} imports {helpers}: ask for a conftest.py fixture instead"
    assert not private, f"{path.name} imports private names {sorted(private)}"
