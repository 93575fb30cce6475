"""What the AD transformer is trained to predict at each transition of a window (``dt.target``).

Every target is a set of actions, given as a boolean mask ``[B, L, A]``; the loss is the
cross-entropy against the uniform distribution over the set (one action: plain imitation).

- ``source``: the action the stream's own source took (Algorithm Distillation, Laskin et al.).
- ``optimal``: every action on a shortest path to the window's *true* task (a decision-pretrained
  target, DPT: Lee et al., NeurIPS 2023). Training goals only: the goal is known to the labeller,
  never to the model.
- ``exploit``: the source's action until the context shows where the task pays, then every
  action on a shortest path there (posterior-optimal exploitation). The search stays the source's;
  what the context reveals is used at once.
- ``explorer``: what the systematic explorer (:class:`adlib.noise.Explorer`) would do given the
  context: head for the nearest cell the context has not shown yet, and once a reward has shown
  the goal, take a shortest path to it. A searching teacher whose choices are a function of the
  model's own context.

"What the context shows" is read from the window itself, as the model sees it: at transition
``i`` the tokens ``0..i`` (each carries the previous transition's action, reward and the cell it
reached, ``prev_*``, and its own ``state``). A window that starts mid-stream shows only its own
part of the stream, and its labels use only that part: a label never depends on anything the
model cannot see (``dt.midstream_search: skip`` gives no loss to a mid-stream window's search
positions instead: :func:`midstream_search_mask`).

Keydoor (states carry a has-key flag, ``state = cell + C * has_key``): a reward reached without the
key (flag 0 before the step) marks the key's cell, one reached while holding it the door's;
``exploit`` and ``explorer`` head for the key while the flag is 0 and for the door while it is 1,
and the explorer searches the cells not yet reached in the current flag (the key cell excluded
from the door search); once the door is open in an episode, they stay put (a no-op).
"""

from __future__ import annotations

import torch

from adlib import tokens
from adlib.config import EnvConfig
from adlib.envs import darkroom as dr
from adlib.noise import first_action, toward_nearest

TARGETS = ("source", "optimal", "exploit", "explorer")
TIES = ("uniform", "teacher", "search", "search_own")


