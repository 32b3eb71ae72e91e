"""Go-to-definition reaches the code that runs, as an editor's does (jedi): every name
that tinyalex/ops/ imports from tinyalex.kernels (and every attribute it reads off a
kernels module), the algorithm a convolution calls, and the network a training step
calls. tinyalex.kernels is the top-level folder kernels/ through the committed
symlink tinyalex/kernels, which static tools follow as Python does."""

import ast
import os
from pathlib import Path

import pytest

try:
    import jedi
except ImportError:                 # the test extra brings it: CI must not skip
    if os.environ.get("CI"):
        raise
    pytest.skip("go-to-definition is checked with jedi: pip install -e '.[test]'",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "tinyalex" / "ops"


@pytest.fixture(scope="module")
def project():
    return jedi.Project(str(REPO), added_sys_path=[str(REPO)], smart_sys_path=False)


def _kernel_names(tree):
    """``(line, column, what)`` of each name imported from tinyalex.kernels and of each
    attribute read off an imported kernels module, at the name's last character."""
    modules, places = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tinyalex.kernels"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "tinyalex.kernels"):
            for alias in node.names:
                modules.add(alias.asname or alias.name)  # a module or a name: both asked
                places.append((node, alias.name))
    found = []
    for node, name in places:              # the name inside its import statement
        found.append((node, name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            found.append((node, f"{node.value.id}.{node.attr}"))
    return found


def _position(lines, node, name):
    """The line and column of the last character of ``name``'s last part within
    ``node``'s source lines."""
    last = name.split(".")[-1]
    for lineno in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        text = lines[lineno - 1]
        start = node.col_offset if lineno == node.lineno else 0
        col = text.find(name if "." in name else last, start)
        while col >= 0 and "." not in name and (
                (col > 0 and (text[col - 1].isalnum() or text[col - 1] == "_"))
                or text[col + len(last):col + len(last) + 1].isalnum()):
            col = text.find(last, col + 1)
        if col >= 0:
            return lineno, col + len(name) - 1
    raise AssertionError(f"{name} not found at line {node.lineno}")


def test_every_kernel_name_the_ops_use_has_a_definition_in_kernels(project):
    empty, asked = [], 0
    for path in sorted(OPS.glob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        script = jedi.Script(source, path=str(path), project=project)
        for node, name in _kernel_names(ast.parse(source)):
            line, column = _position(lines, node, name)
            asked += 1
            found = script.goto(line, column, follow_imports=True)
            if not any(d.module_path and Path(d.module_path).resolve().is_relative_to(
                    REPO / "kernels") for d in found):
                empty.append(f"{path.name}:{line} {name} -> "
                             f"{[str(d.module_path) for d in found]}")
    assert asked > 20, f"only {asked} kernel names found in tinyalex/ops/"
    assert not empty, "go-to-definition finds nothing in kernels/ for:\n" + "\n".join(empty)


def test_the_algorithm_a_convolution_calls_has_a_definition(project):
    path = OPS / "conv.py"
    source = path.read_text()
    script = jedi.Script(source, path=str(path), project=project)
    calls = [(i, line.index("self.algorithm.forward") + len("self.algorithm.forward") - 1)
             for i, line in enumerate(source.splitlines(), 1)
             if "self.algorithm.forward" in line]
    assert calls, "ops/conv.py no longer calls self.algorithm.forward"
    for line, column in calls:
        found = script.goto(line, column)
        assert found, f"ops/conv.py:{line}: self.algorithm.forward has no definition"


def test_the_network_of_a_training_step_has_a_type(project):
    path = REPO / "tinyalex" / "train" / "epoch.py"
    source = path.read_text()
    script = jedi.Script(source, path=str(path), project=project)
    for i, line in enumerate(source.splitlines(), 1):
        if "logits = net(X)" in line:
            column = line.index("net(X)")
            assert [d.name for d in script.infer(i, column)] == ["Module"]
            assert "Tensor" in [d.name for d in script.infer(i, column + len("net(X)") - 1)]
            return
    raise AssertionError("train_step no longer calls net(X)")
