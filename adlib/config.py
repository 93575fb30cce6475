"""Frozen dataclass configs, one per ``params.yaml`` section, validated before any work.

Every field declares its allowed values in its metadata (``rng`` for numeric ranges,
``choices`` for enumerations). The ``runtime`` section holds the keys that say how a stage
runs (device, threads, log and checkpoint intervals), never what it computes; the others
are result keys. ``load_params`` reads params.yaml as DVC does (YAML 1.2), requires every
key, and raises :class:`ParamError` naming ``section.key``, the value and what is allowed.

This module is not a DVC dependency of the stages that compute results (dvc.yaml lists it
only for ``check_params``): it holds the schema and validation, and since params.yaml must
set every key, its defaults never reach a stage. A rule that transforms a value belongs in
the library module that uses it, not here.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from adlib.envs.rules import farthest_task_steps, n_all_tasks, n_tasks_in_use


class ParamError(ValueError):
    """An invalid parameter: the message names the key, the value and what is allowed."""


def _f(default: Any, doc: str, *, rng: tuple[float | None, float | None] | None = None,
       choices: tuple[Any, ...] | None = None, open_hi: bool = False, open_lo: bool = False) -> Any:
    """A dataclass field with its docstring and allowed values in the metadata."""
    meta = {"doc": doc, "rng": rng, "choices": choices, "open_hi": open_hi, "open_lo": open_lo}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EnvConfig:
    """Dark Room family settings (SPEC.md §2; kinds in :mod:`adlib.envs.darkroom`)."""

    kind: str = _f("darkroom", "'darkroom' (a task is a goal cell) or 'keydoor' (Dark Key-to-Door: a task is a "
                               "(key, door) pair of cells)", choices=("darkroom", "keydoor"))
    grid_size: int = _f(9, "grid side; cells are row * grid_size + col", rng=(3, 31))
    max_episode_steps: int = _f(20, "episode step limit (truncation); must let the farthest task be completed",
                                rng=(1, 10_000))
    n_tasks: int = _f(0, "tasks in use (0 = all: 80 goals of a 9x9 room, 6480 key-door pairs); else a fixed "
                         "pseudo-random subset of that many, the same for every split", rng=(0, None))
    terminate_on_goal: bool = _f(True, "reaching the goal (keydoor: opening the door) ends the episode (original); "
                                       "false = AD paper variant")
    random_start: bool = _f(False, "start in a random cell instead of the centre")
    reward_mode: str = _f("reach", "'reach': +1 on the step that reaches the goal; 'stand': +1 on every step on the goal (paper)",
                          choices=("reach", "stand"))


@dataclass(frozen=True)
class SplitConfig:
    """Deterministic train / held-out goal split."""

    seed: int = _f(0, "seed of the permutation of goals", rng=(0, 2**31 - 1))
    n_train: int = _f(57, "number of training goals; the rest are held out", rng=(1, None))


@dataclass(frozen=True)
class SourceConfig:
    """Batched A2C source agents (SPEC.md §3)."""

    hidden_size: int = _f(128, "width of the shared state embedding", rng=(1, 4096))
    nenvs: int = _f(10, "parallel envs (= history streams) per agent", rng=(1, 4096))
    nsteps: int = _f(10, "rollout length between updates", rng=(1, 4096))
    env_steps: int = _f(300_000, "env steps per agent (all its envs together); the dataset reads the first dataset.history_len", rng=(1, None))
    seeds_per_goal: int = _f(3, "independent agents per goal", rng=(1, 1000))
    lr: float = _f(1e-4, "Adam learning rate", rng=(0, 1), open_lo=True)
    betas: tuple[float, float] = _f((0.9, 0.999), "Adam betas", rng=(0, 1), open_hi=True)
    eps: float = _f(1e-6, "Adam epsilon", rng=(0, 1), open_lo=True)
    clip_grad_norm: float = _f(0.5, "per-agent gradient-norm clip", rng=(0, None), open_lo=True)
    value_coef: float = _f(0.99, "critic loss weight", rng=(0, None))
    entropy_coef: float = _f(0.01, "entropy bonus weight", rng=(0, None))
    gamma: float = _f(0.99, "discount", rng=(0, 1))
    seed: int = _f(0, "base seed; each agent's randomness is keyed by (seed, goal, agent seed)", rng=(0, 2**31 - 1))
    shards: tuple[int, ...] = _f((0,), "DVC shard stages [0..n-1]; goal g trains in shard g % n, each worker's share of a shard as one batch")


@dataclass(frozen=True)
class NoiseConfig:
    """AD^eps noise-distillation histories (Zisman et al., 2024), an extra source next to A2C."""

    streams_per_goal: int = _f(10, "noise-distillation streams per training goal (0 = none)", rng=(0, 100_000))
    transitions: int = _f(600, "transitions per noise stream (cut there, mid-episode if need be, as A2C histories "
                               "are cut at history_len): a fixed length, so every stream holds a dt.seq_len window "
                               "whatever its goal's distance", rng=(1, 10_000_000))
    schedule: str = _f("first_reward", "when eps decays: 'episodes' (over the first decay_episodes episodes of a "
                                   "stream) or 'first_reward' (eps_start until the stream's first reward, then over "
                                   "the decay_episodes episodes after it; Dark Room only)", choices=("episodes", "first_reward"))
    decay_episodes: int = _f(0, "episodes over which eps decays linearly from eps_start to eps_end (0 = at once)",
                             rng=(0, 1_000_000))
    eps_start: float = _f(1.0, "initial probability of a uniform random action", rng=(0, 1))
    eps_end: float = _f(0.0, "final probability of a uniform random action (<= eps_start)", rng=(0, 1))
    seed: int = _f(0, "seed of the noise histories", rng=(0, 2**31 - 1))


@dataclass(frozen=True)
class ExplorerConfig:
    """Systematic-explorer histories: a source kind beside A2C and AD^eps (not in the default)."""

    streams_per_goal: int = _f(0, "explorer streams per training goal (0 = none)", rng=(0, 100_000))
    transitions: int = _f(600, "transitions per explorer stream", rng=(1, 10_000_000))
    eps: float = _f(0.0, "probability of a uniform random action in explorer streams (contexts that stray from "
                         "the explorer's path and come back: what a learner sees after its own slips)", rng=(0, 1))
    ties: str = _f("random", "how the explorer chooses between equally good moves: 'random' (sampled), 'first' "
                             "(up, right, down, left, no-op: one fixed tour until the first reward), 'rotations' "
                             "(stream j turns that tour by j % 4 quarter turns), 'symmetric' (stream j takes the "
                             "j % 8-th symmetry of the square: turned or mirrored) or 'permutations' (stream j "
                             "takes the j % 24-th of every order of the four moves: 24 tours; streams_per_goal 24 "
                             "gives each goal each tour once)",
                   choices=("random", "first", "rotations", "symmetric", "permutations"))
    seed: int = _f(0, "seed of the explorer's tie-breaking and noise", rng=(0, 2**31 - 1))


@dataclass(frozen=True)
class DatasetConfig:
    """Parquet learning-history dataset of the training goals."""

    history_len: int = _f(300_000, "transitions kept per agent, in stream order (SPEC: 800 000)", rng=(1, None))
    subsample: int = _f(50, "keep every k-th episode of each stream", rng=(1, 1_000_000))
    a2c_streams_per_goal: int = _f(0, "A2C streams kept per training goal (0 = all seeds x nenvs)", rng=(0, 1_000_000))
    noise: NoiseConfig = field(default_factory=NoiseConfig, metadata={"doc": "AD^eps histories"})
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig, metadata={"doc": "systematic-explorer histories"})


@dataclass(frozen=True)
class DTConfig:
    """Decision-Transformer-style AD model and its training (SPEC.md §4)."""

    layout: str = _f("transition", "'transition' (1 token / transition) or 'triplet' (s, a, r tokens)",
                     choices=("transition", "triplet"))
    state_embedding: str = _f("coords", "'coords' (row + col embeddings) or 'table' (one vector per cell)",
                              choices=("coords", "table"))
    target: str = _f("exploit", "what is predicted at each transition: 'source' (the stream's own next action: "
                               "AD), 'optimal' (shortest-path actions to the true task: DPT), 'exploit' (the "
                               "source's action until the context reveals where the task pays, then shortest-path "
                               "actions there), 'explorer' (the systematic explorer's actions given the context); "
                               "sets of actions are uniform soft targets (adlib.targets)",
                     choices=("source", "optimal", "exploit", "explorer"))
    ties: str = _f("uniform", "several equally good target actions ('optimal', 'exploit', 'explorer'): 'uniform' "
                              "(a soft target over them) or 'teacher' (the first in the tie order of the window's "
                              "stream, dataset.explorer.ties: a deterministic teacher; up, right, down, left for "
                              "streams without one), or 'search' (the teacher's first while the context has not "
                              "shown where the task pays, every tied action once it has: a fixed tour, then any "
                              "shortest path), or 'search_own' ('search' in the streams with a tie order of their "
                              "own, dataset.explorer.ties other than 'random'; every tied action in the others: "
                              "A2C and AD^eps streams teach no order; with random-tie explorer streams it is "
                              "'uniform')",
                   choices=("uniform", "teacher", "search", "search_own"))
    seq_len: int = _f(256, "context length in transitions", rng=(1, 1_000_000))
    embedding_dim: int = _f(64, "model width", rng=(1, 8192))
    num_layers: int = _f(4, "transformer blocks", rng=(1, 256))
    num_heads: int = _f(4, "attention heads (must divide embedding_dim)", rng=(1, 256))
    feed_forward_dim: int = _f(256, "MLP hidden width", rng=(1, 1_000_000))
    attention_dropout: float = _f(0.0, "dropout on attention weights", rng=(0, 1), open_hi=True)
    residual_dropout: float = _f(0.0, "dropout on residual branches", rng=(0, 1), open_hi=True)
    embedding_dropout: float = _f(0.0, "dropout on token embeddings", rng=(0, 1), open_hi=True)
    lr: float = _f(1e-3, "peak learning rate (AdamW)", rng=(0, 1), open_lo=True)
    min_lr: float = _f(2e-5, "cosine floor", rng=(0, 1))
    betas: tuple[float, float] = _f((0.9, 0.99), "Adam betas", rng=(0, 1), open_hi=True)
    weight_decay: float = _f(0.0, "AdamW weight decay", rng=(0, 1))
    warmup_steps: int = _f(50, "linear warm-up steps", rng=(0, None))
    clip_grad_norm: float = _f(1.0, "global gradient-norm clip", rng=(0, None), open_lo=True)
    stream_start_frac: float = _f(0.25, "fraction of training windows that start at a stream's first transition", rng=(0, 1))
    midstream_search: str = _f("window", "dt.target 'explorer': positions of a training window that starts mid-stream "
                                         "at which the window has not yet shown where the task pays: 'window' "
                                         "(labelled by the explorer from the window alone, as if the stream began "
                                         "there: a shorter memory than the stream's) or 'skip' (their targets are "
                                         "zero: no loss, still counted in the batch's mean)", choices=("window", "skip"))
    batch_size: int = _f(32, "windows per optimiser step (global, across DDP ranks)", rng=(1, 1_000_000))
    num_steps: int = _f(600, "optimiser steps; the cosine runs over all of them", rng=(1, None))
    seed: int = _f(0, "training seed", rng=(0, 2**31 - 1))


@dataclass(frozen=True)
class EvalConfig:
    """In-context evaluation of the frozen model."""

    episodes: int = _f(200, "episodes played from an empty context", rng=(1, 1_000_000))
    seeds: int = _f(5, "independent runs per goal", rng=(1, 10_000))
    train_goals: int = _f(8, "training goals also evaluated, reported apart (over-fitting check)", rng=(1, 10_000))
    temperature: float = _f(1.0, "softmax temperature of the sampled policy (render_videos films AD at it too)",
                            rng=(0, 100), open_lo=True)
    seed: int = _f(0, "evaluation seed", rng=(0, 2**31 - 1))


@dataclass(frozen=True)
class RenderConfig:
    """Videos of agents walking the room."""

    source_goals: int = _f(2, "source agents per group (training / held-out) to film", rng=(0, 1000))
    ad_goals: int = _f(3, "held-out goals on which AD is filmed", rng=(0, 1000))
    ad_episodes: int = _f(120, "episodes of AD play filmed", rng=(1, 100_000))
    fps: int = _f(16, "frames per second", rng=(1, 120))
    cell_px: int = _f(24, "pixels per grid cell", rng=(4, 256))


@dataclass(frozen=True)
class SourceRuntime:
    """How train_source_agents runs (never what it computes)."""

    device: str = _f("cpu", "'cpu', 'cuda', or 'auto'; the tiny tabular nets run as fast on a CPU",
                     choices=("cpu", "cuda", "auto"))
    threads: int = _f(1, "torch CPU threads per worker process (0 = torch default); the batched ops are small, "
                         "one thread per process avoids thrashing", rng=(0, 1024))
    workers: int = _f(0, "worker processes per shard stage, each training a share of its goals (0 = one per CPU "
                         "core this process may use); outputs do not depend on it", rng=(0, 1024))
    log_every: int = _f(50, "updates between TensorBoard points (logs/sources)", rng=(1, None))
    checkpoint_every: int = _f(2000, "updates between resumable checkpoints (.cache/sources; a multiple of log_every)",
                               rng=(1, None))


@dataclass(frozen=True)
class DTRuntime:
    """How train_dt runs (never what it computes: the weights do not depend on these keys)."""

    device: str = _f("auto", "'cpu', 'cuda', or 'auto' (CUDA when present)", choices=("cpu", "cuda", "auto"))
    amp: bool = _f(True, "bf16 autocast on CUDA (ignored on CPU)")
    threads: int = _f(0, "torch CPU threads (0 = torch default)", rng=(0, 1024))
    eval_step: int = _f(250, "optimiser steps between in-context evaluations on held-out goals, logged to "
                             "logs/train_dt (0 = never)", rng=(0, None))
    eval_episodes: int = _f(30, "episodes of each in-training evaluation", rng=(1, 100_000))
    eval_train_goals: int = _f(4, "training goals also evaluated in training (spread over the room)", rng=(0, 10_000))
    checkpoint_every: int = _f(250, "optimiser steps between resumable checkpoints (.cache/train_dt)", rng=(1, None))


@dataclass(frozen=True)
class EvalRuntime:
    """How eval_dt runs."""

    device: str = _f("auto", "'cpu', 'cuda', or 'auto'", choices=("cpu", "cuda", "auto"))
    threads: int = _f(0, "torch CPU threads (0 = torch default); 1 lets two evaluations share a 2-core machine "
                         "without thrashing", rng=(0, 1024))


@dataclass(frozen=True)
class RuntimeConfig:
    """Keys that say how stages run, not what they compute. Only check_params tracks this
    section in dvc.yaml: changing a key reruns that check and nothing else (``dvc repro -f
    <stage>`` recomputes with it)."""

    source: SourceRuntime = field(default_factory=SourceRuntime)
    dt: DTRuntime = field(default_factory=DTRuntime)
    eval: EvalRuntime = field(default_factory=EvalRuntime)


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    env: EnvConfig = field(default_factory=EnvConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    dt: DTConfig = field(default_factory=DTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def _allowed(f: dataclasses.Field) -> str:
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    lo, hi = m.get("rng") or (None, None)
    parts = []
    if lo is not None:
        parts.append(f"{'>' if m.get('open_lo') else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if m.get('open_hi') else '<='} {hi}")
    return " and ".join(parts) if parts else "any value"


def _check_scalar(key: str, value: Any, typ: Any, f: dataclasses.Field) -> Any:
    what = _allowed(f)
    if typ is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{key} = {value!r}: must be true or false")
        return value
    if typ is int:
        # YAML 1.2 (DVC's reading) makes 8e5 a float: a whole number is accepted as the integer
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{key} = {value!r}: must be an integer ({what})")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParamError(f"{key} = {value!r}: must be a finite number ({what})")
        value = float(value)
    elif typ is str:
        if not isinstance(value, str):
            raise ParamError(f"{key} = {value!r}: must be a string ({what})")
    m = f.metadata
    if m.get("choices") and value not in m["choices"]:
        raise ParamError(f"{key} = {value!r}: must be {what}")
    lo, hi = m.get("rng") or (None, None)
    if lo is not None and (value < lo or (m.get("open_lo") and value == lo)):
        raise ParamError(f"{key} = {value!r}: out of range, must be {what}")
    if hi is not None and (value > hi or (m.get("open_hi") and value == hi)):
        raise ParamError(f"{key} = {value!r}: out of range, must be {what}")
    return value


# WARN: DVC's run cache hashes a stage's lock entry with every key named 'size' or 'nfiles'
# dropped, at any depth, params included (upstream DVC issue #10296, fix not released): a
# change of such a key would restore the old outputs from the run cache. No key may have
# these names; the room's side is `env.grid_size`.
RESERVED_KEYS = ("size", "nfiles")
_RENAMED = {"env.size": "env.grid_size"}


def _reserved(key: str) -> ParamError:
    hint = f"; the key is {_RENAMED[key]}" if key in _RENAMED else ""
    return ParamError(f"{key}: keys named 'size' or 'nfiles' are not allowed: DVC's run cache ignores them "
                      f"(DVC issue #10296), so changing one would restore stale outputs{hint}")


def parse_section(cls: type, raw: Any, prefix: str, complete: bool = True) -> Any:
    """Build the frozen config ``cls`` from ``raw``, failing loudly on any bad key.

    With ``complete`` (what stages use), every key must be given: a default in this file is
    not a params.yaml value, so DVC would not see it change.
    """
    if raw is None:   # an empty section: its keys are reported missing (or defaulted)
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamError(f"{prefix or 'params'} = {raw!r}: must be a mapping of keys")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    dot = f"{prefix}." if prefix else ""
    for name in raw:
        if name in RESERVED_KEYS:
            raise _reserved(f"{dot}{name}")
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        raise ParamError(f"{dot}{unknown[0]}: unknown key; allowed keys are {', '.join(fields)}")
    missing = [n for n in fields if n not in raw]
    if complete and missing:
        what = "section" if dataclasses.is_dataclass(hints[missing[0]]) else "key"
        raise ParamError(f"{dot}{missing[0]}: missing {what}; params.yaml must set every key "
                         f"(a default in adlib/config.py is invisible to DVC)")
    kwargs, errors = {}, []
    for name, value in raw.items():
        try:
            kwargs[name] = _parse_value(fields[name], hints[name], value, f"{dot}{name}", complete)
        except ParamError as e:   # every bad value is reported, one per line, not only the first
            errors.append(str(e))
    if errors:
        raise ParamError("\n".join(errors))
    return cls(**kwargs)


def _parse_value(f: dataclasses.Field, typ: Any, value: Any, key: str, complete: bool) -> Any:
    """One key's value checked against its field (a nested section, a list or a scalar)."""
    if dataclasses.is_dataclass(typ):
        return parse_section(typ, value, key, complete)
    if typing.get_origin(typ) is tuple and typing.get_args(typ)[-1] is Ellipsis:
        if not isinstance(value, (list, tuple)) or not value:
            raise ParamError(f"{key} = {value!r}: must be a non-empty list of integers")
        return tuple(_check_scalar(f"{key}[{i}]", v, int, f) for i, v in enumerate(value))
    if typing.get_origin(typ) is tuple:
        args = typing.get_args(typ)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ParamError(f"{key} = {value!r}: must be a list of {len(args)} numbers ({_allowed(f)})")
        return tuple(_check_scalar(f"{key}[{i}]", v, args[i], f) for i, v in enumerate(value))
    return _check_scalar(key, value, typ, f)