def _cell_rc(cell: torch.Tensor, n: int) -> torch.Tensor:
    """Cell indices ``[...]`` -> (row, col) ``[..., 2]``."""
    return torch.stack([cell // n, cell % n], -1)


def _last_index(flag: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool -> ``[B, L]`` the largest k <= i with ``flag[:, k]``, or -1."""
    L = flag.shape[1]
    k = torch.arange(L, device=flag.device).expand_as(flag)
    return torch.where(flag, k, -1).cummax(1).values


def _pick(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x [B, L]`` at ``idx [B, L]`` (>= 0) along the window."""
    return x.gather(1, idx.clamp(min=0))


class Revealed:
    """What the tokens ``0..i`` of each window position reveal about the task ``[B, L]``.

    ``arrived`` is the cell reached by the previous transition (``prev_next_state``; the
    'none' index on a stream's first transition), ``held_before`` whether the agent held the
    key before that step (keydoor), ``paid`` whether that step paid.
    """

    def __init__(self, f: dict[str, torch.Tensor], env_cfg: EnvConfig):
        C = env_cfg.grid_size ** 2
        self.C, self.n, self.keydoor = C, env_cfg.grid_size, env_cfg.kind == "keydoor"
        none = tokens.none_state(dr.n_states(env_cfg))
        self.real = f["prev_next_state"] != none                                       # [B, L]
        arrived = torch.where(self.real, f["prev_next_state"], 0)
        self.arrived_cell = arrived % C
        self.paid = self.real & (f["prev_reward"] == 1)
        self.cell = f["state"] % C                                                      # [B, L] cell acted on
        self.holding = f["state"] >= C                                                  # [B, L] (keydoor)
        if self.keydoor:
            # the flag before the step that arrived: the state of the previous transition. At a
            # window's first position that state is not in the window: a paid arrival with the key
            # flag set is ambiguous there (key picked up, or door opened) and marks nothing
            before = torch.cat([torch.zeros_like(self.holding[:, :1]), self.holding[:, :-1]], 1)
            self.held_before = before
            self.known_before = torch.ones_like(self.real)
            self.known_before[:, 0] = ~(self.paid[:, 0] & (f["prev_next_state"][:, 0] >= C))
            self.held_before[:, 0] = (f["prev_next_state"][:, 0] >= C) & self.real[:, 0]
            key_paid = self.paid & ~self.held_before & self.known_before
            door_paid = self.paid & self.held_before & self.known_before
            self.key = self._latest(key_paid)                                           # [B, L] cell, -1
            self.door = self._latest(door_paid)
            # the door is open in this episode: it paid at a token of the same episode (t > 0 there:
            # with t = 0 the door's step ended the previous episode) at or after the episode's start
            opened_at = _last_index(door_paid & (f["t"] > 0))
            self.opened = (opened_at >= 0) & (opened_at >= _last_index(f["t"] == 0))
        else:
            self.goal = self._latest(self.paid)

    def _latest(self, flag: torch.Tensor) -> torch.Tensor:
        k = _last_index(flag)
        return torch.where(k >= 0, _pick(self.arrived_cell, k), -1)

    def aim(self) -> torch.Tensor:
        """``[B, L]`` the cell the task pays at next, as far as revealed (-1 unknown)."""
        if not self.keydoor:
            return self.goal
        return torch.where(self.holding, self.door, self.key)


def _toward(pos: torch.Tensor, cell: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, L, A]`` shortest-path actions from ``pos [B, L, 2]`` to ``cell [B, L]`` (>= 0)."""
    return dr.optimal_actions(pos, _cell_rc(cell.clamp(min=0), n))


def unseen_cells(f: dict[str, torch.Tensor], rev: Revealed) -> torch.Tensor:
    """``[B, L, C]`` the cells the tokens ``0..i`` have not shown the agent on.

    Dark Room: the cells acted on and arrived on. Keydoor: the cells arrived on in the flag the
    agent holds at ``i`` (arrived on, not stood on: a key on the start cell is picked up by a
    no-op), the revealed key cell never unseen for the door search."""
    B, L = rev.cell.shape
    C, dev = rev.C, rev.cell.device
    layers = 2 if rev.keydoor else 1
    # the first position at which each cell is shown: seen at i iff that position <= i
    first = torch.full((B, layers * C), L, dtype=torch.long, device=dev)
    k = torch.arange(L, device=dev)[None, :].expand(B, L)
    if rev.keydoor:
        ok = rev.real & rev.known_before
        first.scatter_reduce_(1, rev.held_before.long() * C + rev.arrived_cell, torch.where(ok, k, L), "amin")
    else:
        first.scatter_reduce_(1, rev.cell, k, "amin")                                   # the cell acted on
        first.scatter_reduce_(1, rev.arrived_cell, torch.where(rev.real, k, L), "amin")  # the cell arrived on
    seen = first[:, None, :] <= torch.arange(L, device=dev)[None, :, None]              # [B, L, layers * C]
    if not rev.keydoor:
        return ~seen
    seen = seen.view(B, L, 2, C)
    unseen = ~torch.where(rev.holding[..., None], seen[:, :, 1], seen[:, :, 0])         # [B, L, C]
    key_known = rev.holding & (rev.key >= 0)
    unseen[key_known] &= torch.arange(C, device=dev) != rev.key[key_known][:, None]
    return unseen


def explorer_mask(f: dict[str, torch.Tensor], env_cfg: EnvConfig, rev: Revealed | None = None) -> torch.Tensor:
    """``[B, L, A]`` the systematic explorer's actions at every position of the windows ``f``
    (``rev``: ``Revealed(f, env_cfg)`` when the caller has it)."""
    rev = Revealed(f, env_cfg) if rev is None else rev
    B, L = rev.cell.shape
    pos = _cell_rc(rev.cell, rev.n)                                                     # [B, L, 2]
    cells = dr.all_cells(env_cfg).to(pos.device)
    unseen = unseen_cells(f, rev)
    explore = toward_nearest(pos.reshape(B * L, 2), cells, unseen.reshape(B * L, -1)).view(B, L, -1)
    aim = rev.aim()
    mask = torch.where((aim >= 0)[..., None], _toward(pos, aim, rev.n), explore)
    if rev.keydoor:
        mask = torch.where(rev.opened[..., None], dr.optimal_actions(pos, pos), mask)
    return mask


def source_mask(f: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, L, A]`` one-hot of the stream's own actions."""
    return torch.nn.functional.one_hot(f["action"], dr.N_ACTIONS).bool()


def exploit_mask(f: dict[str, torch.Tensor], env_cfg: EnvConfig, rev: Revealed | None = None) -> torch.Tensor:
    """``[B, L, A]`` the source's action until the context reveals where the task pays next,
    then the shortest-path actions there (keydoor: stay once the door is open; ``rev`` as in
    :func:`explorer_mask`)."""
    rev = Revealed(f, env_cfg) if rev is None else rev
    pos = _cell_rc(rev.cell, rev.n)
    aim = rev.aim()
    mask = torch.where((aim >= 0)[..., None], _toward(pos, aim, rev.n), source_mask(f))
    if rev.keydoor:
        mask = torch.where(rev.opened[..., None], dr.optimal_actions(pos, pos), mask)
    return mask


def optimal_mask(f: dict[str, torch.Tensor], env_cfg: EnvConfig) -> torch.Tensor:
    """``[B, L, A]`` shortest-path actions to the window's true task (``f['goal']``: task ids
    ``[B]``): the goal cell; keydoor, the key without it, the door with it."""
    n, C = env_cfg.grid_size, env_cfg.grid_size ** 2
    task = dr.tasks_in_use(env_cfg).to(f["state"].device)[f["goal"]]                       # [B, W]
    pos = _cell_rc(f["state"] % C, n)                                                   # [B, L, 2]
    if env_cfg.kind == "keydoor":
        holding = (f["state"] >= C)[..., None]
        aim = torch.where(holding, task[:, None, 2:], task[:, None, :2])
    else:
        aim = task[:, None, :].expand_as(pos)
    return dr.optimal_actions(pos, aim)


def action_mask(kind: str, f: dict[str, torch.Tensor], env_cfg: EnvConfig, ties: str = "uniform") -> torch.Tensor:
    """``[B, L, A]`` the target action set of ``kind`` (:data:`TARGETS`) at every position of the
    windows ``f`` (the fields of :meth:`adlib.dataset.HistoryDataset.windows`, as tensors); with
    ``ties`` 'teacher', only its first action in the tie order of the window's stream
    (``f['variant'] [B]``, :data:`adlib.noise.TIE_ORDERS`; order 0 where it is -1 or absent); with
    'search', that first action only where the context has not yet shown where the task pays
    (:meth:`Revealed.aim`), the whole set after; with 'search_own', as 'search' in the streams that
    have a tie order of their own (``variant >= 0``: ordered explorer streams) and the whole set in
    the others (A2C, AD^eps, random-tie explorer: no order to teach). A position with no action in
    the set (cannot happen for a valid window) gets every action."""
    searching = ties in ("search", "search_own")
    rev = Revealed(f, env_cfg) if kind in ("exploit", "explorer") or searching else None
    if kind == "source":
        mask = source_mask(f)
    elif kind == "optimal":
        mask = optimal_mask(f, env_cfg)
    elif kind == "exploit":
        mask = exploit_mask(f, env_cfg, rev)
    elif kind == "explorer":
        mask = explorer_mask(f, env_cfg, rev)
    else:
        raise ValueError(f"unknown target {kind!r}; one of {TARGETS}")
    mask = mask | ~mask.any(-1, keepdim=True)
    if ties == "uniform":
        return mask
    variant = f["variant"].clamp(min=0)[:, None] if "variant" in f else 0
    first = first_action(mask, variant)
    if ties == "teacher":
        return first
    if not searching:
        raise ValueError(f"unknown ties {ties!r}; one of {TIES}")
    known = rev.aim() >= 0                                                              # [B, L]
    if ties == "search_own":
        own = f["variant"] >= 0 if "variant" in f else torch.zeros(known.shape[0], dtype=torch.bool,
                                                                    device=known.device)
        known = known | ~own[:, None]
    return torch.where(known[..., None], mask, first)


def midstream_search_mask(f: dict[str, torch.Tensor], env_cfg: EnvConfig) -> torch.Tensor:
    """``[B, L]`` the positions of windows that start mid-stream (their first token carries a real
    previous transition) at which the window has not yet shown where the task pays: there a
    context-dependent label (``explorer``'s search) is computed from a shorter memory than the
    stream's own, the transitions before the window being out of view (``dt.midstream_search: skip``
    trains nothing there)."""
    rev = Revealed(f, env_cfg)
    return rev.real[:, :1] & (rev.aim() < 0)


def target_probs(mask: torch.Tensor) -> torch.Tensor:
    """Uniform probabilities ``[..., A]`` over each position's action set."""
    m = mask.float()
    return m / m.sum(-1, keepdim=True)
