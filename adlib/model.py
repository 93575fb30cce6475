"""The AD transformer (nanoGPT shape) with an explicit KV cache.

Design of the original (SPEC.md §4): the in-episode timestep from the environment is
embedded instead of an absolute position (so the model knows when a reset comes), the raw
reward goes through an embedding (no return-to-go), and the next action is predicted at
every transition.

Token layouts:
- ``transition``: one token per transition t, the sum of embeddings of
  (state_t, timestep_t, action_{t-1}, reward_{t-1}, next_state_{t-1}). The "previous"
  fields are *not* zeroed at t = 0 of an episode: with terminate-on-goal the only reward
  of an episode arrives on its last transition, and the next episode's first token is
  where that reward and the reached (goal) cell enter the context.
- ``triplet``: the original's 3 tokens per transition, (s_t + timestep_t, a_t, r_t); the
  action is predicted from the state token.

State embeddings: ``table`` (one vector per cell, the original; breaks when rooms grow) or
``coords`` (row vector + column vector: goals never seen in training share rows and
columns with seen ones, which is what lets the model generalise to held-out goals).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from adlib import tokens
from adlib.config import DTConfig, EnvConfig, to_dict
from adlib.io import DataError, check_env, load_torch

TOKENS_PER_TRANSITION = {"transition": 1, "triplet": 3}   # (s, a, r) in the triplet layout


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the model; stored in every checkpoint. No defaults: the
    model's settings come from ``dt`` (:meth:`from_dt`; their defaults live in DTConfig and
    params.yaml) or from a checkpoint."""

    grid_size: int
    n_actions: int
    max_timestep: int
    layout: str
    state_embedding: str
    seq_len: int                    # context in transitions
    embedding_dim: int
    num_layers: int
    num_heads: int
    feed_forward_dim: int
    attention_dropout: float
    residual_dropout: float
    embedding_dropout: float
    key_flag: bool                  # keydoor: states carry a has-key flag (n_states = 2 grid_size**2)

    @property
    def tokens_per_transition(self) -> int:
        return TOKENS_PER_TRANSITION[self.layout]

    @property
    def block_size(self) -> int:
        return self.seq_len * self.tokens_per_transition

    @classmethod
    def from_dt(cls, dt: DTConfig, grid_size: int, n_actions: int, max_timestep: int,
                key_flag: bool = False) -> "ModelConfig":
        return cls(grid_size=grid_size, n_actions=n_actions, max_timestep=max_timestep, key_flag=key_flag,
                   layout=dt.layout,
                   state_embedding=dt.state_embedding, seq_len=dt.seq_len, embedding_dim=dt.embedding_dim,
                   num_layers=dt.num_layers, num_heads=dt.num_heads, feed_forward_dim=dt.feed_forward_dim,
                   attention_dropout=dt.attention_dropout, residual_dropout=dt.residual_dropout,
                   embedding_dropout=dt.embedding_dropout)

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Preallocated keys/values ``[n_layers, B, n_heads, capacity, head_dim]`` for decoding.

    ``pos`` is the number of cached tokens; layers write at ``[pos, pos + n)`` and the
    model calls :meth:`advance` once all layers have written a chunk.
    """

    def __init__(self, cfg: ModelConfig, batch: int, device: torch.device | str, dtype: torch.dtype = torch.float32):
        hd = cfg.embedding_dim // cfg.num_heads
        shape = (cfg.num_layers, batch, cfg.num_heads, cfg.block_size, hd)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.capacity = cfg.block_size
        self.pos = 0

    def reset(self) -> None:
        self.pos = 0

    def advance(self, n: int) -> None:
        self.pos += n

    def select(self, rows: torch.Tensor) -> None:
        """Keep the sequences ``rows`` (indices into the batch) and drop the others."""
        self.k, self.v = self.k[:, rows], self.v[:, rows]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store a chunk ``[B, nh, n, hd]`` at ``pos`` and return all keys/values so far."""
        n = k.shape[2]
        if self.pos + n > self.capacity:
            raise RuntimeError(f"KV cache overflow: {self.pos} + {n} > {self.capacity} tokens")
        self.k[layer, :, :, self.pos:self.pos + n] = k
        self.v[layer, :, :, self.pos:self.pos + n] = v
        return self.k[layer, :, :, :self.pos + n], self.v[layer, :, :, :self.pos + n]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embedding_dim, 3 * cfg.embedding_dim)
        self.proj = nn.Linear(cfg.embedding_dim, cfg.embedding_dim)
        self.attn_dropout = cfg.attention_dropout
        self.resid_dropout = nn.Dropout(cfg.residual_dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)   # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        dropout = self.attn_dropout if self.training else 0.0
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            past = cache.pos
            k, v = cache.write(layer, k, v)                                   # (B, nh, past + T, hs)
            if T == 1:
                mask = None  # one new token attends to everything cached
            else:
                qi = torch.arange(T, device=x.device).unsqueeze(1) + past
                mask = torch.arange(past + T, device=x.device).unsqueeze(0) <= qi   # (T, past + T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                      # (B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.embedding_dim, cfg.feed_forward_dim)
        self.proj = nn.Linear(cfg.feed_forward_dim, cfg.embedding_dim)
        self.dropout = nn.Dropout(cfg.residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.embedding_dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.embedding_dim)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class StateEmbedding(nn.Module):
    """States (and the 'none' index, ``tokens.none_state``) to vectors: a table (one vector per
    state), or a row vector + a column vector (+ a has-key vector with ``key_flag``: keydoor
    state = cell + size**2 * has_key)."""

    def __init__(self, size: int, d: int, mode: str, key_flag: bool = False):
        super().__init__()
        self.size, self.mode, self.key_flag = size, mode, key_flag
        self.n_states = size * size * (2 if key_flag else 1)
        if mode == "table":
            self.table = nn.Embedding(self.n_states + 1, d)
        else:
            self.row = nn.Embedding(size + 1, d)   # index `size` = none
            self.col = nn.Embedding(size + 1, d)
            if key_flag:
                self.flag = nn.Embedding(3, d)     # no key, key, none

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self.mode == "table":
            return self.table(s)
        none = s >= self.n_states
        cell = s % (self.size * self.size)
        r = torch.where(none, self.size, cell // self.size)
        c = torch.where(none, self.size, cell % self.size)
        out = self.row(r) + self.col(c)
        if self.key_flag:
            out = out + self.flag(torch.where(none, 2, s // (self.size * self.size)))
        return out


class ADTransformer(nn.Module):
    """Predicts the source algorithm's next action from a context of its learning history."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embedding_dim
        self.state_emb = StateEmbedding(cfg.grid_size, d, cfg.state_embedding, cfg.key_flag)
        self.time_emb = nn.Embedding(cfg.max_timestep + 1, d)
        self.action_emb = nn.Embedding(tokens.none_action(cfg.n_actions) + 1, d)   # the actions, none
        self.reward_emb = nn.Embedding(tokens.none_reward() + 1, d)               # 0, 1, none
        if cfg.layout == "transition":
            self.next_state_emb = StateEmbedding(cfg.grid_size, d, cfg.state_embedding, cfg.key_flag)
        else:
            self.type_emb = nn.Embedding(TOKENS_PER_TRANSITION["triplet"], d)   # s, a, r token types
        self.drop = nn.Dropout(cfg.embedding_dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_actions)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.num_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    # ---- embeddings -------------------------------------------------------------------
    def embed_parts(self, f: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Per-transition token embeddings ``[B, L, d]``: (token,) for 'transition',
        (state token, action token, reward token) for 'triplet'."""
        s_tok = self.state_emb(f["state"]) + self.time_emb(f["t"])
        if self.cfg.layout == "transition":
            prev = (self.action_emb(f["prev_action"]) + self.reward_emb(f["prev_reward"])
                    + self.next_state_emb(f["prev_next_state"]))
            return (s_tok + prev,)
        te = self.type_emb.weight
        return s_tok + te[0], self.action_emb(f["action"]) + te[1], self.reward_emb(f["reward"]) + te[2]

    def embed(self, f: dict[str, torch.Tensor]) -> torch.Tensor:
        """The token sequence ``[B, L * tokens_per_transition, d]`` of whole transitions,
        triplet order (s_0, a_0, r_0, s_1, ...)."""
        parts = self.embed_parts(f)
        if len(parts) == 1:
            return parts[0]
        B, L, d = parts[0].shape
        return torch.stack(parts, dim=2).reshape(B, 3 * L, d)

    # ---- forward ----------------------------------------------------------------------
    def trunk(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.ln_f(x)

    def forward(self, f: dict[str, torch.Tensor], targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full-context pass over windows of transitions ``f[k]: [B, L]``.
        Returns action logits ``[B, L, A]`` (one per transition) and, given ``targets``, the
        cross-entropy loss: against actions ``[B, L]``, or against action probabilities
        ``[B, L, A]`` (soft targets: :mod:`adlib.targets`)."""
        h = self.trunk(self.embed(f))
        if self.cfg.layout == "triplet":
            h = h[:, 0::3]                                              # state tokens
        logits = self.head(h)
        loss = None
        if targets is not None and targets.dim() == 3:
            loss = -(targets * F.log_softmax(logits.float(), -1)).sum(-1).mean()
        elif targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())
        return logits, loss

    def prefill(self, f: dict[str, torch.Tensor], cache: KVCache) -> torch.Tensor:
        """Fill an emptied ``cache`` with the window ``f[k]: [B, L]`` whose last transition is
        being acted on (its own action and reward unknown) and return that transition's action
        logits ``[B, A]``. With 'triplet' tokens the last transition has only its state token yet."""
        cache.reset()
        x = self.embed(f)
        if self.cfg.layout == "triplet":
            x = x[:, :-2]                                                   # drop its (unknown) a, r tokens
        h = self.trunk(x, cache)
        return self.head(h[:, -1])

    def decode(self, f: dict[str, torch.Tensor], cache: KVCache, first: bool) -> torch.Tensor:
        """Append one transition per sequence to the cache and return its action logits ``[B, A]``.

        ``f[k]: [B, 1]`` holds the new state/timestep (and prev_* for 'transition');
        for 'triplet' also the previous transition's action and reward (``prev_action``,
        ``prev_reward``), whose tokens are appended before the new state token unless
        ``first`` (the first transition in the cache).
        """
        parts = self.embed_parts(f)
        if self.cfg.layout == "transition":
            x = parts[0]
        else:
            s_tok = parts[0]
            if first:
                x = s_tok
            else:
                te = self.type_emb.weight
                a_tok = self.action_emb(f["prev_action"]) + te[1]
                r_tok = self.reward_emb(f["prev_reward"]) + te[2]
                x = torch.cat([a_tok, r_tok, s_tok], dim=1)                 # (B, 3, d)
        h = self.trunk(x, cache)
        return self.head(h[:, -1])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[ADTransformer, dict]:
    """Rebuild a model from its checkpoint alone (the checkpoint carries its config); eval mode."""
    ckpt = load_torch(path, device)
    try:
        model = ADTransformer(ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise DataError(f"{path}: checkpoint does not match its model config ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), ckpt


def load_trained_model(path: str | Path, env_cfg: EnvConfig, dt: DTConfig, split: dict,
                       device: torch.device | str = "cpu") -> tuple[ADTransformer, dict]:
    """The model that params.yaml and ``split`` describe, or :class:`DataError` naming the file:
    trained for this environment, with this ``dt`` section (the keys that differ are named), and
    on none of the split's held-out goals (a held-out number must never include a training goal)."""
    model, ckpt = load_model(path, device)
    check_env(path, ckpt.get("env"), to_dict(env_cfg), "train_dt (dvc repro)")
    saved, want = ckpt.get("dt"), to_dict(dt)
    if not isinstance(saved, dict) or saved != want:
        keys = sorted(k for k in want if not isinstance(saved, dict) or saved.get(k) != want[k])
        got = {k: saved.get(k) for k in keys} if isinstance(saved, dict) else saved
        raise DataError(f"{path}: trained with dt {got}, but params.yaml has {({k: want[k] for k in keys})}; "
                        f"these are not the params' model: rerun train_dt (dvc repro)")
    trained = ckpt.get("train_goals")
    if not isinstance(trained, list):
        raise DataError(f"{path}: does not say which goals it was trained on; rerun train_dt (dvc repro)")
    overlap = sorted(set(trained) & set(split["held_out"]))
    if overlap:
        raise DataError(f"{path}: was trained on goals {overlap}, which the split holds out (split seed "
                        f"{split.get('seed')}): its held-out numbers would include training goals; evaluate it with "
                        f"the split it was trained with, or rerun train_dt (dvc repro)")
    return model, ckpt
