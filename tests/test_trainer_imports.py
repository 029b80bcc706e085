"""The trainer package's modules import one way: no import cycle, counting imports inside functions and
under ``if __name__ == "__main__"``."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PKG = REPO / "trainer"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's own modules that ``path`` imports, wherever in the file the import stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            elif node.level == 0 and node.module and node.module.split(".")[0] == "trainer":
                parts = node.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("trainer.")]
        found |= {n for n in names if n in modules}
    return found - {path.stem}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_cycle_finder_sees_a_function_level_cycle(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    (tmp_path / "c.py").write_text("from . import a\n")
    mods = {"a", "b", "c"}
    graph = {m: _imports(tmp_path / f"{m}.py", mods) for m in mods}
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert _cycle(graph) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_trainer_modules_import_one_way():
    mods = {p.stem for p in PKG.glob("*.py")}
    graph = {m: _imports(PKG / f"{m}.py", mods) for m in mods}
    assert graph["evaluate"] and graph["cli"]  # the parser sees the package's imports at all
    cycle = _cycle(graph)
    assert cycle is None, "import cycle in trainer/: " + " -> ".join(cycle)


def test_make_sample_still_runs_as_a_module():
    """``python -m trainer.make_sample`` is the ``streamgan-train sample`` command (docs name both)."""
    r = subprocess.run([sys.executable, "-m", "trainer.make_sample", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--sheet" in r.stdout and "--seconds" in r.stdout
    r = subprocess.run([sys.executable, "-m", "trainer.make_sample", "--seconds", "x"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--seconds" in r.stderr and "Traceback" not in r.stderr
