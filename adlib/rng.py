"""Counter-based random numbers: each draw is a hash of (seed, keys...).

Why not ``torch.Generator``: one generator per agent would serialise the batched A2C,
and a single shared generator makes every agent's randomness depend on which other agents
share its batch. Hashing explicit keys (agent id, env, step) gives every agent its own
stream whatever the batch composition, on CPU and CUDA alike.
"""

from __future__ import annotations

import torch

_M64 = (1 << 64) - 1


def _to_signed(x: int) -> int:
    x &= _M64
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN = _to_signed(0x9E3779B97F4A7C15)
_MIX1 = _to_signed(0xBF58476D1CE4E5B9)
_MIX2 = _to_signed(0x94D049BB133111EB)


def _srl(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _splitmix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 tensors (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ _srl(x, 30)) * _MIX1
    x = (x ^ _srl(x, 27)) * _MIX2
    return x ^ _srl(x, 31)


def chain(seed: int | torch.Tensor, *keys: torch.Tensor | int) -> torch.Tensor:
    """The hash state after absorbing ``keys`` (int64 tensor), before the final mix of
    :func:`hash_keys`: ``chain(chain(seed, *a), *b) == chain(seed, *a, *b)``, so a loop whose
    draws share leading keys (agent, env) absorbs them once and only its counter every step
    (:func:`uniform_after`)."""
    tensors = [k for k in (seed, *keys) if isinstance(k, torch.Tensor)]
    device = tensors[0].device if tensors else None
    h = seed if isinstance(seed, torch.Tensor) else torch.full((), _to_signed(seed), dtype=torch.int64, device=device)
    for k in keys:
        k = torch.as_tensor(k, dtype=torch.int64, device=device)
        h = _splitmix(h ^ k)
    return h


def hash_keys(seed: int, *keys: torch.Tensor | int) -> torch.Tensor:
    """A 64-bit hash of the seed and the broadcast keys (int64 tensor)."""
    return _splitmix(chain(seed, *keys))


def to_uniform(h: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform floats in [0, 1) from 64-bit hashes: their top 24 bits (exact in float32)."""
    return _srl(h, 40).to(dtype) * (1.0 / (1 << 24))


def uniform(seed: int, *keys: torch.Tensor | int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform floats in [0, 1), one per broadcast key."""
    return to_uniform(hash_keys(seed, *keys), dtype)


def uniform_after(prefix: torch.Tensor, *keys: torch.Tensor | int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``uniform(seed, *a, *keys)`` from ``prefix = chain(seed, *a)``."""
    return to_uniform(_splitmix(chain(prefix, *keys)), dtype)


def categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Sample indices from ``probs [..., K]`` by inverse CDF with uniforms ``u [...]``."""
    return categorical_cdf(probs.cumsum(-1), u)


def categorical_cdf(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """:func:`categorical` from the cumulative sums ``cdf [..., K]`` of the probabilities (a
    policy table's, computed once for many draws)."""
    # WARN: u == 0 (odds 2^-24 per draw) made x == 0 pick index 0 even with probability 0
    # (a no-op in AD^eps's greedy mask); a floor of `tiny` changes no draw where p[0] > tiny.
    x = (u * cdf[..., -1]).clamp_min(torch.finfo(cdf.dtype).tiny)
    idx = (cdf < x.unsqueeze(-1)).sum(-1)
    return idx.clamp_max(cdf.shape[-1] - 1)


# ---------------------------------------------------------------- the keys of the pipeline's draws
# (one place for how identities combine into seeds and keys)

def agent_key(goal_id: int, agent_seed: int) -> int:
    """The identity of an A2C agent (goal, seed of that goal) in every random draw it makes."""
    return goal_id * 1_000_003 + agent_seed


def run_keys(goal_ids: torch.Tensor, seeds: int) -> torch.Tensor:
    """``[N]`` identities of the runs of a goal-major batch (run = goal x seeds + seed): the key
    of a keyed rollout's draws."""
    return goal_ids * 100_003 + torch.arange(len(goal_ids)) % seeds


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of an optimiser step of one process (dropout masks): a resumed run and
    every DDP rank draw the same as an uninterrupted run would."""
    return seed * 1_000_003 + step * 101 + rank
