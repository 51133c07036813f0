"""The library's shape rules, enforced on every module of genesae_fast/, kernels/ and cli/:

- no function over 60 lines (``def`` line to last line) and none with more than 8
  positional parameters (``self``/``cls`` of a method not counted; keyword-only ones
  are fine). Exempt, and nothing else: Triton kernels (``@triton.jit``) and click command
  callbacks (``@click.command`` / ``@<group>.command``), whose signatures are the options;
- no import cycle among the package's modules, from the imports run at import time
  (module and class bodies; not function bodies or ``if TYPE_CHECKING:`` blocks). Importing
  ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so those count as imported too
  (except the importer's own enclosing packages, which are already being imported).

The checker is plain ``ast``; the tests at the end run it on small sources so a broken
checker cannot pass silently.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"genesae_fast": REPO / "genesae_fast", "genesae_fast.kernels": REPO / "kernels",
         "genesae_fast.cli": REPO / "cli"}
MAX_LINES = 60
MAX_POSITIONAL = 8


def library_modules() -> dict[str, Path]:
    """``{module name: file}`` for every library module (kernels/ and cli/ under their installed names)."""
    modules = {}
    for package, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


# ----------------------------------------------------------------------------- functions


def _decorator_name(node: ast.expr) -> str:
    """``triton.jit`` for ``@triton.jit`` and ``@triton.jit(...)``; '' for other shapes."""
    if isinstance(node, ast.Call):
        node = node.func
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def is_exempt(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A Triton kernel or a click command callback."""
    for dec in func.decorator_list:
        name = _decorator_name(dec)
        if name == "triton.jit" or name.endswith(".command"):
            return True
    return False


def _positional(func, in_class: bool) -> int:
    args = [*func.args.posonlyargs, *func.args.args]
    is_static = any(_decorator_name(d) == "staticmethod" for d in func.decorator_list)
    if in_class and not is_static and args and args[0].arg in ("self", "cls"):
        args = args[1:]
    return len(args)


def shape_offences(source: str, label: str) -> list[str]:
    """One line per function of ``source`` that breaks a size rule."""
    out = []

    def visit(node, in_class=False):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not is_exempt(child):
                    lines = child.end_lineno - child.lineno + 1
                    if lines > MAX_LINES:
                        out.append(f"{label}:{child.lineno} {child.name}: {lines} lines (max {MAX_LINES})")
                    n = _positional(child, in_class)
                    if n > MAX_POSITIONAL:
                        out.append(f"{label}:{child.lineno} {child.name}: {n} positional parameters "
                                   f"(max {MAX_POSITIONAL})")
                visit(child, in_class=False)
            else:
                visit(child, in_class=isinstance(child, ast.ClassDef))

    visit(ast.parse(source))
    return out


# ----------------------------------------------------------------------------- imports


