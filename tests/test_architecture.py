"""The code's shape is checked like its behaviour: the layer contract and the house lint/format."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the test extra, pip install -e '.[test]'")
    return found


def test_each_layer_imports_only_the_layers_below_it():
    """pyproject.toml's import-linter contract: cli > study > reporting > evaluation > training >
    models > data > config, function-level (lazy) imports included."""
    result = subprocess.run([_tool("lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    result = subprocess.run(
        [_tool("ruff"), *command, "src", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _modules() -> dict[str, ast.Module]:
    """Every module of the package, parsed, by dotted name."""
    modules = {}
    for path in (REPO / "src" / "distillbench").rglob("*.py"):
        parts = path.relative_to(REPO / "src").with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = (ast.parse(path.read_text()), path.name == "__init__.py")
    return modules


def _imports(name: str, tree: ast.Module, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere: at the top, in functions (lazy), under
    TYPE_CHECKING; ``from package import module`` counts as importing that module, not the package."""
    found = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found |= submodules or {base}
    return (found & known) - {name}


def test_no_import_cycle_of_any_kind():
    """No module imports itself back through others, counting lazy and type-only imports."""
    modules = _modules()
    graph = {name: _imports(name, tree, is_package, set(modules)) for name, (tree, is_package) in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(name) :] + [name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


MAX_FUNCTION_LINES, MAX_PARAMETERS = 60, 8


def test_training_and_study_functions_stay_small():
    """A function of training/ or study/ fits on a screen and takes at most eight parameters (pass
    the recipe or runtime object, not its fields)."""
    too_big = []
    for name, (tree, _) in _modules().items():
        if not name.startswith(("distillbench.training", "distillbench.study")):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                parameters = [a for a in arguments if a.arg not in ("self", "cls")]
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES or len(parameters) > MAX_PARAMETERS:
                    too_big.append(f"{name}.{node.name}: {lines} lines, {len(parameters)} parameters")
    assert not too_big, too_big
