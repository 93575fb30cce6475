"""What one transition looks like to the AD model: its fields and their 'none' values.

Every transition t is given to the model as integer fields (the token layouts in
:mod:`adlib.model` decide how they become tokens):

    state, t            the cell acted on and its in-episode timestep
    action, reward      what was done there and what it paid (unknown yet while acting)
    prev_action, prev_reward, prev_next_state
                        the previous transition's action, reward and the cell it reached
                        *before* any reset (how a terminal reward and the goal cell reach the
                        next episode)

'None' is one index past each vocabulary: nothing happened yet (the first transition of a
history) or not known yet (this transition's own action and reward while acting). The
dataset's windows, the in-context player and the model's embedding tables all use these.
"""

from __future__ import annotations

FIELDS = ("state", "t", "action", "reward", "prev_action", "prev_reward", "prev_next_state")
N_REWARDS = 2          # every step pays 0 or 1 (both reward modes; keydoor's key and door pay on different steps)


def none_action(n_actions: int) -> int:
    return n_actions


def none_reward() -> int:
    return N_REWARDS


def none_state(n_states: int) -> int:
    return n_states