def _check_env(env: EnvConfig) -> None:
    if env.grid_size % 2 == 0 and not env.random_start:
        raise ParamError(f"env.grid_size = {env.grid_size}: must be odd when env.random_start is false "
                         f"(the start is the centre)")
    if env.kind == "keydoor" and env.reward_mode != "reach":
        raise ParamError(f"env.reward_mode = {env.reward_mode!r}: must be 'reach' when env.kind is 'keydoor' "
                         f"(the key and the door each pay once)")
    if env.n_tasks > n_all_tasks(env):
        raise ParamError(f"env.n_tasks = {env.n_tasks}: out of range, must be <= {n_all_tasks(env)} (the tasks of a "
                         f"{env.grid_size}x{env.grid_size} {env.kind}), or 0 for all")
    need = farthest_task_steps(env)
    if env.max_episode_steps < need:
        where = "a random start" if env.random_start else "the centre"
        raise ParamError(f"env.max_episode_steps = {env.max_episode_steps}: too short, must be >= {need}: the "
                         f"farthest task of a {env.grid_size}x{env.grid_size} {env.kind} takes {need} steps from "
                         f"{where}, so some tasks could never be completed")


def env_config(**settings: Any) -> EnvConfig:
    """An :class:`EnvConfig` from keyword settings, checked with params.yaml's rules and
    messages (what the gymnasium env builds its config with); unset keys keep their defaults."""
    env = parse_section(EnvConfig, settings, "env", complete=False)
    _check_env(env)
    return env


