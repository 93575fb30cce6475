"""Training the AD transformer on windows of learning histories (single process or torchrun/DDP)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.tensorboard import SummaryWriter

from adlib.config import DTConfig, DTRuntime, EnvConfig, ParamError, to_dict
from adlib.dataset import HistoryDataset
from adlib.envs import darkroom as dr
from adlib.evaluate import play
from adlib.io import fingerprint, load_resume, save_torch
from adlib.logs import bar, get_logger, pick_device
from adlib.model import ADTransformer, ModelConfig
from adlib.tasks import spread

log = get_logger("train_dt")


def lr_at(step: int, cfg: DTConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr`` at ``num_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.num_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def to_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, dtype=torch.long, non_blocking=True)
            for k, v in batch.items()}


def make_optimizer(model: torch.nn.Module, cfg: DTConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay only on matrices (not on biases, norms or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def build_model(dt: DTConfig, env_cfg: EnvConfig) -> ADTransformer:
    return ADTransformer(ModelConfig.from_dt(dt, env_cfg.grid_size, dr.N_ACTIONS, env_cfg.max_episode_steps))


def evaluate_in_training(model: ADTransformer, env_cfg: EnvConfig, goals: list[int], episodes: int,
                         device: torch.device, seed: int) -> dict[str, float]:
    # sampled actions: AD imitates a stochastic learner; greedy play tends to loop (both are
    # reported by eval_dt)
    res = play(model, env_cfg, goals, seeds=1, episodes=episodes, greedy=False, seed=seed, device=device)
    k = min(10, episodes)
    return {"return_first10": float(res.returns[:, :k].mean()), "return_last10": float(res.returns[:, -k:].mean()),
            "success_first10": float(res.success[:, :k].mean()), "success_last10": float(res.success[:, -k:].mean())}


def train(env_cfg: EnvConfig, dt: DTConfig, split: dict, data_dir: str | Path, out_dir: str | Path,
          resume_dir: str | Path | None = None, log_dir: str | Path | None = None, rt: DTRuntime = DTRuntime(),
          eval_train_goals: int = 4) -> dict:
    """Train; write ``model.pt`` into ``out_dir`` (and TensorBoard events into ``log_dir``);
    return a summary. ``model.pt`` does not depend on ``rt``.

    Under ``torchrun`` (WORLD_SIZE > 1) every rank trains a DDP replica on its share of the
    global batch; rank 0 evaluates, logs and writes files.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    if distributed:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if pick_device(rt.device, "runtime.dt.device").type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
            dist.init_process_group("nccl")
        else:
            device = torch.device("cpu")
            dist.init_process_group("gloo")
        rank = dist.get_rank()
    else:
        rank, device = 0, pick_device(rt.device, "runtime.dt.device")
    if dt.batch_size % world:
        raise ParamError(f"dt.batch_size = {dt.batch_size}: must be divisible by the number of processes ({world})")
    if rt.threads > 0:
        torch.set_num_threads(rt.threads)
    main = rank == 0
    out_dir = Path(out_dir)

    data = HistoryDataset(data_dir, env_cfg, held_out=split["test"], seq_len=dt.seq_len)
    torch.manual_seed(dt.seed)
    model = build_model(dt, env_cfg).to(device)
    opt = make_optimizer(model, dt)
    fp = fingerprint(to_dict(dt), to_dict(env_cfg), data.meta, world)
    start_step = 0
    ckpt_path = Path(resume_dir) / "last.pt" if resume_dir else None
    ckpt, note = load_resume(ckpt_path, fp, device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start_step = int(ckpt["step"])
        note += f" at step {start_step}"
    if main and note:
        log.info(note)
    net = DDP(model) if distributed else model
    amp = rt.amp and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else contextlib.nullcontext

    per_rank = dt.batch_size // world
    writer = None
    if main and log_dir is not None:
        if start_step == 0:   # one run per folder: never events of an older run or config beside these
            shutil.rmtree(log_dir, ignore_errors=True)
        writer = SummaryWriter(str(log_dir), purge_step=start_step)
    if writer is not None and start_step == 0:
        writer.add_text("hparams", "\n".join(f"- dt.{k}: {v}" for k, v in to_dict(dt).items()), 0)
    if main:
        log.info(f"{model.num_params():,} parameters, layout {dt.layout}, {len(data):,} transitions, "
                 f"{world} process(es), device {device}")
    eval_goals = list(split["test"])
    train_goals = spread(list(split["train"]), eval_train_goals)
    history: list[dict] = []
    t0, seen = time.time(), 0
    pbar = bar(dt.num_steps, "train_dt", unit="step", initial=start_step) if main else None
    model.train()
    for step in range(start_step, dt.num_steps):
        lr = lr_at(step, dt)
        for g in opt.param_groups:
            g["lr"] = lr
        # the global batch depends on (seed, step) only: resumable, and the same batch whatever
        # the number of DDP ranks (each takes its slice), so the gradient is the same too
        gen = np.random.default_rng([dt.seed, step])
        rows = data.sample_starts(gen, dt.batch_size, dt.seq_len, dt.stream_start_frac)
        rows = rows[rank * per_rank:(rank + 1) * per_rank]
        torch.manual_seed(dt.seed * 1_000_003 + step * 101 + rank)  # dropout masks, resumable too
        batch = to_tensors(data.windows(rows, dt.seq_len), device)
        with autocast():
            logits, loss = net(batch, targets=batch["action"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), dt.clip_grad_norm)
        opt.step()
        seen += per_rank * dt.seq_len * world
        if main:
            acc = (logits.argmax(-1) == batch["action"]).float().mean().item()
            pbar.update(1)
            pbar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}", refresh=False)
            if writer is not None and (step % 10 == 0 or step == dt.num_steps - 1):
                writer.add_scalar("losses/train_loss", loss.item(), step)
                writer.add_scalar("losses/accuracy", acc, step)
                writer.add_scalar("losses/grad_norm", float(grad_norm), step)
                writer.add_scalar("charts/lr", lr, step)
                writer.add_scalar("perf/transitions_per_s", seen / max(1e-9, time.time() - t0), step)
        last = step == dt.num_steps - 1
        if main and rt.eval_step and ((step + 1) % rt.eval_step == 0 or last):
            model.eval()
            ev = evaluate_in_training(model, env_cfg, eval_goals, rt.eval_episodes, device, dt.seed)
            tr = evaluate_in_training(model, env_cfg, train_goals, rt.eval_episodes, device, dt.seed)
            model.train()
            if writer is not None:
                for group, res in (("eval_heldout", ev), ("eval_train", tr)):
                    for k, v in res.items():
                        writer.add_scalar(f"{group}/{k}", v, step + 1)
            history.append({"step": step + 1, "heldout": ev, "train": tr})
            log.info(f"step {step + 1}: held-out success first10 {ev['success_first10']:.2f} "
                     f"last10 {ev['success_last10']:.2f} | train goals last10 {tr['success_last10']:.2f}")
        if main and ckpt_path is not None and ((step + 1) % rt.checkpoint_every == 0) and not last:
            save_torch(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "step": step + 1, "fingerprint": fp})
    if pbar is not None:
        pbar.close()
    summary = {"steps": dt.num_steps, "params": model.num_params(),
               "wall_s": time.time() - t0, "transitions_per_s": seen / max(1e-9, time.time() - t0),
               "evals": history}
    if main:
        if writer is not None:
            writer.close()
        save_torch(out_dir / "model.pt", {
            "model": model.state_dict(), "model_config": model.cfg.to_dict(), "dt": to_dict(dt),
            "env": to_dict(env_cfg), "step": dt.num_steps, "train_goals": split["train"],
            "held_out_goals": split["test"], "dataset": {k: data.meta[k] for k in ("transitions", "streams")},
        })
        if ckpt_path is not None:
            ckpt_path.unlink(missing_ok=True)
        log.info(f"done: {dt.num_steps} steps in {summary['wall_s']:.0f}s "
                 f"({summary['transitions_per_s']:,.0f} transitions/s) -> {out_dir / 'model.pt'}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return summary
