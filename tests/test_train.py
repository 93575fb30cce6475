"""Training the AD transformer: lr schedule, checkpoints, exact resume after a kill,
TensorBoard read-back, and DDP (torchrun on CPU; gradient equality with gloo)."""

from __future__ import annotations

import dataclasses
import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_dt import (
    ENV,
    REPO,
    run_stage,
    stage_env,
    tiny_dt,
    tiny_pipeline,
    tiny_rt,
    train_cmd,
    windows_batch,
    write_params,
)

from adlib.config import DTConfig
from adlib.io import load_torch
from adlib.model import ModelConfig, load_model
from adlib.train import build_model, lr_at, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> dict:
    return tiny_pipeline(tmp_path_factory.mktemp("pipe"))


# ---------------------------------------------------------------- (a) lr schedule

def test_lr_warmup_peak_and_cosine_floor():
    cfg = DTConfig(lr=1e-3, min_lr=2e-5, warmup_steps=10, num_steps=110)
    warm = [lr_at(s, cfg) for s in range(10)]
    np.testing.assert_allclose(warm, [1e-3 * (s + 1) / 10 for s in range(10)])   # linear
    assert np.all(np.diff(warm) > 0)
    assert lr_at(9, cfg) == pytest.approx(1e-3)          # peak at the end of the warm-up
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert max(lr_at(s, cfg) for s in range(200)) == pytest.approx(1e-3)
    assert lr_at(110, cfg) == pytest.approx(2e-5)         # the cosine reaches min_lr at num_steps
    assert lr_at(500, cfg) == pytest.approx(2e-5)         # and stays there
    mid = 10 + 50
    assert lr_at(mid, cfg) == pytest.approx(2e-5 + 0.5 * (1e-3 - 2e-5))   # half-way: the mean
    after = [lr_at(s, cfg) for s in range(10, 111)]
    assert np.all(np.diff(after) < 0)                     # strictly decreasing after the warm-up
    assert all(2e-5 <= v <= 1e-3 for v in after)
    assert lr_at(109, cfg) > 2e-5                         # the last training step is just above the floor


def test_lr_without_warmup_starts_at_peak():
    cfg = DTConfig(lr=5e-4, min_lr=0.0, warmup_steps=0, num_steps=4)
    got = [lr_at(s, cfg) for s in range(5)]
    want = [0.5 * 5e-4 * (1 + math.cos(math.pi * s / 4)) for s in range(5)]
    np.testing.assert_allclose(got, want, atol=1e-12)


# ---------------------------------------------------------------- one in-process training run

NUM_STEPS, EVAL_STEP = 12, 4


