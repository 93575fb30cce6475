"""The house rules of the codebase: no import cycle between modules, validation stays light, and
the docs name only modules and params keys that exist."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from adlib.config import Params, to_dict

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def module_imports(path: Path) -> set[str]:
    """adlib modules that ``path`` imports at run time (anywhere in the file; imports under
    ``if TYPE_CHECKING:`` are type hints only and left out)."""
    tree = ast.parse(path.read_text())
    hints = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
             and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("adlib")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adlib"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def modules() -> dict[str, Path]:
    found = {}
    for p in (ROOT / "adlib").rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = p
    return found


def test_no_import_cycle_between_library_modules():
    mods = modules()
    graph = {m: {i for i in module_imports(p) if i in mods and i != m} for m, p in mods.items()}
    # a package imports its own submodules lazily or not at all; a submodule importing its
    # package's __init__ is the normal order, not a cycle
    for m in graph:
        graph[m] = {i for i in graph[m] if not m.startswith(i + ".")}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_cycle_check_sees_a_cycle(tmp_path):
    """The checker itself: two modules importing each other are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from adlib.b import x\n")
    b.write_text("import adlib.a\n")
    assert module_imports(a) == {"adlib.b", "adlib.b.x"} and module_imports(b) == {"adlib.a"}


def test_validating_params_does_not_import_torch():
    """`python -m adlib.check` and the check_params stage answer in a blink: the env's rules
    they need live in torch-free adlib/envs/rules.py."""
    code = ("import sys; from adlib.config import load_params; load_params('params.yaml'); "
            "import adlib.check; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docs_name_only_modules_and_keys_that_exist():
    mods = set(modules())
    keys = set()

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            keys.add(prefix + k)
            if isinstance(v, dict):
                walk(v, prefix + k + ".")

    walk(to_dict(Params()), "")
    sections = {k.split(".")[0] for k in keys}
    bad = []
    for doc in DOCS:
        text = doc.read_text()
        for name in re.findall(r"`(adlib(?:\.\w+)+)", text):
            # a module, or a name inside one (adlib.noise.Explorer)
            if name not in mods and name.rsplit(".", 1)[0] not in mods:
                bad.append(f"{doc.name}: {name}")
        for key in re.findall(r"`((?:%s)\.[\w.]+)" % "|".join(sections), text):
            key = key.rstrip(".")
            if key not in keys and not key.endswith(".py"):
                bad.append(f"{doc.name}: {key}")
    assert not bad, "stale names in the docs: " + ", ".join(sorted(set(bad)))


def test_stages_import_torch_only_after_run_stage_sets_the_thread_wait_policy():
    """libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when torch is imported. No stage module
    imports torch at import time, so `run_stage` sets a short spin (GOMP_SPINCOUNT=10000: threads
    soon sleep instead of spinning on a shared CPU) before torch loads; a policy or a spin count the
    user set is kept, and nothing is added to it."""
    stages = sorted(p.stem for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__")
    assert "train_dt" in stages and "eval_dt" in stages
    code = ("import importlib, sys\n"
            f"for m in {stages!r}:\n"
            "    importlib.import_module('stages.' + m)\n"
            "    assert 'torch' not in sys.modules, m\n"
            "from stages import run_stage\n"
            "def main():\n"
            "    import os, torch\n"
            "    print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))\n"
            "run_stage(main)\n")
    cases = (({}, "None 10000"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE None"),
             ({"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE None"), ({"GOMP_SPINCOUNT": "5"}, "None 5"))
    for user, seen in cases:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env.update(user)
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == seen, user
