"""Shared helpers of the DVC pipeline tests: tiny params laid over the real params.yaml, and a
throwaway git + DVC repo holding a copy of the pipeline code, driven through subprocesses."""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARDS = ("train_source_agents@0", "train_source_agents@1")

# Every key of the sections the first three stages read, laid over the real params.yaml; its
# other sections (dt, eval, ...) come as they are unless TINY_DT_EVAL is laid over them too.
TINY = {
    "env": {"grid_size": 5, "max_episode_steps": 20, "terminate_on_goal": True, "random_start": False,
            "reward_mode": "reach"},
    "split": {"seed": 0, "n_train": 16},
    "source": {"hidden_size": 128, "nenvs": 4, "nsteps": 5, "env_steps": 8000, "seeds_per_goal": 1,
               "lr": 1.0e-4, "betas": [0.9, 0.999], "eps": 1.0e-6, "clip_grad_norm": 0.5, "value_coef": 0.99,
               "entropy_coef": 0.01, "gamma": 0.99, "seed": 0, "shards": [0, 1]},
    "dataset": {"history_len": 8000, "subsample": 1,
                "noise": {"streams_per_goal": 0, "transitions": 600, "schedule": "episodes", "decay_episodes": 80,
                          "eps_start": 1.0, "eps_end": 0.0, "seed": 0},
                "explorer": {"streams_per_goal": 0, "transitions": 600, "seed": 0}},
    "runtime": {"source": {"device": "cpu", "threads": 1, "workers": 1, "log_every": 10, "checkpoint_every": 2000}},
}

# The stages after the dataset (transformer, evaluation, videos), small enough for a few
# seconds each on one CPU core.
TINY_DOWNSTREAM = {
    "dt": {"seq_len": 16, "embedding_dim": 16, "num_layers": 1, "num_heads": 2, "feed_forward_dim": 32,
           "num_steps": 20, "batch_size": 4, "warmup_steps": 2},
    "eval": {"episodes": 5, "seeds": 2, "train_goals": 2},
    "render": {"source_goals": 1, "ad_goals": 1, "ad_episodes": 3, "fps": 4, "cell_px": 8},
    "runtime": {"dt": {"device": "cpu", "amp": False, "threads": 1, "eval_step": 0, "checkpoint_every": 10},
                "eval": {"device": "cpu", "threads": 1}},
}


# What each stage's outputs depend on, declared here independently of dvc.yaml (which the
# tests check against it): whole params sections, or single keys. check_params depends on
# every section, runtime included (so that it runs before any stage that would rerun).
RESULT_SECTIONS = ("env", "split", "source", "dataset", "dt", "eval", "render")
STAGE_READS = {
    "check_params": [*RESULT_SECTIONS, "runtime"],
    "split_tasks": ["env.kind", "env.grid_size", "env.n_tasks", "split"],   # the task set: kind, side, subset
    "train_source_agents": ["env", "source"],
    "build_history_dataset": ["env", "dataset", "source.shards"],
    "train_dt": ["env", "dt"],
    "eval_dt": ["env", "dt", "eval", "source.shards"],            # dt: the model must be the params' one
    "render_videos": ["env", "dt", "render", "source.shards", "eval.temperature"],   # AD filmed as evaluated
}
# Modules imported by every stage that cannot change an output: validation (params.yaml sets
# every key, so config.py's defaults never reach a stage) and progress bars / log lines.
NOT_DEPS = {"adlib/config.py": "schema and validation only", "adlib/logs.py": "progress bars, log lines"}


def stage_name(name: str) -> str:
    """``train_source_agents@1`` -> ``train_source_agents``."""
    return name.split("@")[0]


def stage_reads(name: str) -> set[str]:
    """Every params key (dotted, leaf) the outputs of stage ``name`` depend on."""
    from adlib.config import param_keys

    keys = param_keys()
    out = set()
    for r in STAGE_READS[stage_name(name)]:
        out |= {k for k in keys if k == r or k.startswith(r + ".")}
    return out


