"""The package's structure: imports run one way, with no cycle anywhere, and the
kernels folder is one module object however tinyalex is imported.

The import graph is read from the source (ast), every ``import`` and ``from ...
import`` statement counted, those inside functions too: a late import that only hides
a cycle is still a cycle. The layers, top to bottom: scripts -> training and study
tools -> nn, optim -> ops -> kernels -> backend, random, checks, launcher.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# what the kernels may import from tinyalex: the layers below them, and themselves
KERNEL_MAY_IMPORT = ("tinyalex.kernels", "tinyalex.backend", "tinyalex.random",
                     "tinyalex.checks", "tinyalex.launcher")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "kernels":
        parts = ["tinyalex"] + parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> dict:
    """{module name: path} for every module of tinyalex, kernels/ as tinyalex.kernels."""
    found = {}
    for top in ("tinyalex", "kernels"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, modules: dict) -> set:
    """The tinyalex modules that ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            if target == "kernels" or target.startswith("kernels."):
                target = "tinyalex." + target
            while target and target not in modules:
                target = target.rpartition(".")[0]      # a name inside a module
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict:
    modules = package_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere_in_the_package():
    graph = import_graph()
    assert len(graph) > 30 and "tinyalex.kernels.conv_im2col_cpu" in graph
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_late_imports(tmp_path):
    """An import inside a function counts: tensor.py once imported the ops that way."""
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from .ops import basic\n    import tinyalex.backend\n")
    modules = {"tinyalex.mod": src, "tinyalex.ops.basic": src, "tinyalex.backend": src}
    assert imports_of("tinyalex.mod", src, modules) == {"tinyalex.ops.basic",
                                                        "tinyalex.backend"}


def test_kernels_import_no_op_layer_training_or_study_code():
    graph = import_graph()
    wrong = {name: sorted(d for d in deps if not d.startswith(KERNEL_MAY_IMPORT))
             for name, deps in graph.items() if name.startswith("tinyalex.kernels")}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_ops_do_not_import_nn_training_or_study_code():
    graph = import_graph()
    above = ("tinyalex.nn", "tinyalex.train", "tinyalex.study", "tinyalex.cli",
             "tinyalex.models", "tinyalex.optim", "tinyalex.data", "tinyalex.checkpoint")
    wrong = {name: sorted(d for d in deps if d.startswith(above))
             for name, deps in graph.items() if name.startswith("tinyalex.ops")}
    assert {k: v for k, v in wrong.items() if v} == {}