def _cross_checks(p: Params) -> None:
    _check_env(p.env)
    goals = n_tasks_in_use(p.env)
    if p.split.n_train >= goals:
        raise ParamError(f"split.n_train = {p.split.n_train}: out of range, must be <= {goals - 1} "
                         f"(the env has {goals} tasks in use and at least one must be held out)")
    if p.dt.embedding_dim % p.dt.num_heads:
        raise ParamError(f"dt.num_heads = {p.dt.num_heads}: must divide dt.embedding_dim = {p.dt.embedding_dim}")
    if p.dt.midstream_search != "window" and p.dt.target != "explorer":
        raise ParamError(f"dt.midstream_search = {p.dt.midstream_search!r}: must be 'window' unless dt.target is "
                         f"'explorer' (dt.target = {p.dt.target!r}: its labels do not depend on what a window "
                         f"leaves out)")
    if p.dt.min_lr > p.dt.lr:
        raise ParamError(f"dt.min_lr = {p.dt.min_lr}: must be <= dt.lr = {p.dt.lr}")
    if p.dt.warmup_steps >= p.dt.num_steps:
        raise ParamError(f"dt.warmup_steps = {p.dt.warmup_steps}: must be < dt.num_steps = {p.dt.num_steps}")
    if p.dataset.noise.eps_end > p.dataset.noise.eps_start:
        raise ParamError(f"dataset.noise.eps_end = {p.dataset.noise.eps_end}: must be <= dataset.noise.eps_start = "
                         f"{p.dataset.noise.eps_start} (the noise of AD^eps decays)")
    rollout = p.source.nenvs * p.source.nsteps
    if p.source.env_steps % rollout:
        up = -(-p.source.env_steps // rollout) * rollout
        raise ParamError(f"source.env_steps = {p.source.env_steps}: must be a multiple of source.nenvs x source.nsteps "
                         f"= {rollout} (each A2C update takes that many env steps), e.g. {up}")
    if p.dataset.history_len > p.source.env_steps:
        raise ParamError(f"dataset.history_len = {p.dataset.history_len}: must be <= source.env_steps = "
                         f"{p.source.env_steps} (histories cannot be longer than what was trained)")
    if p.dataset.history_len < p.source.nenvs:
        raise ParamError(f"dataset.history_len = {p.dataset.history_len}: must be >= source.nenvs = {p.source.nenvs}")
    for name in ("noise", "explorer"):                       # synthetic streams of a fixed length
        kind = getattr(p.dataset, name)
        if kind.streams_per_goal and kind.transitions < p.dt.seq_len:
            raise ParamError(f"dataset.{name}.transitions = {kind.transitions}: must be >= dt.seq_len = "
                             f"{p.dt.seq_len} (a training window lies within one stream)")
    rs = p.runtime.source
    if rs.checkpoint_every % rs.log_every:
        raise ParamError(f"runtime.source.checkpoint_every = {rs.checkpoint_every}: must be a multiple of "
                         f"runtime.source.log_every = {rs.log_every}")
    if list(p.source.shards) != list(range(len(p.source.shards))):
        raise ParamError(f"source.shards = {list(p.source.shards)}: must be [0, 1, ..., n-1] (n shard stages)")
    if len(p.source.shards) > goals:
        raise ParamError(f"source.shards: {len(p.source.shards)} shards: must be <= {goals} (the number of tasks)")
    if p.env.kind == "keydoor" and p.dataset.noise.schedule == "first_reward":
        raise ParamError("dataset.noise.schedule = 'first_reward': must be 'episodes' when env.kind is 'keydoor' "
                         "(the first reward is the key: the stream would then head for a door it never saw)")
    if p.eval.train_goals > p.split.n_train:
        raise ParamError(f"eval.train_goals = {p.eval.train_goals}: must be <= split.n_train = {p.split.n_train}")


def parse_params(raw: Any) -> Params:
    """Validate a whole params mapping (as loaded from params.yaml)."""
    p = parse_section(Params, raw, "")
    _cross_checks(p)
    return p


def _key_path_at(text: str, line: int, key: str) -> str:
    """The dotted path of block-mapping ``key`` written on 0-based ``line`` of ``text``."""
    lines = text.splitlines()
    path, indent = [key], len(lines[line]) - len(lines[line].lstrip()) if line < len(lines) else 0
    for above in reversed(lines[:line]):
        stripped = above.lstrip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            continue
        ind = len(above) - len(stripped)
        m = re.match(r"([^\s:#'\"]+)\s*:", stripped)
        if ind < indent and m:
            path.insert(0, m.group(1))
            indent = ind
            if ind == 0:
                break
    return ".".join(path)


def read_yaml(path: str | Path) -> Any:
    """params.yaml as DVC reads it: YAML 1.2 through ruamel.yaml's safe loader (so ``1e-4`` is
    a number and ``yes`` a string, as in DVC's dvc.lock), duplicate keys refused by name."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamError(f"{path}: file not found") from None
    try:
        return YAML(typ="safe", pure=True).load(text)
    except DuplicateKeyError as e:
        m = re.search(r'duplicate key "([^"]+)"', str(e.problem))
        line = e.problem_mark.line if e.problem_mark is not None else 0
        key = _key_path_at(text, line, m.group(1)) if m else "?"
        first = ""
        if m and e.context_mark is not None:   # context_mark is the mapping's start: find the first key
            lines, dup = text.splitlines(), text.splitlines()[line]
            indent = len(dup) - len(dup.lstrip())
            first_line = next((i for i in range(e.context_mark.line, line)
                               if lines[i][indent:].startswith(f"{m.group(1)}:")
                               and len(lines[i]) - len(lines[i].lstrip()) == indent), None)
            first = f", first at line {first_line + 1}" if first_line is not None else ""
        raise ParamError(f"{path}: {key}: duplicate key (line {line + 1}{first}); "
                         f"YAML keeps only one of them silently") from None
    except YAMLError as e:
        raise ParamError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; errors name the file and the key."""
    raw = read_yaml(path)
    try:
        return parse_params(raw)
    except ParamError as e:
        raise ParamError("\n".join(f"{path}: {line}" for line in str(e).splitlines())) from None


def to_dict(cfg: Any) -> dict:
    """A config as plain YAML/JSON-friendly data (tuples become lists)."""
    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(dataclasses.asdict(cfg))


def param_keys(cls: type = Params, prefix: str = "") -> list[str]:
    """Dotted keys of every leaf parameter of ``cls``."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += param_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def describe(cls: type = Params, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key, default, doc) for every parameter, for documentation."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], key + ".")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            allowed = "true or false" if hints[f.name] is bool else _allowed(f)
            rows.append((key, default, f"{f.metadata.get('doc', '')} ({allowed})"))
    return rows

