"""The package's shape and its one error model: no import cycle among the modules of dpi_jax (function-local imports
count), the core modules import only each other, and every tool reports a user's mistake (a
:class:`dpi_jax.errors.DPIError` or an ``OSError``) as one line with exit status 2 and a bug with its traceback and
status 1 (dpi_jax.cli)."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dpi_jax import errors, validation
from tests.reference import run_python

PACKAGE = Path(__file__).resolve().parents[1] / "dpi_jax"
# The modules the rest is built on (the "core"): they may import only each other.
CORE = {"diffusion", "masks", "sampler", "sharding", "checkpoint", "images", "degrade", "losses", "models",
        "models.configs", "models.unet", "errors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The dpi_jax modules that the file ``path`` imports anywhere (top level or inside functions); ``from dpi_jax
    import x`` counts as module ``x`` when it is one, else as the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("dpi_jax."):
                name = name[len("dpi_jax."):]
                while name and name not in MODULES:
                    name = name.rpartition(".")[0]
                found.add(name)  # "" is the package itself
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``edges`` found by a depth-first walk (each as a closed path)."""
    state, found = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_among_the_modules():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]  # the walk finds one
    assert not cycles(graph()), cycles(graph())


def test_the_import_graph_sees_function_local_imports(tmp_path):
    """The checks must not be blind: a function-local import is an edge, and a name from a module is that module."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from dpi_jax import sampler\n    from dpi_jax.metrics.fid import statistics\n")
    assert imports_of(source) == {"sampler", "metrics.fid"}


def test_the_core_imports_only_the_core():
    edges = graph()
    outside = {m: sorted(i - CORE) for m, i in edges.items() if m in CORE and i - CORE}
    assert not outside, outside


def test_the_config_rules_and_the_command_line_stay_small():
    """validation.py holds the config rules only and cli.py the command line (parsing, exit statuses). The rules
    import the core they check against (the schedule, Settings, the model configs) and one table of a feature:
    photo mode's background upsamplers, whose names config.background_upsampler may take; cli imports the rules."""
    edges = graph()
    assert edges["validation"] <= CORE | {"photo.paste"}, edges["validation"] - CORE
    assert edges["cli"] <= {"compile_cache", "errors", "launch", "validation"}, edges["cli"]


def test_the_command_line_parses_without_jax():
    """``import dpi_jax``, the command-line template and the launch flags import neither JAX nor Flax, so that a
    tool's --help or a flag error answers at once (sample.py and train.py import their work after the flags)."""
    proc = run_python(["-c", "import sys, dpi_jax, dpi_jax.cli, dpi_jax.launch; "
                             "print(sorted(m for m in ('jax', 'flax', 'orbax') if m in sys.modules))"])
    assert proc.stdout.strip() == "[]", proc.stdout
    proc = run_python(["-c", "import sys, dpi_jax; dpi_jax.Settings; print('jax' in sys.modules)"])
    assert proc.stdout.strip() == "True"  # the exported API is imported on first use


def test_every_error_of_the_model_is_a_dpi_error_and_keeps_its_builtin_base():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert len(classes) >= 9
    for cls in classes:
        assert issubclass(cls, errors.DPIError)
        assert cls is errors.DPIError or set(cls.__mro__) & {ValueError, OSError, RuntimeError}, cls
    assert validation.ConfigError is errors.ConfigError


def run_tool(body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        import sys
        from dpi_jax import cli, errors

        def fn():
        {textwrap.indent(textwrap.dedent(body), '    ')}
        sys.exit(cli.run_cli(fn))
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("body,status,line", [
    ("raise errors.CheckpointError('ckpt/ holds a crt checkpoint')", 2, "error: ckpt/ holds a crt checkpoint"),
    ("raise errors.ConfigError(['config.tau = -1.0: must be >= 0', 'config.s = 0.0: must be > 0'])", 2,
     "error: config.tau = -1.0: must be >= 0; config.s = 0.0: must be > 0"),
    ("raise FileNotFoundError('no such file x.png')", 2, "error: no such file x.png"),
    ("return 3", 3, None),
])
def test_a_users_mistake_is_one_line_and_status_2(body, status, line):
    proc = run_tool(body)
    assert proc.returncode == status, proc.stderr
    if line:
        assert proc.stderr.strip() == line  # one line, no traceback


@pytest.mark.parametrize("body,kind", [("{}['missing']", "KeyError"), ("[][1]", "IndexError"),
                                       ("raise ValueError('a bug')", "ValueError")])
def test_a_bug_keeps_its_traceback_and_status_1(body, kind):
    proc = run_tool(body)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr and f"error: {kind}" in proc.stderr
