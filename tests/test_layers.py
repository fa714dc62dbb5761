"""The layer rule of docs/architecture.md ("Layers"): a module of ``src/rwku`` imports only from its own layer or
below, at module level or inside a function. The layer table is read from that page, so the page and the code
cannot drift apart: a module the table does not place, or an upward import, fails here with its file and line."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "rwku"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: A row of the page's layer table: ``| 3 | `evaluation/`, `corpus/`, `results.py` | what they hold |``.
ROW = re.compile(r"^\|\s*(\d+)\s*\|([^|]*)\|")


@dataclass(frozen=True)
class Edge:
    """One import: the importing module, the imported module, where, and whether inside a function."""

    source: str
    target: str
    path: Path
    line: int
    in_function: bool


def layer_table(text: str) -> dict[str, int]:
    """Module name -> layer, from the table under the page's "## Layers" heading (``x/`` is a package, ``x.py`` a
    module, `` `rwku` `` the package itself)."""
    section = text.split("\n## Layers\n", 1)
    if len(section) < 2:
        raise AssertionError(f"{ARCHITECTURE}: no '## Layers' section; the layer rule and its table live there")
    table: dict[str, int] = {}
    for line in section[1].split("\n## ", 1)[0].splitlines():
        match = ROW.match(line)
        if match:
            for name in re.findall(r"`([^`]+)`", match.group(2)):
                module = "rwku" if name == "rwku" else "rwku." + name.removesuffix("/").removesuffix(".py").replace("/", ".")
                table[module] = int(match.group(1))
    if not table:
        raise AssertionError(f"{ARCHITECTURE}: the '## Layers' section has no table rows like '| 0 | `io.py` | … |'")
    return table


def layer_of(module: str, table: dict[str, int]) -> int | None:
    """The layer of the longest table entry that is ``module`` or a package above it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in table and (end > 1 or module == "rwku"):
            return table[prefix]
    return None


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolved(node: ast.ImportFrom, module: str, is_package: bool, package: Path) -> list[str]:
    """The rwku modules a ``from … import …`` names: relative ones made absolute, ``from pkg import submodule``
    resolved to the submodule."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        origin = ".".join([*base, node.module] if node.module else base)
    else:
        origin = node.module or ""
    names = []
    for alias in node.names:
        submodule = f"{origin}.{alias.name}"
        folder = package.parent.joinpath(*submodule.split("."))
        names.append(submodule if folder.with_suffix(".py").is_file() or (folder / "__init__.py").is_file() else origin)
    return list(dict.fromkeys(names))


def imports(path: Path, package: Path) -> list[Edge]:
    """Every rwku import of one file, at module level or inside a function (``ast``, so an import the code only
    reaches at run time counts as much as one at the top)."""
    module = module_name(path, package)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    in_function = {id(inner) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                   for inner in ast.walk(node)}
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = resolved(node, module, path.name == "__init__.py", package)
        else:
            continue
        edges += [Edge(module, t, path, node.lineno, id(node) in in_function) for t in targets
                  if t == "rwku" or t.startswith("rwku.")]
    return edges


def upward(package: Path, table: dict[str, int]) -> tuple[list[str], list[str]]:
    """(modules the table does not place, upward imports), each as a readable line."""
    unplaced, found = [], []
    for path in sorted(package.rglob("*.py")):
        module = module_name(path, package)
        if layer_of(module, table) is None:
            unplaced.append(f"{path.relative_to(package.parent)}: {module} has no layer")
            continue
        for edge in imports(path, package):
            low, high = layer_of(edge.source, table), layer_of(edge.target, table)
            if high is None or high > low:
                where = "inside a function" if edge.in_function else "at module level"
                found.append(f"{edge.path.relative_to(package.parent)}:{edge.line}: {edge.source} (layer {low}) imports "
                             f"{edge.target} (layer {high}) {where}")
    return unplaced, found


@pytest.fixture(scope="module")
def table() -> dict[str, int]:
    return layer_table(ARCHITECTURE.read_text(encoding="utf-8"))


def test_every_module_has_a_layer_and_no_import_goes_up(table):
    unplaced, found = upward(PACKAGE, table)
    assert not unplaced, "place these in the layer table of docs/architecture.md:\n" + "\n".join(unplaced)
    assert not found, "upward imports (see docs/architecture.md, 'Layers'):\n" + "\n".join(found)


def test_the_table_names_only_modules_that_exist(table):
    missing = [m for m in table if m != "rwku" and not (PACKAGE.parent.joinpath(*m.split(".")).with_suffix(".py").is_file()
                                                        or PACKAGE.parent.joinpath(*m.split(".")).is_dir())]
    assert not missing, f"docs/architecture.md's layer table names modules that do not exist: {missing}"


def test_the_walk_finds_upward_imports_at_every_depth(tmp_path):
    """A package with a module-level, a function-level, a relative and a ``from pkg import module`` upward import:
    each is reported with its line; an import from the same layer or below is not."""
    package = tmp_path / "rwku"
    (package / "low").mkdir(parents=True)
    (package / "high").mkdir()
    for init in ("__init__.py", "low/__init__.py", "high/__init__.py", "high/top.py"):
        (package / init).write_text("")
    (package / "low" / "base.py").write_text("import rwku.high.top\n"
                                             "from rwku import high\n"
                                             "from rwku.low import base\n"
                                             "def f():\n"
                                             "    from ..high import top\n"
                                             "    from rwku.errors import RwkuError\n")
    (package / "errors.py").write_text("")
    table = layer_table("\n## Layers\n| 0 | `rwku`, `errors.py` | |\n| 1 | `low/` | |\n| 2 | `high/` | |\n")
    unplaced, found = upward(package, table)
    assert unplaced == []
    assert [line.split(": ", 1)[0] for line in found] == ["rwku/low/base.py:1", "rwku/low/base.py:2", "rwku/low/base.py:5"]
    assert "inside a function" in found[2] and "at module level" in found[0]
    (package / "stray.py").write_text("")
    assert upward(package, table)[0] == ["rwku/stray.py: rwku.stray has no layer"]