def run_python(code, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_one_module_object_for_the_kernels_from_a_checkout():
    """From a checkout on PYTHONPATH (how the tests and scripts import it), the folder
    kernels/ is tinyalex.kernels and nothing else: ``import kernels`` is refused
    (it would be a second copy with switches of its own), and no other folder of the
    repository imports as part of tinyalex."""
    code = """
import sys, tinyalex, tinyalex.kernels as k, tinyalex.kernels.conv_im2col_cpu as c
print(k.__file__)
assert c.__name__ == 'tinyalex.kernels.conv_im2col_cpu'
copies = [n for n, m in list(sys.modules.items())
          if getattr(m, '__file__', None) == k.__file__]
assert copies == ['tinyalex.kernels'], copies
for name in ('kernels', 'tinyalex.tests', 'tinyalex.benchmarks', 'tinyalex.docs',
             'tinyalex.examples'):
    try:
        __import__(name)
    except ImportError as exc:
        print(name, 'refused:', exc)
    else:
        print(name, 'IMPORTED')
"""
    out = run_python(code, ROOT, {"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # tinyalex/kernels is the committed symlink to ../kernels: the same folder
    assert Path(lines[0]) == ROOT / "tinyalex" / "kernels" / "__init__.py"
    assert Path(lines[0]).resolve() == (ROOT / "kernels" / "__init__.py").resolve()
    assert "IMPORTED" not in out.stdout
    assert "kernels refused: this folder is tinyalex.kernels; import it as `import " \
           "tinyalex.kernels`" in out.stdout


def test_one_module_object_for_the_kernels_when_installed():
    """However pip installed tinyalex (the editable install of scripts/setup.sh maps
    tinyalex.kernels to the kernels folder), the kernels sit beside the tinyalex that
    was imported, once."""
    code = """
import os, sys, tinyalex, tinyalex.kernels as k
pkg = os.path.dirname(tinyalex.__file__)
here = {os.path.join(pkg, 'kernels', '__init__.py'),
        os.path.join(os.path.dirname(pkg), 'kernels', '__init__.py')}
assert k.__file__ in here, (k.__file__, here)
assert [n for n, m in sys.modules.items() if getattr(m, '__file__', None) == k.__file__] \\
    == ['tinyalex.kernels']
print('ok', k.__file__)
"""
    out = run_python(code, "/")
    if out.returncode != 0 and "No module named 'tinyalex'" in out.stderr:
        reason = "tinyalex is not installed in this Python (scripts/setup.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")


# -- the pages name only what exists ---------------------------------------------------

# what a run or a benchmark writes, not files of the repository: the pages name them as
# outputs
RUN_OUTPUTS = ("runs/", "data/", "./data", "../data", "FashionMNIST/", "checkpoint.npz",
               "metrics.json", "results/dist_numpy.json")


def doc_pointers(text: str):
    """(kind, text) for every relative link and every backticked path or identifier of
    a Markdown page (code blocks left out: the doctests run those)."""
    import re
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:|#", target):
            yield "link", target.split("#")[0]
    for tok in re.findall(r"`([^`\n]+)`", text):
        if re.fullmatch(r"[\w.-]+(/[\w.-]*)+|[\w-]+\.(py|md|cu|cuh|h|json|sh|cfg)", tok):
            yield "path", tok
        elif re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\(\))?", tok) and (
                "_" in tok or "." in tok):
            yield "name", tok.rstrip("()")


def missing_pointers(text: str, where: Path, names: set, files: set) -> list:
    found = []
    for kind, t in doc_pointers(text):
        if t.startswith(RUN_OUTPUTS) or t in RUN_OUTPUTS:
            continue
        if kind == "name":
            ok = t.split(".")[-1] in names
        elif "/" in t.rstrip("/"):
            ok = any((base / t).exists() for base in (ROOT, where, ROOT / "tinyalex"))
        else:
            ok = t.rstrip("/") in files
        if not ok:
            found.append(f"{kind} {t}")
    return found


def test_the_pages_name_only_paths_and_names_that_exist():
    """Every path, link and identifier README.md, docs/*.md and benchmarks/README.md
    name exists: a path in the repository (from its root, the page's folder or
    tinyalex/), a file name somewhere in it, an identifier somewhere in its code."""
    import re
    code = [p for top in ("tinyalex", "kernels", "examples", "benchmarks", "tests", "scripts")
            for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".cu", ".cuh", ".h", ".sh")
            and p.resolve() != Path(__file__).resolve()]      # this file names the bad ones
    names = set(re.findall(r"\w+", "\n".join(p.read_text(errors="replace") for p in code)))
    files = {p.name for p in ROOT.rglob("*") if ".git" not in p.parts}
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
             *sorted((ROOT / "docs").glob("*.md"))]
    stale = {str(page.relative_to(ROOT)): missing_pointers(page.read_text(), page.parent,
                                                           names, files)
             for page in pages}
    assert not any(stale.values()), {k: v for k, v in stale.items() if v}
    # the check can fail: a page naming what does not exist
    bad = ("`tinyalex/ops/checks.py`, `numba_winograd4.py`, `WINOGRAD_MIN_CHANNELS`, "
           "[a](../kernels/allocator.py)")
    assert sorted(missing_pointers(bad, ROOT / "docs", names, files)) == [
        "link ../kernels/allocator.py", "name WINOGRAD_MIN_CHANNELS",
        "path numba_winograd4.py", "path tinyalex/ops/checks.py"]
