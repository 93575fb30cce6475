"""The DVC workflows the README walks through, end to end on tiny params in throwaway git repos:

    1. `dvc repro` of the whole pipeline; `dvc metrics show`, `dvc plots show` (x = episode)
    2. a transformer param edited      -> train_dt, eval_dt and render_videos rerun, nothing upstream
    3. `dvc exp run -S dt.seq_len=8`    -> `dvc exp show` / `dvc exp diff` / `dvc metrics diff`
    4. `dvc push` to a local remote, `git clone`, plain `dvc pull`: everything comes back
       (videos included) and `dvc status` is up to date; `dvc repro --pull` trains nothing
    5. the same round trip through an S3 server (moto) on 127.0.0.1, credentials kept out of git
    6. the fan-in guard: a shard missing (a partial pull) makes build_history_dataset fail
       naming the missing goals, instead of building a smaller dataset

The whole pipeline is reproduced once per session (tests/conftest.py); every test works on
its own copy of that repo. Which stages exist, and which depend on which, is read from
dvc.yaml, so a stage added later is expected where it belongs.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc_helpers import SHARDS, TINY_DOWNSTREAM, Repo, downstream, pipeline, ran_stages, tiny_params

pytestmark = pytest.mark.slow

STAGES = pipeline(tiny_params(TINY_DOWNSTREAM))   # dvc.yaml's stages, foreach expanded
ALL = set(STAGES)
DT_AND_AFTER = downstream(STAGES, {"train_dt"})    # train_dt, eval_dt, render_videos
ALL3 = {"check_params", "split_tasks", *SHARDS, "build_history_dataset"}

HELDOUT_KEY = "held_out.sampled.success_last10"     # a headline metric, as DVC flattens it


def _get(d: dict, dotted: str):
    for k in dotted.split("."):
        d = d[k]
    return d


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


# --- 1. the whole pipeline -----------------------------------------------------------------

def test_full_repro_metrics_and_plots(base_repo, repo: Repo, tmp_path: Path):
    _, info = base_repo
    assert ran_stages(info["repro_out"]) == ALL, info["repro_out"]
    print(f"full dvc repro of the tiny pipeline: {info['repro_s']} s")

    m, detail = repo.json("metrics/eval.json"), repo.json("metrics/eval_detail.json")
    split = repo.json("data/split.json")
    g = detail["held_out"]["greedy"]
    assert g["goals"] == len(split["held_out"]) == 8 and g["episodes"] == 5
    assert _get(m, HELDOUT_KEY) == detail["held_out"]["sampled"]["success_last10"]["mean"]
    assert detail["train_goals"]["sampled"]["goals"] == 2 and detail["train_goals"]["sampled"]["seeds"] == 2

    shown = json.loads(repo.dvc_stdout("metrics", "show", "--json"))
    data = shown[""]["data"]["metrics/eval.json"]["data"]    # "" = the workspace
    # DVC leaves out null values (steps_over_shortest_last10 when no episode succeeded)
    assert _flat(data) == {k: v for k, v in _flat(m).items() if v is not None}
    assert _get(data, HELDOUT_KEY) == _get(m, HELDOUT_KEY)

    out = tmp_path / "plots"
    repo.dvc("plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "held_out_learning_curve" in html and "train_goals_learning_curve" in html
    assert list((out / "static").glob("*held_out.png")), "the PNG plot was not rendered"
    # every declared data plot: AD and its baselines (y) against the episode (x), as rendered
    shown = json.loads(repo.dvc_stdout("plots", "show", "--json"))["data"]
    for name in ("held_out_learning_curve", "train_goals_learning_curve"):
        (plot,) = shown[name]
        spec = plot["content"]
        assert spec["encoding"]["x"]["field"] == "episode", spec["encoding"]["x"]
        values = spec["data"]["values"]
        assert {v["field"] for v in values} == {"ad_sampled", "ad_greedy", "a2c_source", "random", "optimum",
                                                "explorer", "random_search", "systematic_explorer"}
        assert {int(v["episode"]) for v in values} == set(range(1, 6))   # eval.episodes of the tiny params

    # nothing changed: a second repro runs nothing
    assert repo.repro(expect=ALL) == set()


# --- 2. a transformer param ----------------------------------------------------------------

def test_transformer_param_reruns_only_dt_stages(repo: Repo):
    sources, dataset = repo.mtimes("data/sources"), repo.mtimes("data/dataset")
    split = repo.mtimes("data")["split.json"]
    model = (repo.root / "models/dt/model.pt").read_bytes()
    repo.set_param("dt.num_steps", 30)
    ran = repo.repro(expect=ALL)
    assert {"train_dt", "eval_dt"} <= ran and not ran & (ALL3 - {"check_params"}), ran
    assert ran == DT_AND_AFTER | {"check_params"}
    assert repo.mtimes("data/sources") == sources, "source agents were retrained"
    assert repo.mtimes("data/dataset") == dataset, "the dataset was rebuilt"
    assert repo.mtimes("data")["split.json"] == split
    assert (repo.root / "models/dt/model.pt").read_bytes() != model
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]
    assert lock["train_dt"]["params"]["params.yaml"]["dt"]["num_steps"] == 30
    assert len(list((repo.root / "logs/train_dt").glob("events.out.tfevents.*"))) == 1   # this run's only


# --- 3. an experiment ----------------------------------------------------------------------

def test_exp_run_and_diff(repo: Repo):
    head = repo.git("rev-parse", "HEAD").strip()
    base_metrics = repo.json("metrics/eval.json")
    out = repo.dvc("exp", "run", "-n", "seq8", "-S", "dt.seq_len=8")
    assert ran_stages(out) == DT_AND_AFTER | {"check_params"} and {"train_dt", "eval_dt"} <= DT_AND_AFTER, out
    exp_metrics = repo.json("metrics/eval.json")       # `dvc exp run` applies its results to the workspace
    assert repo.params["dt"]["seq_len"] == 8

    # `dvc exp show --json`: the baseline commit with the experiment under it
    shown = json.loads(repo.dvc_stdout("exp", "show", "--json"))
    baseline = next(e for e in shown if e["rev"] == head)
    exps = {x["name"]: x["revs"][0] for x in baseline["experiments"] or []}
    assert "seq8" in exps, f"experiment seq8 not under the baseline: {list(exps)}"
    bdata, edata = baseline["data"], exps["seq8"]["data"]
    assert bdata["params"]["params.yaml"]["data"]["dt"]["seq_len"] == 16
    assert edata["params"]["params.yaml"]["data"]["dt"]["seq_len"] == 8
    for d, m in ((bdata, base_metrics), (edata, exp_metrics)):   # DVC leaves out null values
        assert _flat(d["metrics"]["metrics/eval.json"]["data"]) == {k: v for k, v in _flat(m).items() if v is not None}

    # `dvc exp diff HEAD seq8`: params and metrics, old and new side by side (--all: also the
    # unchanged ones, which tiny runs may well produce)
    diff = json.loads(repo.dvc_stdout("exp", "diff", "HEAD", "seq8", "--all", "--json"))
    p = diff["params"]["params.yaml"]["dt.seq_len"]
    assert (p["old"], p["new"]) == (16, 8)
    flat_b, flat_e = _flat(base_metrics), _flat(exp_metrics)
    md = diff["metrics"]["metrics/eval.json"]
    held = {k: v for k, v in md.items() if k.startswith("held_out.")}
    assert HELDOUT_KEY in held and len(held) >= 5
    for k, v in held.items():
        assert (v["old"], v["new"]) == (flat_b[k], flat_e[k]), k

    # `dvc metrics diff HEAD seq8` says the same
    mdiff = json.loads(repo.dvc_stdout("metrics", "diff", "HEAD", "seq8", "--all", "--json"))
    v = mdiff["metrics/eval.json"][HELDOUT_KEY]
    assert (v["old"], v["new"]) == (flat_b[HELDOUT_KEY], flat_e[HELDOUT_KEY])
    table = repo.dvc_stdout("metrics", "diff", "HEAD", "seq8", "--all", "--md")
    assert HELDOUT_KEY in table and "seq8" in table


# --- 4. and 5. push, clone, pull ------------------------------------------------------------

def _push_clone_pull(repo: Repo, clone_dir: Path, clone_env: dict | None = None) -> Repo:
    """`dvc push`, commit the remote config, `git clone`, plain `dvc pull` in the clone: every
    output comes back byte for byte, `dvc status` is up to date and `dvc repro` runs nothing."""
    assert "files pushed" in repo.dvc("push")
    repo.git("add", ".dvc/config")
    repo.git("commit", "-q", "-m", "DVC remote")
    originals = repo.hashes("data/sources", "history.parquet")
    assert len(originals) == 24            # every goal of the 5x5 room, both shards
    subprocess.run(["git", "clone", "-q", str(repo.root), str(clone_dir)], check=True, capture_output=True)
    clone = Repo(clone_dir)
    for k in [k for k in clone.env if k.startswith("AWS_")]:
        del clone.env[k]              # no AWS settings of this machine: only what the test gives
    clone.env.update(clone_env or {})
    assert not list(clone_dir.glob("data/sources/*/goal_*")), "outputs came with git"  # (only DVC's .gitignore)
    clone.dvc("pull")                 # plain: no target, no flag (exit status checked by Repo.dvc)
    assert "up to date" in clone.dvc("status")
    assert clone.hashes("data/sources", "history.parquet") == originals
    for d in ("data", "models", "videos", "logs", "metrics"):
        assert clone.hashes(d) == repo.hashes(d), d
    assert clone.repro(expect=ALL) == set()
    return clone


def test_local_remote_push_clone_pull(repo: Repo, tmp_path: Path):
    remote = tmp_path / "remote"
    remote.mkdir()
    repo.dvc("remote", "add", "-d", "local", str(remote))
    clone = _push_clone_pull(repo, tmp_path / "clone")
    listed = clone.dvc("remote", "list")
    assert "local" in listed and str(remote) in listed and "(default)" in listed   # came with .dvc/config


@pytest.fixture
def s3_server(tmp_path: Path):
    """moto's S3 server on a free port of 127.0.0.1, with a bucket; killed afterwards."""
    try:
        import boto3
        import dvc_s3  # noqa: F401
        import flask  # noqa: F401   (moto[server])
        import moto  # noqa: F401
    except ImportError as e:
        pytest.skip(f"S3 round trip needs dvc-s3 and moto[server] (pip install -e '.[test]'): {e}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, f"moto server exited: {(tmp_path / 'moto.log').read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "moto server did not start in 60 s"
                time.sleep(0.2)
        creds = {"aws_access_key_id": "adlib-test-key", "aws_secret_access_key": "adlib-test-secret"}
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **creds)
        s3.create_bucket(Bucket="adlib-dvc")
        yield {"url": url, "bucket": "adlib-dvc", "client": s3, **creds}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# no AWS settings of this machine may leak in: credentials come from .dvc/config.local or env
NO_AWS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
          "AWS_EC2_METADATA_DISABLED": "true"}