@pytest.fixture(scope="module")
def trained(pipe, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("trained")
    dt = tiny_dt(num_steps=NUM_STEPS)
    summary = train(ENV, dt, pipe["split"], pipe["data_dir"], out / "model", resume_dir=out / "resume",
                    log_dir=out / "tb", rt=tiny_rt(eval_step=EVAL_STEP, eval_episodes=3, eval_train_goals=2))
    return {"dt": dt, "out": out / "model", "summary": summary, "resume": out / "resume", "tb": out / "tb"}


def test_train_writes_model_and_removes_resume_checkpoint(trained):
    assert (trained["out"] / "model.pt").exists()
    assert not (trained["resume"] / "last.pt").exists()   # a finished run leaves no resume checkpoint
    s = trained["summary"]
    assert s["steps"] == NUM_STEPS and s["params"] > 0
    assert [e["step"] for e in s["evals"]] == [4, 8, 12]


def test_checkpoint_round_trip_rebuilds_identical_model(trained, pipe):
    path = trained["out"] / "model.pt"
    raw = torch.load(path, map_location="cpu", weights_only=True)   # plain tensors and data only
    assert raw["step"] == NUM_STEPS
    assert raw["train_goals"] == pipe["split"]["train"] and raw["held_out_goals"] == pipe["split"]["held_out"]
    dt = trained["dt"]
    assert raw["model_config"] == ModelConfig.from_dt(dt, ENV.grid_size, 5, ENV.max_episode_steps).to_dict()

    model, ckpt = load_model(path)
    assert not model.training
    # the same weights in a model built from params (not from the checkpoint's config)
    ref = build_model(dt, ENV)
    ref.load_state_dict(raw["model"])
    ref.eval()
    f = {k: torch.from_numpy(v) for k, v in windows_batch(pipe, 3, dt.seq_len, seed=5).items()}
    with torch.no_grad():
        a, _ = model(f)
        b, _ = ref(f)
        torch.manual_seed(dt.seed)
        untrained, _ = build_model(dt, ENV).eval()(f)
    assert torch.equal(a, b)
    assert (a - untrained).abs().max() > 1e-3   # the checkpoint holds trained weights, not the init


def test_checkpoint_with_mismatched_config_raises_naming_file(trained, tmp_path):
    raw = torch.load(trained["out"] / "model.pt", map_location="cpu", weights_only=True)
    bad = dict(raw, model_config={**raw["model_config"], "embedding_dim": 32, "num_heads": 4})
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    with pytest.raises(ValueError, match=str(path)):
        load_model(path)
    deeper = dict(raw, model_config={**raw["model_config"], "num_layers": raw["model_config"]["num_layers"] + 1})
    torch.save(deeper, tmp_path / "deeper.pt")   # weights lack a block: missing keys, not a shape error
    with pytest.raises(ValueError, match=str(tmp_path / "deeper.pt")):
        load_model(tmp_path / "deeper.pt")
    no_cfg = {k: v for k, v in raw.items() if k != "model_config"}
    torch.save(no_cfg, tmp_path / "nocfg.pt")
    with pytest.raises(ValueError, match=str(tmp_path / "nocfg.pt")):
        load_model(tmp_path / "nocfg.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ValueError, match=str(tmp_path / "junk.pt")):
        load_model(tmp_path / "junk.pt")


# ---------------------------------------------------------------- (d) TensorBoard read-back

def test_tensorboard_tags_and_steps(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained["tb"]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("losses/train_loss", "losses/accuracy", "losses/grad_norm", "charts/lr",
                "eval_held_out/success_last10", "eval_held_out/return_first10",
                "eval_train/success_last10", "eval_train/return_last10"):
        assert tag in tags, tag
    loss_steps = [e.step for e in acc.Scalars("losses/train_loss")]
    assert loss_steps == [0, 10, NUM_STEPS - 1]           # training steps, increasing
    lr = {e.step: e.value for e in acc.Scalars("charts/lr")}
    for s, v in lr.items():
        assert v == pytest.approx(lr_at(s, trained["dt"]), rel=1e-6)
    for group, key in (("eval_held_out", "held_out"), ("eval_train", "train")):
        for name in ("success_first10", "success_last10", "return_first10", "return_last10"):
            events = acc.Scalars(f"{group}/{name}")
            assert [e.step for e in events] == [4, 8, 12]   # multiples of eval_step, not garbled
            want = [e[key][name] for e in trained["summary"]["evals"]]
            np.testing.assert_allclose([e.value for e in events], want, rtol=1e-6)


# ---------------------------------------------------------------- (c) resume after SIGKILL

def _final_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_torch(path)["model"]


# train_dt that SIGKILLs itself right after writing its second resume checkpoint: a kill point
# the code itself signals, whatever the machine's speed
KILL_AFTER_CHECKPOINT = r"""
import os, runpy, signal, sys
import adlib.train as T
real, n = T.save_torch, [0]
def save_torch(path, obj):
    real(path, obj)
    if os.path.basename(str(path)) == "last.pt":
        n[0] += 1
        if n[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
T.save_torch = save_torch
sys.argv = ["stages.train_dt", *sys.argv[1:]]
runpy.run_module("stages.train_dt", run_name="__main__")
"""


def test_resume_after_kill_equals_uninterrupted_run_with_dropout_on(pipe, tmp_path):
    """Windows and dropout masks are drawn from the step, so a resumed run is the same run."""
    dt = tiny_dt(num_steps=30, batch_size=4, seq_len=16, attention_dropout=0.2, residual_dropout=0.2,
                 embedding_dropout=0.2)
    rt = tiny_rt(checkpoint_every=10)
    params = write_params(tmp_path / "params.yaml", dt, rt=rt)

    ref = run_stage(train_cmd(params, pipe, tmp_path / "ref", tmp_path / "ref_resume"))
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert "resuming" not in ref.stderr

    out, resume = tmp_path / "run", tmp_path / "run_resume"
    killed = run_stage(["-c", KILL_AFTER_CHECKPOINT, *train_cmd(params, pipe, out, resume)[2:]])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "model.pt").exists()
    assert int(load_torch(resume / "last.pt")["step"]) == 20

    again = run_stage(train_cmd(params, pipe, out, resume))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {resume / 'last.pt'} at step 20" in again.stderr
    assert not (resume / "last.pt").exists()

    want, got = _final_weights(tmp_path / "ref" / "model.pt"), _final_weights(out / "model.pt")
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    # dropout was really on: without it the weights differ
    nodrop = dataclasses.replace(dt, attention_dropout=0.0, residual_dropout=0.0, embedding_dropout=0.0)
    train(ENV, nodrop, pipe["split"], pipe["data_dir"], tmp_path / "nodrop", rt=rt)
    assert any(not torch.equal(want[k], v) for k, v in _final_weights(tmp_path / "nodrop" / "model.pt").items())


def test_stream_start_frac_changes_what_is_trained_on(pipe, tmp_path):
    """dt.stream_start_frac is used: all windows at stream starts is another model than none."""
    for frac in (0.0, 1.0):
        train(ENV, tiny_dt(num_steps=3, stream_start_frac=frac), pipe["split"], pipe["data_dir"],
              tmp_path / str(frac), rt=tiny_rt())
    a, b = (_final_weights(tmp_path / f / "model.pt") for f in ("0.0", "1.0"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_midstream_search_skip_drops_only_mid_stream_windows_positions(pipe, tmp_path):
    """dt.midstream_search: 'skip' trains another model than 'window' when windows start mid-stream,
    and the same model, bit for bit, when every window starts at a stream's first transition."""
    def weights(frac: float, how: str) -> dict[str, torch.Tensor]:
        out = tmp_path / f"{frac}_{how}"
        train(ENV, tiny_dt(num_steps=3, target="explorer", stream_start_frac=frac, midstream_search=how),
              pipe["split"], pipe["data_dir"], out, rt=tiny_rt())
        return _final_weights(out / "model.pt")

    a, b = weights(0.0, "window"), weights(0.0, "skip")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    a, b = weights(1.0, "window"), weights(1.0, "skip")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_checkpoint_of_other_params_is_ignored(pipe, tmp_path):
    """A stale last.pt (other params) must not be resumed from."""
    dt, rt = tiny_dt(num_steps=4), tiny_rt(checkpoint_every=2)
    resume = tmp_path / "resume"
    resume.mkdir()
    torch.manual_seed(0)
    other = build_model(tiny_dt(), ENV)
    torch.save({"model": other.state_dict(), "optimizer": {}, "step": 2, "fingerprint": "0" * 16}, resume / "last.pt")
    train(ENV, dt, pipe["split"], pipe["data_dir"], tmp_path / "a", resume_dir=resume, rt=rt)
    train(ENV, dt, pipe["split"], pipe["data_dir"], tmp_path / "b", resume_dir=None, rt=rt)
    a, b = _final_weights(tmp_path / "a" / "model.pt"), _final_weights(tmp_path / "b" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- (e) DDP

def test_torchrun_two_processes_train_the_same_model_as_one_process(pipe, tmp_path):
    """DDP through the project's own training code: `torchrun --nproc_per_node 2` and a single
    process, same params, same global batch (every rank takes its slice of the batch drawn
    for the step), give the same weights up to float summation order."""
    dt = tiny_dt(num_steps=4, batch_size=8)
    params = write_params(tmp_path / "params.yaml", dt, rt=tiny_rt(eval_step=2, eval_episodes=2, checkpoint_every=2))
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "--standalone",
           *train_cmd(params, pipe, tmp_path / "out", tmp_path / "resume"), "--tensorboard", str(tmp_path / "tb")]
    r = subprocess.run(cmd, cwd=REPO, env=stage_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stderr
    model, ckpt = load_model(tmp_path / "out" / "model.pt")
    assert ckpt["step"] == 4
    assert list((tmp_path / "tb").iterdir())                      # rank 0 logs
    train(ENV, dt, pipe["split"], pipe["data_dir"], tmp_path / "one", rt=tiny_rt())
    one = load_torch(tmp_path / "one" / "model.pt")["model"]
    ddp = load_torch(tmp_path / "out" / "model.pt")["model"]
    torch.manual_seed(dt.seed)
    init = build_model(dt, ENV).state_dict()                       # what train() starts from
    for k in one:
        torch.testing.assert_close(ddp[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    assert any(not torch.equal(one[k], init[k]) for k in one)      # the models did train
    # and half the batch on one process is another model: the ranks' gradients were combined
    train(ENV, dataclasses.replace(dt, batch_size=4), pipe["split"], pipe["data_dir"], tmp_path / "half", rt=tiny_rt())
    half = load_torch(tmp_path / "half" / "model.pt")["model"]
    assert any((half[k] - ddp[k]).abs().max() > 1e-4 for k in half)