def _imports(path: Path) -> set[str]:
    """Modules imported anywhere in ``path`` (functions included; ``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}   # `from pkg import module`
    return out


def import_closure(module: str, root: Path = REPO) -> set[str]:
    """Files (relative to ``root``) of every project module that importing ``module`` can load,
    package ``__init__`` files included, following imports inside functions too."""
    def file_of(mod: str) -> Path | None:
        p = root.joinpath(*mod.split("."))
        for f in (p.with_suffix(".py"), p / "__init__.py"):
            if f.is_file():
                return f
        return None

    seen: set[Path] = set()
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        if parts[0] not in ("adlib", "stages"):
            continue
        for i in range(1, len(parts) + 1):
            f = file_of(".".join(parts[:i]))
            if f is not None and f not in seen:
                seen.add(f)
                todo += sorted(_imports(f))
    return {str(f.relative_to(root)) for f in seen}


def stage_module(cmd: str) -> str:
    """``python -m stages.x ...`` -> ``stages.x``."""
    m = re.search(r"python -m ([\w.]+)", cmd)
    assert m, f"not a `python -m` command: {cmd}"
    return m.group(1)


def key_paths(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= key_paths(v, prefix + k + ".")
    return out


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_params(*overs: dict) -> dict:
    """The real params.yaml with TINY (and ``overs``) laid over it: every key of the real file,
    same structure (a key added there later comes through with its real value)."""
    real = yaml.safe_load((REPO / "params.yaml").read_text())
    for over in (TINY, *overs):
        stale = key_paths(over) - key_paths(real)
        assert not stale, f"tests/dvc_helpers.py: tiny params have keys params.yaml lacks: {sorted(stale)}"
    out = real
    for over in (TINY, *overs):
        out = merge(out, over)
    return out


def _interpolate(x, item):
    if isinstance(x, str):
        return x.replace("${item}", str(item))
    if isinstance(x, list):
        return [_interpolate(v, item) for v in x]
    if isinstance(x, dict):
        return {_interpolate(k, item): _interpolate(v, item) for k, v in x.items()}
    return x


def pipeline(params: dict, dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, dict]:
    """The stages of dvc.yaml (``foreach`` expanded): name -> {"cmd": str, "deps": [paths],
    "params": [keys], "outs": {path: options}} (metrics and plots count as outputs)."""
    stages = {}
    for name, st in yaml.safe_load(Path(dvc_yaml).read_text())["stages"].items():
        if "foreach" in st:
            ref = re.fullmatch(r"\$\{([\w.]+)\}", str(st["foreach"]))
            assert ref, f"dvc.yaml: foreach {st['foreach']!r} is not a params reference"
            items = params
            for k in ref.group(1).split("."):
                items = items[k]
            expanded = {f"{name}@{item}": _interpolate(st["do"], item) for item in items}
        else:
            expanded = {name: st}
        for n, s in expanded.items():
            outs = {}
            for kind in ("outs", "metrics", "plots"):
                for o in s.get(kind, []):
                    path, opts = (next(iter(o.items())) if isinstance(o, dict) else (o, None))
                    outs[path] = opts or {}
            stages[n] = {"cmd": " ".join(str(s["cmd"]).split()), "deps": list(s.get("deps", [])),
                         "params": [str(p) for p in s.get("params", [])], "outs": outs}
    return stages


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def downstream(stages: dict[str, dict], start: set[str]) -> set[str]:
    """``start`` and every stage that depends, directly or not, on an output of one of them."""
    out = set(start)
    while True:
        outs = [o for n in out for o in stages[n]["outs"]]
        more = {n for n, st in stages.items() if n not in out
                and any(_overlaps(d, o) for d in st["deps"] for o in outs)}
        if not more:
            return out
        out |= more


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ran_stages(out: str) -> set[str]:
    """Stages that `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", out))


def skipped_stages(out: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' didn't change, skipping", out))


class Repo:
    """A throwaway git + DVC repo holding a copy of the pipeline code."""

    def __init__(self, root: Path):
        self.root = Path(root)
        bindir = str(Path(sys.executable).parent)
        self.env = {**os.environ,
                    "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
                    "PYTHONPATH": str(self.root),  # `python -m stages.x` imports the copied stages/ and adlib/
                    "DVC_NO_ANALYTICS": "1", "CI": "true",
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",   # 2 cores, shared with another worker
                    "GIT_AUTHOR_NAME": "adlib test", "GIT_AUTHOR_EMAIL": "test@localhost",
                    "GIT_COMMITTER_NAME": "adlib test", "GIT_COMMITTER_EMAIL": "test@localhost"}
        self.env.pop("VIRTUAL_ENV", None)

    def run_raw(self, *cmd: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=self.root, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)

    def run(self, *cmd: str, timeout: int = 600, env: dict | None = None) -> str:
        p = self.run_raw(*cmd, timeout=timeout, env=env)
        out = p.stdout + p.stderr
        assert p.returncode == 0, f"`{' '.join(cmd)}` exited {p.returncode}:\n{out[-6000:]}"
        return out

    def git(self, *args: str) -> str:
        return self.run("git", "-c", "commit.gpgsign=false", *args)

    def dvc(self, *args: str, **kw) -> str:
        return self.run(sys.executable, "-m", "dvc", *args, **kw)

    def dvc_stdout(self, *args: str, **kw) -> str:
        """stdout only (for --json output: DVC writes warnings to stderr)."""
        p = self.run_raw(sys.executable, "-m", "dvc", *args, **kw)
        assert p.returncode == 0, f"`dvc {' '.join(args)}` exited {p.returncode}:\n{(p.stdout + p.stderr)[-6000:]}"
        return p.stdout

    def repro(self, *targets: str, expect: set[str] | None = None) -> set[str]:
        """`dvc repro [targets]`; the set of stages that ran (all of ``expect`` ran or were skipped
        in the output; it is not checked when None)."""
        out = self.dvc("repro", *targets)
        ran = ran_stages(out)
        if expect is not None:
            assert ran | skipped_stages(out) == expect, f"unexpected stages in dvc repro output:\n{out}"
        status = self.dvc("status", "--with-deps", *targets)
        assert "up to date" in status, f"dvc status after repro:\n{status}"
        return ran

    @property
    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def set_param(self, key: str, value, new: bool = False) -> None:
        """Set ``key`` in params.yaml (with ``new``, a key params.yaml does not have is added)."""
        p = self.params
        *parents, last = key.split(".")
        d = p
        for k in parents:
            d = d[k]
        assert new or last in d, key
        d[last] = value
        (self.root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))

    def mtimes(self, sub: str) -> dict[str, int]:
        """Modification times of the stage outputs under ``sub``."""
        base = self.root / sub
        return {str(f.relative_to(base)): f.stat().st_mtime_ns for f in sorted(base.rglob("*"))
                if f.is_file() and f.name != ".gitignore"}   # .gitignore: DVC's own, not a stage output

    def hashes(self, sub: str, pattern: str = "*") -> dict[str, str]:
        """sha256 of the files matching ``pattern`` under ``sub``."""
        base = self.root / sub
        return {str(f.relative_to(base)): sha256(f) for f in sorted(base.rglob(pattern)) if f.is_file()}

    def json(self, rel: str):
        return json.loads((self.root / rel).read_text())


def make_repo(root: Path, params: dict) -> Repo:
    """A new git + DVC repo at ``root`` with the pipeline code, ``params`` and one commit."""
    root = Path(root)
    root.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("stages", "adlib"):
        shutil.copytree(REPO / d, root / d, ignore=ignore)
    for f in ("dvc.yaml", "pyproject.toml", ".gitignore"):
        if (REPO / f).exists():
            shutil.copy2(REPO / f, root / f)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = Repo(root)
    r.git("init", "-q")
    r.git("config", "user.name", "adlib test")      # `dvc exp run` commits with git's identity
    r.git("config", "user.email", "test@localhost")
    r.git("config", "commit.gpgsign", "false")
    r.dvc("init", "-q")
    if (REPO / ".dvcignore").exists():
        shutil.copy2(REPO / ".dvcignore", root / ".dvcignore")
    r.dvc("config", "core.analytics", "false")
    r.git("add", "-A")
    r.git("commit", "-q", "-m", "tiny pipeline")
    return r