def _import_time_statements(body):
    """Statements run when the module is imported (descends into if/try/with/loops/classes)."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            yield from _import_time_statements(stmt.orelse)
            continue
        yield stmt
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list):
                yield from _import_time_statements(inner)


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies inside."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in known:
            return ".".join(parts[:i])
    return None


def imported_modules(module: str, source: str, known: set[str], is_package: bool) -> set[str]:
    """Known modules that importing ``module`` imports directly (with their enclosing packages)."""
    package = module if is_package else module.rpartition(".")[0]
    targets = set()
    for stmt in _import_time_statements(ast.parse(source).body):
        names = []
        if isinstance(stmt, ast.Import):
            names = [a.name for a in stmt.names]
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:
                anchor = package.split(".")[: len(package.split(".")) - (stmt.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in stmt.names]
        for name in names:
            target = _resolve(name, known)
            while target and target != module:
                if not (module + ".").startswith(target + "."):  # not an enclosing package of the importer
                    targets.add(target)
                target = target.rpartition(".")[0] if "." in target else None
                target = target if target in known else None
    return targets


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return cycles


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """``{module: modules it imports at import time}`` over ``modules``."""
    known = set(modules)
    return {m: imported_modules(m, p.read_text(), known, p.name == "__init__.py") for m, p in modules.items()}


# ----------------------------------------------------------------------------- the rules


def test_no_long_functions_or_long_positional_signatures():
    offences = []
    for path in library_modules().values():
        offences += shape_offences(path.read_text(), str(path.relative_to(REPO)))
    assert not offences, f"{len(offences)} functions break the size rules:\n" + "\n".join(offences)


def test_no_import_cycles():
    cycles = import_cycles(import_graph(library_modules()))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_root_is_scanned():
    modules = library_modules()
    for package in ROOTS:
        assert package in modules
    assert "genesae_fast.train.loop" in modules and "genesae_fast.kernels.topk_encode" in modules


# ----------------------------------------------------------------------------- the checker itself


def _body(n):
    return "".join(f"    x{i} = {i}\n" for i in range(n))


@pytest.mark.parametrize("lines, bad", [(MAX_LINES, False), (MAX_LINES + 1, True)])
def test_checker_counts_lines_from_def_to_end(lines, bad):
    src = "def f():\n" + _body(lines - 1)
    assert bool(shape_offences(src, "m")) == bad


@pytest.mark.parametrize("sig, bad", [
    ("a, b, c, d, e, f, g, h", False),
    ("a, b, c, d, e, f, g, h, i", True),
    ("a, b, c, d, e, f, g, h, *, i, j", False),
    ("a, b, c, d, /, e, f, g, h, i", True),
    ("a, b, c, d, e, f, g, h, *rest, **kw", False),
])
def test_checker_counts_positional_parameters(sig, bad):
    assert bool(shape_offences(f"def f({sig}):\n    pass\n", "m")) == bad


def test_checker_skips_self_but_not_in_plain_functions():
    nine = "self, a, b, c, d, e, f, g, h"
    assert not shape_offences(f"class C:\n    def m({nine}):\n        pass\n", "m")
    assert shape_offences(f"class C:\n    @staticmethod\n    def m({nine}):\n        pass\n", "m")
    assert shape_offences(f"def m({nine}):\n    pass\n", "m")


@pytest.mark.parametrize("decorator, exempt", [
    ("@triton.jit", True), ("@triton.jit(do_not_specialize=['n'])", True), ("@click.command()", True),
    ("@train_group.command('x')", True), ("@functools.cache", False), ("@jit", False), ("@click.option('--x')", False),
])
def test_checker_exemptions(decorator, exempt):
    src = f"{decorator}\ndef f(a, b, c, d, e, f, g, h, i):\n" + _body(70)
    assert (shape_offences(src, "m") == []) == exempt


def test_checker_finds_nested_and_method_offences():
    src = "class C:\n    def m(self):\n        def inner():\n" + "".join(f"            y{i} = 1\n" for i in range(61))
    found = shape_offences(src, "m")
    assert len(found) == 2 and "inner" in found[1] and " m:" in found[0]


def test_cycle_finder():
    known = {"p", "p.a", "p.b", "p.c", "p.sub", "p.sub.d"}
    sources = {
        "p": "", "p.a": "from p.b import x\n", "p.b": "import p.c\n",
        "p.c": "def f():\n    from p.a import y\nfrom . import a\n",  # the function-level import is ignored
        "p.sub": "from p.a import z\n", "p.sub.d": "from .. import c\nif TYPE_CHECKING:\n    import p.sub\n",
    }
    graph = {m: imported_modules(m, s, known, m in ("p", "p.sub")) for m, s in sources.items()}
    assert graph["p.c"] == {"p.a"} and graph["p.sub.d"] == {"p.c"}
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]
    # importing p.sub.d from outside runs p.sub's __init__ first
    assert imported_modules("p.a", "import p.sub.d\n", known, False) == {"p.sub", "p.sub.d"}
    del graph["p.c"]
    assert import_cycles(graph) == []
