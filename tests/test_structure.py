"""The house rules of the code base, read from the code itself: no import cycles between our
modules (every import counts, also one inside a function), no module past 500 lines, no page past
200 lines, and nothing that points outside the repository."""
from __future__ import annotations

import ast
import subprocess

from tests.fixtures.paths import REPO

PACKAGES = ("backend", "ray_jobs", "app", "pages", "bench")
MAX_MODULE_LINES = 500
MAX_PAGE_LINES = 200


def _modules() -> dict[str, object]:
    mods = {}
    for top in PACKAGES:
        for path in (REPO / top).rglob("*.py"):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if "migrations" in parts:
                continue  # Alembic loads these by file name
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (at any depth of its code)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}".strip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            for t in targets:
                r = _resolve(t, mods)
                if r and r != mod:
                    graph[mod].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def room(module: str) -> str:
    """A module's room: its folder one below the top (``backend.jobs``, ``ray_jobs.worker``), or the
    module itself when it stands directly in a top folder (``backend.costs``)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for m, targets in graph.items():
        rooms.setdefault(room(m), set()).update(room(t) for t in targets if room(t) != room(m))
    for targets in list(rooms.values()):
        for t in targets:
            rooms.setdefault(t, set())
    return rooms


def test_room_graph_sees_a_circle_between_folders():
    # no module circle, but jobs -> sweeps and sweeps -> jobs: the folders import each other
    graph = {"backend.jobs.reconciler": {"backend.sweeps.service"},
             "backend.sweeps.service": {"backend.jobs.service"}, "backend.jobs.service": set()}
    assert cycles(graph) == []
    assert cycles(room_graph(graph)) == [["backend.jobs", "backend.sweeps"]]


def test_no_circles_between_folders():
    """Imports only go down between the rooms too (backend's domains, ray_jobs' recipe and worker,
    app's pages): no two folders import each other, even through modules that do not."""
    found = cycles(room_graph(import_graph()))
    assert not found, "folders that import each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_backend_keeps_few_loose_modules():
    """backend/ is rooms (packages) plus at most 6 loose modules (docs/architecture.md)."""
    loose = sorted(p.name for p in (REPO / "backend").glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= 6, f"{len(loose)} modules directly in backend/: {', '.join(loose)}"


def test_graph_sees_function_level_imports():
    graph = import_graph()
    assert "backend.training.catalogs" in graph["backend.jobs.estimates"]
    assert "backend.jobs.service" in graph["app.ui.job_widgets"]


def test_module_and_page_sizes():
    too_long = []
    for top in ("backend", "ray_jobs", "app", "pages", "bench"):
        for path in (REPO / top).rglob("*.py"):
            n = len(path.read_text().splitlines())
            limit = MAX_PAGE_LINES if top == "pages" else MAX_MODULE_LINES
            if n > limit and "migrations" not in path.parts:
                too_long.append(f"{path.relative_to(REPO)}: {n} lines (limit {limit})")
    assert not too_long, "\n".join(too_long)


def test_nothing_points_outside_the_repository():
    hits = subprocess.run(["git", "grep", "-n", "-I", "-e", "../shared", "--", "."],
                          cwd=REPO, capture_output=True, text=True).stdout.splitlines()
    hits = [h for h in hits if not h.startswith("tests/test_structure.py:")]
    assert not hits, "\n".join(hits)


def test_pages_have_no_stray_strings_that_streamlit_magic_would_draw():
    """A string statement that is not a docstring (e.g. a docstring moved below an import) is
    drawn on the page by Streamlit's magic."""
    stray = []
    for path in (REPO / "pages").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            body = getattr(node, "body", None)
            if not isinstance(body, list):
                continue
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                        and isinstance(stmt.value.value, str) and i > 0:
                    stray.append(f"{path.relative_to(REPO)}:{stmt.lineno}")
    assert not stray, "strings Streamlit would draw: " + ", ".join(stray)


# ----- layers: imports only go down (docs/architecture.md) ---------------------------------------
def _top(module: str) -> str:
    return module.split(".")[0]


LAYER_RULES = (  # (who, may not import, why)
    (lambda m: _top(m) == "backend", lambda t: _top(t) in ("ray_jobs", "app", "pages", "bench"),
     "the backend is below the jobs and the dashboard"),
    (lambda m: _top(m) == "ray_jobs", lambda t: _top(t) in ("app", "pages", "bench"),
     "jobs run on workers, without the dashboard"),
    (lambda m: _top(m) in ("app", "pages"),
     lambda t: t.startswith(("backend.db", "backend.storage")) or _top(t) in ("ray_jobs", "bench"),
     "pages go through the backend's services, never its database or object store"),
    (lambda m: m.startswith("backend.core"), lambda t: not t.startswith("backend.core"),
     "backend.core is the bottom: settings, errors, states, access, schemas"),
)


def arrows_up(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} -> {t} ({why})" for who, banned, why in LAYER_RULES
            for m, targets in sorted(graph.items()) if who(m) for t in sorted(targets) if banned(t)]


def test_layer_check_finds_an_arrow_up():
    assert arrows_up({"backend.jobs.service": {"ray_jobs.worker.runtime"}})
    assert arrows_up({"app.models.actions": {"backend.storage"}})
    assert arrows_up({"backend.core.config": {"backend.jobs.service"}})
    assert not arrows_up({"ray_jobs.train_lora": {"backend.jobs.inputs"},
                          "app.models.actions": {"backend.adapters"}})


def test_imports_only_go_down():
    found = arrows_up(import_graph())
    assert not found, "imports that point up:\n" + "\n".join(found)


def test_no_private_names_imported_across_modules():
    """``from x import _name`` couples two modules through a name x keeps for itself: make it
    public (and documented) or keep the code in one module. Tests may reach in; product and bench
    may not."""
    mods, found = _modules(), []

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        aliases = {}  # local name -> one of our modules (``from ray_jobs.worker import loop as lw``)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found += [f"{mod}: from {node.module} import {a.name}" for a in node.names
                          if private(a.name)]
                aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                                if f"{node.module}.{a.name}" in mods})
            elif isinstance(node, ast.Import):
                aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in mods})
        found += [f"{mod}:{node.lineno}: {aliases[node.value.id]}.{node.attr}"
                  for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Name) and node.value.id in aliases
                  and private(node.attr)]
    assert not found, "\n".join(found)
