"""The layering of docs/ARCHITECTURE.md, checked on the code's own imports (pure, milliseconds).

Every import statement of the project's packages is read with `ast`, the ones inside
functions too (a lazy import is still a dependency). A module may import its own package and
the packages of lower layers; packages on one layer may not import each other. Ray may be
imported only where actors are made; DeepSpeed only by the learner; the sandbox, the rewards
and the task sources stay free of torch and transformers too. The layers are read from the
document itself (the block between `layers:begin` and `layers:end`), so the two cannot drift.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"

# Third-party packages only some of the project's packages may import.
ONLY_IN = {
    "ray": {"cluster", "benchmarks"},  # plain classes everywhere else; cluster/ makes actors
    "deepspeed": {"learner"},
}
FREE_OF = {  # packages that must not import these (pure logic, or processes kept lean)
    "torch": {"core", "executor", "reward", "problems"},
    "transformers": {"core", "executor", "reward", "problems"},
}

# Known exceptions: (importing module, imported module) -> why it is allowed for now. Each
# one must still occur (a test below fails when one is no longer needed, so the list only
# shrinks).
EXCEPTIONS: dict[tuple[str, str], str] = {}


def layers() -> list[list[str]]:
    """The documented layers, lowest first; each a list of packages."""
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- layers:begin -->(.*?)<!-- layers:end -->", text, re.S)
    assert block, f"{DOC} has no layers:begin / layers:end block"
    cells = [line.strip().strip("|").split("|") for line in block.group(1).splitlines()
             if line.strip().startswith("|")]
    rows = [re.findall(r"`(\w+)/`", c[1]) for c in cells if len(c) > 1]
    rows = [r for r in rows if r]
    assert rows, "the layers block names no packages"
    return rows[::-1]  # the document lists the highest layer first


@functools.lru_cache(maxsize=None)
def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import in the file, relative ones resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[:-node.level] if path.name != "__init__.py" \
                    else module.split(".")[:len(module.split(".")) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            out.append((node.lineno, base))
    return out


def modules(packages: list[str]):
    """(package, module name, path) of every Python file of the packages."""
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield pkg, ".".join(parts), path


LAYERS = layers()
LEVEL = {pkg: i for i, row in enumerate(LAYERS) for pkg in row}
PACKAGES = list(LEVEL)


def test_every_package_of_the_project_has_a_layer():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    listed = re.search(r"^packages\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1)
    shipped = {p.split(".")[0] for p in re.findall(r'"([\w.]+)"', listed)}
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert shipped | on_disk <= set(PACKAGES), (
        f"packages without a layer in {DOC.name}: {sorted((shipped | on_disk) - set(PACKAGES))}")


def test_no_module_imports_a_higher_layer_or_a_peer():
    wrong, used = [], set()
    for pkg, module, path in modules(PACKAGES):
        for line, name in imports(path, module):
            top = name.split(".")[0]
            if top not in LEVEL or top == pkg or LEVEL[top] < LEVEL[pkg]:
                continue
            hit = next(((module, m) for m in (name, *_parents(name))
                        if (module, m) in EXCEPTIONS), None)
            if hit:
                used.add(hit)
                continue
            how = "a peer on its layer" if LEVEL[top] == LEVEL[pkg] else "a higher layer"
            wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({how})")
    assert not wrong, "imports against the layering of docs/ARCHITECTURE.md:\n" + "\n".join(wrong)
    stale = set(EXCEPTIONS) - used
    assert not stale, f"exceptions no longer needed, remove them: {sorted(stale)}"


@pytest.mark.parametrize("dep", sorted({**ONLY_IN, **FREE_OF}))
def test_heavy_libraries_stay_where_they_belong(dep):
    wrong = []
    for pkg, module, path in modules(PACKAGES):
        allowed = pkg in ONLY_IN[dep] if dep in ONLY_IN else pkg not in FREE_OF[dep]
        if allowed:
            continue
        wrong += [f"{path.relative_to(ROOT)}:{line} imports {name}"
                  for line, name in imports(path, module) if name.split(".")[0] == dep]
    assert not wrong, f"{dep} imported where it must not be:\n" + "\n".join(wrong)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    # A function-level import is found, and `from ..x import y` in a/b/c.py resolves to a.x.
    f = tmp_path / "c.py"
    f.write_text("def g():\n    import ray\n\nfrom ..x import y\nfrom . import z\n")
    assert sorted(imports(f, "a.b.c")) == [(2, "ray"), (4, "a.x"), (5, "a.b")]
    init = tmp_path / "__init__.py"
    init.write_text("from . import z\nfrom .. import w\n")
    assert sorted(imports(init, "a.b")) == [(1, "a.b"), (2, "a")]
