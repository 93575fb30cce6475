"""Training the AD transformer on windows of learning histories (single process or torchrun/DDP)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.tensorboard import SummaryWriter

from adlib import rng
from adlib.config import DTConfig, DTRuntime, EnvConfig, ParamError, to_dict
from adlib.dataset import DATA_FILE, HistoryDataset
from adlib.device import pick_device
from adlib.envs import darkroom as dr
from adlib.incontext import play_many
from adlib.io import file_sha256, fingerprint, load_resume, save_torch
from adlib.logs import bar, get_logger
from adlib.model import ADTransformer, ModelConfig
from adlib.rollout import Runs
from adlib.targets import action_mask, midstream_search_mask, target_probs
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
    return ADTransformer(ModelConfig.from_dt(dt, env_cfg.grid_size, dr.N_ACTIONS, env_cfg.max_episode_steps,
                                             key_flag=env_cfg.kind == "keydoor"))


def evaluate_in_training(model: ADTransformer, env_cfg: EnvConfig, groups: list[list[int]], episodes: int,
                         device: torch.device, seed: int) -> list[dict[str, float]]:
    """Per group of goals: first/last-10 return and success of the current model, from an empty
    context (sampled actions: AD imitates a stochastic learner; eval_dt reports greedy decoding
    as well). The groups play in one batch of the model, each with its own draws."""
    k = min(10, episodes)
    return [{"return_first10": float(res.returns[:, :k].mean()), "return_last10": float(res.returns[:, -k:].mean()),
             "success_first10": float(res.success[:, :k].mean()), "success_last10": float(res.success[:, -k:].mean())}
            for res in play_many(model, env_cfg, [Runs(goals, 1, greedy=False, seed=seed) for goals in groups],
                                 episodes, device)]


@dataclass(frozen=True)
class Procs:
    """Where this process trains: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_processes(rt: DTRuntime, batch_size: int) -> Procs:
    """One process, or (under ``torchrun``, WORLD_SIZE > 1) a DDP process group: NCCL with one
    GPU per process, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % world:
        raise ParamError(f"dt.batch_size = {batch_size}: must be divisible by the number of processes ({world})")
    device = pick_device(rt.device, "runtime.dt.device")
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if rt.threads > 0:
        torch.set_num_threads(rt.threads)
    return Procs(dist.get_rank() if world > 1 else 0, world, device)


def train_step(net: torch.nn.Module, opt: torch.optim.Optimizer, data: HistoryDataset, dt: DTConfig, step: int,
               procs: Procs, autocast: Callable, env_cfg: EnvConfig) -> dict[str, float]:
    """One optimiser step on this process's slice of the step's global batch.

    The global batch depends on (seed, step) only: a resumed run draws the same batches, and
    any number of DDP processes splits the same batch (so the gradient is the same). Dropout
    masks are seeded by (seed, step, rank) for the same reason."""
    for g in opt.param_groups:
        g["lr"] = lr_at(step, dt)
    per = dt.batch_size // procs.world
    rows = data.sample_starts(np.random.default_rng([dt.seed, step]), dt.batch_size, dt.seq_len, dt.stream_start_frac)
    torch.manual_seed(rng.step_seed(dt.seed, step, procs.rank))
    batch = to_tensors(data.windows(rows[procs.rank * per:(procs.rank + 1) * per], dt.seq_len), procs.device)
    trained = None                                                                      # [B, L]; None: every position
    if dt.target == "source":   # plain imitation: the stream's actions are the targets
        targets, mask = batch["action"], None
    else:
        mask = action_mask(dt.target, batch, env_cfg, dt.ties)                          # [B, L, A]
        targets = target_probs(mask)
        if dt.midstream_search == "skip":   # zero targets: no loss there (still counted in the mean)
            trained = ~midstream_search_mask(batch, env_cfg)
            targets = targets * trained[..., None]
    with autocast():
        logits, loss = net(batch, targets=targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), dt.clip_grad_norm)
    opt.step()
    pred = logits.argmax(-1)
    hit = pred == batch["action"] if mask is None else mask.gather(-1, pred.unsqueeze(-1)).squeeze(-1)
    hit = hit if trained is None else hit[trained]                                      # the trained positions
    return {"loss": loss.item(), "accuracy": hit.float().mean().item(),
            "grad_norm": float(grad_norm), "lr": lr_at(step, dt)}


def model_checkpoint(model: ADTransformer, dt: DTConfig, env_cfg: EnvConfig, split: dict, meta: dict,
                     data_sha256: str) -> dict:
    """The self-describing model.pt: weights, the config that rebuilds the model, and what it
    was trained for and on (the goals of its data, the dataset's size and the sha256 of its file)."""
    return {"model": model.state_dict(), "model_config": model.cfg.to_dict(), "dt": to_dict(dt),
            "env": to_dict(env_cfg), "step": dt.num_steps, "train_goals": meta["train_goals"],
            "held_out_goals": split["held_out"],
            "dataset": {**{k: meta[k] for k in ("transitions", "streams")}, "sha256": data_sha256}}


@dataclass
class Run:
    """A training run as it starts: the model (fresh, or resumed from ``ckpt_path``), its
    optimiser, the module that trains (DDP-wrapped under torchrun) and the first step."""

    model: ADTransformer
    opt: torch.optim.Optimizer
    net: torch.nn.Module
    start: int
    ckpt_path: Path | None
    fingerprint: str
    note: str


def start_run(env_cfg: EnvConfig, dt: DTConfig, data: HistoryDataset, procs: Procs,
              resume_dir: str | Path | None) -> Run:
    torch.manual_seed(dt.seed)
    model = build_model(dt, env_cfg).to(procs.device)
    opt = make_optimizer(model, dt)
    fp = fingerprint(to_dict(dt), to_dict(env_cfg), data.meta, procs.world)
    ckpt_path = Path(resume_dir) / "last.pt" if resume_dir else None
    ckpt, note = load_resume(ckpt_path, fp, procs.device)
    start = int(ckpt["step"]) if ckpt is not None else 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        note += f" at step {start}"
    return Run(model, opt, DDP(model) if procs.world > 1 else model, start, ckpt_path, fp, note)


def train(env_cfg: EnvConfig, dt: DTConfig, split: dict, data_dir: str | Path, out_dir: str | Path,
          resume_dir: str | Path | None = None, log_dir: str | Path | None = None, rt: DTRuntime = DTRuntime()
          ) -> dict:
    """Train; write ``model.pt`` into ``out_dir`` (and TensorBoard events into ``log_dir``);
    return a summary. ``model.pt`` does not depend on ``rt``.

    Under ``torchrun`` (WORLD_SIZE > 1) every rank trains a DDP replica on its slice of the
    global batch; rank 0 evaluates, logs and writes files.
    """
    procs = init_processes(rt, dt.batch_size)
    data = HistoryDataset(data_dir, env_cfg, held_out=split["held_out"], seq_len=dt.seq_len)
    run = start_run(env_cfg, dt, data, procs, resume_dir)
    model, start = run.model, run.start
    amp = rt.amp and procs.device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    logger = TrainLog(log_dir if procs.main else None, start, dt, env_cfg, split, rt, procs.device)
    if procs.main:
        if run.note:
            log.info(run.note)
        log.info(f"{model.num_params():,} parameters, layout {dt.layout}, {len(data):,} transitions, "
                 f"{procs.world} process(es), device {procs.device}")
    t0 = time.time()
    pbar = bar(dt.num_steps, "train_dt", unit="step", initial=start) if procs.main else None
    model.train()
    for step in range(start, dt.num_steps):
        stats = train_step(run.net, run.opt, data, dt, step, procs, autocast, env_cfg)
        if not procs.main:
            continue
        pbar.update(1)
        pbar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['accuracy']:.3f}", refresh=False)
        logger.scalars(step, stats, (step + 1 - start) * dt.batch_size * dt.seq_len / max(1e-9, time.time() - t0))
        if logger.eval_due(step):
            logger.evaluate(step, model)
        if run.ckpt_path is not None and (step + 1) % rt.checkpoint_every == 0 and step + 1 < dt.num_steps:
            save_torch(run.ckpt_path, {"model": model.state_dict(), "optimizer": run.opt.state_dict(),
                                       "step": step + 1, "fingerprint": run.fingerprint})
    wall = time.time() - t0
    summary = {"steps": dt.num_steps, "params": model.num_params(), "wall_s": wall,
               "transitions_per_s": (dt.num_steps - start) * dt.batch_size * dt.seq_len / max(1e-9, wall),
               "evals": logger.evals}
    if procs.main:
        pbar.close()
        logger.close()
        save_torch(Path(out_dir) / "model.pt", model_checkpoint(model, dt, env_cfg, split, data.meta,
                                                                file_sha256(Path(data_dir) / DATA_FILE)))
        if run.ckpt_path is not None:
            run.ckpt_path.unlink(missing_ok=True)
        log.info(f"done: {dt.num_steps} steps in {wall:.0f}s ({summary['transitions_per_s']:,.0f} transitions/s) "
                 f"-> {Path(out_dir) / 'model.pt'}")
    if procs.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


