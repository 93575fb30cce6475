"""Mutation testing by hand: plant realistic bugs one at a time and see whether the tests notice.

    python -m benchmarks.planted_bugs [--only NAME ...] [--list]

Each bug is one textual edit of one module (``BUGS``: the kind of slip a maintainer makes: an
off-by-one, a dropped mask, a swapped pair, a constant in place of a parameter). For each, the
committed tree is copied to a temporary folder (``git archive HEAD``), the edit applied, and the
test files that cover the module run there (``pytest -x -q -p no:cacheprovider`` with this
interpreter); a bug is *caught* when they fail. The table of results goes to the section
"Planted bugs" of docs/robustness.md. An edit that no longer applies (the code moved on) is
an error, not a pass.

``--smoke`` checks that every edit still applies, runs nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from benchmarks import commit, table, write_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "robustness.md"


class Bug(NamedTuple):
    name: str
    module: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = (
    Bug("path ratio averages failed episodes too", "adlib/evaluation.py",
        "ratio[last].mean()", "ratio.mean()", ("tests/test_by_hand.py", "tests/test_eval.py")),
    Bug("success_11to20 reads episodes 12-21", "adlib/evaluation.py",
        'out["success_11to20"] = stat(res.success[:, 10:20]', 'out["success_11to20"] = stat(res.success[:, 11:21]',
        ("tests/test_by_hand.py", "tests/test_eval.py")),
    Bug("exploitation looks at the first success itself", "adlib/evaluation.py",
        "success[np.flatnonzero(has_next), first[has_next] + 1]", "success[np.flatnonzero(has_next), first[has_next]]",
        ("tests/test_by_hand.py", "tests/test_eval.py")),
    Bug("random-search baseline counts the finding episode as exploited", "adlib/evaluation.py",
        "found_before = np.cumsum(res.success, 1) - res.success > 0", "found_before = np.cumsum(res.success, 1) > 0",
        ("tests/test_eval.py", "tests/test_by_hand.py")),
    Bug("sampling temperature ignored", "adlib/rollout.py",
        "torch.softmax(logits[a:b] / r.temperature, -1)", "torch.softmax(logits[a:b], -1)",
        ("tests/test_by_hand.py", "tests/test_eval.py")),
    Bug("truncated step bootstraps from the future, not the cell reached", "adlib/a2c.py",
        "nextvalue = torch.where(truncated[k], final_values[k], future)", "nextvalue = future",
        ("tests/test_a2c.py", "tests/test_by_hand.py")),
    Bug("n-step return ignores termination", "adlib/a2c.py",
        "future = rewards[k] + gamma * (~terminated[k]).float() * nextvalue", "future = rewards[k] + gamma * nextvalue",
        ("tests/test_a2c.py", "tests/test_by_hand.py")),
    Bug("explorer forgets the cell it stands on", "adlib/noise.py",
        "        self.seen[rows, obs] = True\n", "",
        ("tests/test_targets.py",)),
    Bug("a stream's last window never sampled", "adlib/dataset.py",
        "return self.starts[ok], self.lengths[ok] - seq_len + 1", "return self.starts[ok], self.lengths[ok] - seq_len",
        ("tests/test_dataset.py", "tests/test_by_hand.py")),
    Bug("shortest-path actions: right and down swapped", "adlib/envs/darkroom.py",
        "return torch.stack([on_goal, dr < 0, dc > 0, dr > 0, dc < 0], -1)",
        "return torch.stack([on_goal, dr < 0, dr > 0, dc > 0, dc < 0], -1)",
        ("tests/test_env.py", "tests/test_targets.py", "tests/test_eval.py")),
    Bug("attention not causal", "adlib/model.py",
        "is_causal=True", "is_causal=False", ("tests/test_model.py", "tests/test_by_hand.py")),
    Bug("split: one training goal also held out", "adlib/tasks.py",
        "held_out = sorted(int(i) for i in perm[cfg.n_train:])", "held_out = sorted(int(i) for i in perm[cfg.n_train - 1:])",
        ("tests/test_config.py", "tests/test_dataset.py", "tests/test_integrity.py")),
    Bug("in-training 'training goal' evaluation plays held-out goals", "adlib/train.py",
        'spread(list(split["train"]), rt.eval_train_goals)', 'spread(list(split["held_out"]), rt.eval_train_goals)',
        ("tests/test_by_hand.py", "tests/test_train.py")),
    Bug("AD^eps heads for the task's first cell, not its current target", "adlib/noise.py",
        "good = dr.optimal_actions(state.pos, dr.target(state)).float()",
        "good = dr.optimal_actions(state.pos, state.goal[:, :2]).float()",
        ("tests/test_keydoor.py", "tests/test_targets.py")),
    Bug("a float key accepts true", "adlib/config.py",
        "if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):",
        "if not isinstance(value, (int, float)) or not math.isfinite(value):",
        ("tests/test_config.py",)),
    Bug("a true/false key accepts integers", "adlib/config.py",
        "        if not isinstance(value, bool):\n", "        if not isinstance(value, (bool, int)):\n",
        ("tests/test_config.py",)),
)


def tree(dest: Path) -> None:
    """The committed tree (HEAD) into ``dest``."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def plant(root: Path, bug: Bug) -> None:
    path = root / bug.module
    text = path.read_text()
    if text.count(bug.old) != 1:
        raise SystemExit(f"{bug.module}: the edit of {bug.name!r} no longer applies "
                         f"({text.count(bug.old)} matches); update benchmarks/planted_bugs.py")
    path.write_text(text.replace(bug.old, bug.new))


