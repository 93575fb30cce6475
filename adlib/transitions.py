"""One definition of a transition, shared by every producer and reader of histories.

A transition is what one env step of one stream leaves behind; :data:`FIELDS` names its parts
in the order of the Parquet columns (after ``stream`` and ``step``) and of rollout traces:

    t           in-episode timestep of ``state`` (0 right after a reset)
    state       the observation acted on (a cell; Key-to-Door: cell + n_cells x has-key)
    action      0 no-op, 1 up, 2 right, 3 down, 4 left
    reward      the step's reward
    terminated  the episode ended on the task (the goal, or the open door)
    truncated   the step limit ended it (and not the task)
    next_state  the observation reached by the step, *before* any auto-reset

The A2C sources (:mod:`adlib.a2c`), the history files (:mod:`adlib.histories`), scripted streams
(:mod:`adlib.noise`) and in-context play (:mod:`adlib.rollout`) all use these names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FIELDS = ("t", "state", "action", "reward", "terminated", "truncated", "next_state")


@dataclass
class Transitions:
    """:data:`FIELDS` of a block of transitions, each a tensor of one shape (the A2C rollout's
    ``[T, G, E]``: T steps of E envs of G agents)."""

    t: torch.Tensor           # long
    state: torch.Tensor       # long
    action: torch.Tensor      # long
    reward: torch.Tensor      # float
    terminated: torch.Tensor  # bool
    truncated: torch.Tensor   # bool
    next_state: torch.Tensor  # long
