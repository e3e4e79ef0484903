"""House rules on the import graph: each folder uses only the folders below it, the library
never imports the processes, the broker reads only framing, and alignment/ is pure math."""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = "latentmas_mesh"

# Which library folders (or top-level modules) each may import, besides itself. What is not
# listed is forbidden: a new edge is a design decision, made here on purpose.
BASE = {"errors", "log", "settings", "units"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "log": set(),
    "settings": set(),
    "units": set(),
    "anchors": {"errors"},
    "mdp": {"errors"},
    "market": {"errors", "units"},
    "registry": {"errors", "settings"},
    "protocol": {"errors", "units"},
    "wire": {"errors"},
    "shm": {"errors", "wire"},
    "codec": BASE | {"protocol", "wire"},
    "alignment": {"errors", "registry"},
    "artifacts": BASE | {"alignment", "protocol"},
    "ledger": BASE | {"market"},
    "catalog": BASE | {"artifacts", "market"},
    "transport": BASE | {"mdp", "wire", "codec", "protocol", "shm"},
    "settlement": BASE | {"codec", "ledger", "protocol", "transport"},
    "services": BASE
    | {"alignment", "artifacts", "codec", "ledger", "market", "protocol", "registry"}
    | {"settlement", "catalog"},
    "integrations": BASE | {"alignment", "anchors", "artifacts", "protocol", "registry"},
    "testing": BASE | {"transport", "codec", "protocol", "mdp", "agents", "shm"},
    "agents": {"errors", "settings", "artifacts", "transport"},
    # the SDK; `integrations` only lazily, to convert a transformers cache (the `hf` extra)
    "client": BASE | {"transport", "protocol", "settlement", "registry", "integrations"},
    "gateway": BASE | {"codec", "protocol", "client", "agents", "transport", "settlement"},
    "cli": set(),  # the top floor: anything in the library (never broker/ or workers/)
}
BROKER_MAY_IMPORT = {"mdp", "wire", "errors", "log", "settings"}
IO_MODULES = {
    "os", "io", "pathlib", "shutil", "tempfile", "socket", "fcntl", "sqlite3", "subprocess",
    "threading", "multiprocessing", "time", "datetime", "zmq", "safetensors", "psycopg",
}  # fmt: skip


def imports_of(path: pathlib.Path) -> Iterator[str]:
    """Every module a file imports, anywhere in it (lazy imports in functions included);
    `from package import name` yields package.name too, as name may be a module."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def floor_of(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT / LIBRARY).with_suffix("").parts
    return parts[0]


def library_files() -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / LIBRARY).rglob("*.py") if p.name != "__init__.py" or
                  p.parent != ROOT / LIBRARY)  # fmt: skip


def library_edges(path: pathlib.Path) -> set[str]:
    """The library floors a file imports (top-level module names count as floors)."""
    floors = set()
    for module in imports_of(path):
        parts = module.split(".")
        if (parts[0] == LIBRARY and len(parts) > 1 and (ROOT / LIBRARY / parts[1]).exists()) or (
            parts[0] == LIBRARY and len(parts) > 1 and (ROOT / LIBRARY / f"{parts[1]}.py").exists()
        ):
            floors.add(parts[1])
    return floors


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_floors_use_only_the_floors_below(path):
    floor = floor_of(path)
    assert floor in ALLOWED, f"{floor}: a new folder needs its row in ALLOWED"
    if floor == "cli":
        return
    wrong = library_edges(path) - ALLOWED[floor] - {floor}
    assert set() == wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_never_imports_the_processes(path):
    """broker/ and workers/ are started as `python -m broker|workers`, never imported."""
    roots = {module.split(".")[0] for module in imports_of(path)}
    assert set() == roots & {"broker", "workers"}


@pytest.mark.parametrize(
    "path", sorted((ROOT / "broker").glob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_broker_imports_only_framing_wire_and_errors(path):
    """The broker parses envelopes with mdp and never touches a body's schema (pydantic only
    reads its settings)."""
    wrong = library_edges(path) - BROKER_MAY_IMPORT
    roots = {module.split(".")[0] for module in imports_of(path)}
    forbidden = {"workers"} | (set() if path.name == "settings.py" else {"pydantic"})
    assert (set(), set()) == (wrong, roots & forbidden)


@pytest.mark.parametrize(
    "path",
    sorted(
        [*(ROOT / LIBRARY / "alignment").glob("*.py"), *(ROOT / LIBRARY / "market").glob("*.py")]
    ),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_math_floors_do_no_io(path):
    """Arrays and plain values in, out: no file, lock, clock, socket or database in alignment/
    or market/."""
    roots = {module.split(".")[0] for module in imports_of(path)}
    calls = {
        node.func.id
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert (set(), set()) == (roots & IO_MODULES, calls & {"open", "print", "input"})


def test_the_rules_can_fail():
    """The scanner sees lazy and from-imports, so a planted violation would be caught."""
    planted = ROOT / "tests" / "_planted_layout_probe.py"
    planted.write_text("def f():\n    from latentmas_mesh import ledger\n    import os\n")
    try:
        assert {"ledger"} == library_edges(planted)
        assert "os" in set(imports_of(planted))
    finally:
        planted.unlink()


def _project_imports(path: pathlib.Path) -> Iterator[tuple[str, str]]:
    """(module, name) of every `from <project module> import name`, at any depth of the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        project = isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        if project and node.module.split(".")[0] in {LIBRARY, "broker", "workers"}:
            yield from ((node.module, alias.name) for alias in node.names)


@pytest.mark.parametrize("path", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_exists(path):
    """Benchmarks import inside functions and run only under `make bench`: a module moved by a
    renovation must fail here, not months later (bench/broker.py once imported a moved `wire`)."""
    import importlib

    missing = []
    for module_name, name in _project_imports(path):
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            try:
                importlib.import_module(f"{module_name}.{name}")
            except ImportError:
                missing.append(f"{module_name}.{name}")

    assert [] == missing


@pytest.mark.parametrize("path", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_no_benchmark_shadows_an_installed_module(path):
    """`python bench/x.py` puts bench/ first on sys.path, so bench/kernels.py once answered
    transformers' `import kernels` and broke bench/exchange.py before it started."""
    import importlib.util
    import sys

    saved = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != ROOT / "bench"]
        assert importlib.util.find_spec(path.stem) is None, f"bench/{path.name} shadows a module"
    finally:
        sys.path[:] = saved