def pytest(root: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def control() -> None:
    """Every test file of :data:`BUGS` passes on the unplanted tree, run the same way: a bug is
    'caught' by its bug, not by the setting."""
    with tempfile.TemporaryDirectory() as tmp:
        tree(Path(tmp))
        p = pytest(Path(tmp), tuple(sorted({t for b in BUGS for t in b.tests})))
        if p.returncode != 0:
            raise SystemExit("the tests fail without any planted bug:\n" + (p.stdout + p.stderr)[-3000:])


def run(bug: Bug) -> tuple[bool, float]:
    """(caught, seconds): the bug's test files on a planted copy of the tree."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tree(root)
        plant(root, bug)
        t0 = time.perf_counter()
        return pytest(root, bug.tests).returncode != 0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", default=None, help="names (substrings) of the bugs to plant")
    ap.add_argument("--smoke", action="store_true", help="check that every edit applies; run nothing")
    args = ap.parse_args()
    bugs = [b for b in BUGS if args.only is None or any(o in b.name for o in args.only)]
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            tree(Path(tmp))
            for b in bugs:
                original = (Path(tmp) / b.module).read_text()
                plant(Path(tmp), b)
                (Path(tmp) / b.module).write_text(original)
        print(f"{len(bugs)} planted bugs apply")
        return
    control()
    print("control: the unplanted tree passes every test file named", flush=True)
    rows, caught = [], 0
    for b in bugs:
        ok, s = run(b)
        caught += ok
        print(f"{'caught ' if ok else 'MISSED '} {b.name} ({s:.0f} s)", flush=True)
        rows.append([b.name, f"`{b.module}`", ", ".join(f"`{Path(t).name}`" for t in b.tests),
                     "caught" if ok else "**missed**"])
    body = (f"{caught} of {len(bugs)} planted bugs caught (code {commit()}; `python -m benchmarks.planted_bugs`: "
            "each bug alone, on a copy of the committed tree, the test files named run against it; the same "
            "files pass on the unplanted tree).\n\n"
            + table(["planted bug", "module", "tests run", "result"], rows))
    if args.only is None:
        write_section("Planted bugs", body, DOC)
    print(body)


if __name__ == "__main__":
    main()