class TrainLog:
    """What train_dt logs (rank 0): TensorBoard scalars every 10 steps, and every
    ``rt.eval_step`` steps an in-context evaluation on the held-out goals and a few training
    goals (``rt.eval_train_goals``). A fresh run replaces the folder: one run per folder."""

    def __init__(self, log_dir: str | Path | None, start: int, dt: DTConfig, env_cfg: EnvConfig, split: dict,
                 rt: DTRuntime, device: torch.device):
        self.dt, self.env_cfg, self.rt, self.device = dt, env_cfg, rt, device
        self.held_out, self.train = list(split["held_out"]), spread(list(split["train"]), rt.eval_train_goals)
        self.evals: list[dict] = []
        self.writer = None
        if log_dir is not None:
            if start == 0:
                shutil.rmtree(log_dir, ignore_errors=True)
            self.writer = SummaryWriter(str(log_dir), purge_step=start)
            if start == 0:
                self.writer.add_text("hparams", "\n".join(f"- dt.{k}: {v}" for k, v in to_dict(dt).items()), 0)

    def scalars(self, step: int, stats: dict[str, float], rate: float) -> None:
        """Loss, accuracy, gradient norm, learning rate and speed, every 10 steps and at the last."""
        if self.writer is not None and (step % 10 == 0 or step == self.dt.num_steps - 1):
            for k in ("loss", "accuracy", "grad_norm"):
                self.writer.add_scalar(f"losses/{'train_loss' if k == 'loss' else k}", stats[k], step)
            self.writer.add_scalar("charts/lr", stats["lr"], step)
            self.writer.add_scalar("perf/transitions_per_s", rate, step)

    def eval_due(self, step: int) -> bool:
        """An in-context evaluation after this step: every ``rt.eval_step`` steps and after the last."""
        return bool(self.rt.eval_step) and ((step + 1) % self.rt.eval_step == 0 or step == self.dt.num_steps - 1)

    def evaluate(self, step: int, model: ADTransformer) -> None:
        """The model plays the held-out goals and a few training goals from an empty context."""
        model.eval()
        ev, tr = evaluate_in_training(model, self.env_cfg, [self.held_out, self.train], self.rt.eval_episodes,
                                      self.device, self.dt.seed)
        model.train()
        if self.writer is not None:
            for group, res in (("eval_held_out", ev), ("eval_train", tr)):
                for k, v in res.items():
                    self.writer.add_scalar(f"{group}/{k}", v, step + 1)
        self.evals.append({"step": step + 1, "held_out": ev, "train": tr})
        log.info(f"step {step + 1}: held-out success first10 {ev['success_first10']:.2f} "
                 f"last10 {ev['success_last10']:.2f} | train goals last10 {tr['success_last10']:.2f}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