def _s3_missing() -> str | None:
    import importlib.util

    def gone(m: str) -> bool:
        try:
            return importlib.util.find_spec(m) is None
        except (ImportError, ValueError):
            return True

    absent = [m for m in ("dvc_s3", "moto", "boto3", "flask") if gone(m)]
    return f"S3 round trip needs dvc-s3 and moto[server] (pip install -e '.[test]'): no {absent}" if absent else None


@pytest.mark.skipif(_s3_missing() is not None, reason=str(_s3_missing()))   # before the pipeline is built
def test_s3_remote_push_clone_pull(s3_server: dict, repo: Repo, tmp_path: Path):
    for k in [k for k in repo.env if k.startswith("AWS_")]:
        del repo.env[k]
    repo.env.update(NO_AWS)
    key, secret = s3_server["aws_access_key_id"], s3_server["aws_secret_access_key"]
    repo.dvc("remote", "add", "-d", "s3store", f"s3://{s3_server['bucket']}/adlib")
    repo.dvc("remote", "modify", "s3store", "endpointurl", s3_server["url"])
    repo.dvc("remote", "modify", "--local", "s3store", "access_key_id", key)
    repo.dvc("remote", "modify", "--local", "s3store", "secret_access_key", secret)
    config = (repo.root / ".dvc/config").read_text()
    assert s3_server["url"] in config
    for secretish in (key, secret, "access_key_id", "secret_access_key"):
        assert secretish not in config, f".dvc/config (tracked by git) holds {secretish!r}"
    assert secret in (repo.root / ".dvc/config.local").read_text()

    # `dvc push` through the S3 API; a clone given the credentials as env vars pulls it all
    clone_env = {**NO_AWS, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    _push_clone_pull(repo, tmp_path / "clone", clone_env)
    listed = s3_server["client"].list_objects_v2(Bucket=s3_server["bucket"], Prefix="adlib/")
    assert listed["KeyCount"] > 24, "dvc push wrote (almost) nothing to the bucket"

    # the credentials did not travel with the clone: without them a fresh clone cannot pull
    subprocess.run(["git", "clone", "-q", str(repo.root), str(tmp_path / "clone2")], check=True, capture_output=True)
    bare = Repo(tmp_path / "clone2")
    assert not (bare.root / ".dvc/config.local").exists()
    for k in [k for k in bare.env if k.startswith("AWS_")]:
        del bare.env[k]
    bare.env.update(NO_AWS)
    p = bare.run_raw(sys.executable, "-m", "dvc", "pull", timeout=120)
    assert p.returncode != 0 and "credentials" in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    assert not list(bare.root.glob("data/sources/*/goal_*/history.parquet"))


# --- 6. the fan-in guard -------------------------------------------------------------------

def test_missing_shard_fails_build_history_dataset(repo: Repo):
    split = repo.json("data/split.json")
    lock = (repo.root / "dvc.lock").read_bytes()
    shutil.rmtree(repo.root / "data/sources/shard_1")      # as a partial `dvc pull --allow-missing` leaves it
    p = repo.run_raw(sys.executable, "-m", "dvc", "repro", "--single-item", "build_history_dataset")
    out = p.stdout + p.stderr
    assert p.returncode != 0, f"build_history_dataset ran on half the sources:\n{out}"
    missing = sorted(g for g in split["train"] if g % 2 == 1)     # shard 1 holds the odd goals
    assert missing
    assert f"histories of training goals {missing} are missing" in out, out
    assert not (repo.root / "data/dataset/histories.parquet").exists(), "a dataset was written anyway"
    assert (repo.root / "dvc.lock").read_bytes() == lock, "dvc.lock was updated by a failed stage"

    # a plain `dvc repro` puts the shard back from DVC's run cache (no training) and rebuilds
    out = repo.dvc("repro")
    assert not ran_stages(out) & {*SHARDS}, f"a source agent was retrained:\n{out}"
    assert "Stage 'train_source_agents@1' is cached - skipping run, checking out outputs" in out, out
    assert (repo.root / "data/dataset/histories.parquet").is_file()
    assert "up to date" in repo.dvc("status")
