"""The package's structure: no import cycle among ``testbed/`` modules, no library
module importing the command line, the shared records free of the emulator."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "testbed"
CLI_MODULES = {"testbed.cli", "testbed.__main__"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(path: Path) -> set[str]:
    """Modules of ``testbed`` that ``path`` imports, at any depth (functions included),
    except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("testbed"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("testbed"):
                out.add(mod)
                for a in node.names:  # `from . import layout` names a module
                    if (PACKAGE.parent / (mod + "." + a.name).replace(".", "/")).with_suffix(
                            ".py").is_file():
                        out.add(f"{mod}.{a.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in imports(p) if i in mods} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                found.append([*stack[stack.index(n):], n])
            elif n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            dfs(m)
    return found


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_testbed_modules() -> None:
    g = graph()
    assert g.get("testbed.cli")  # the graph is real
    assert cycles(g) == []


def test_library_modules_never_import_the_cli() -> None:
    g = graph()
    offenders = sorted(m for m, deps in g.items() if m not in CLI_MODULES
                       and deps & {"testbed.cli"})
    assert offenders == []


def test_findings_and_oracle_records_need_no_emulator() -> None:
    g = graph()

    def reach(m: str) -> set[str]:
        seen: set[str] = set()
        todo = [m]
        while todo:
            for n in g[todo.pop()]:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    for m in ("testbed.findings", "testbed.runs", "testbed.faildb", "testbed.schedule",
              "testbed.access", "testbed.armmem", "testbed.deps"):
        assert "testbed.machine" not in reach(m), m
        assert "unicorn" not in (PACKAGE.parent / m.replace(".", "/")).with_suffix(
            ".py").read_text()
