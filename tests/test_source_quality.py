"""benchmarks.source_quality: when each A2C agent first found its task, on a history crafted by hand."""

import numpy as np

from benchmarks.source_quality import first_success_steps


def test_first_success_steps_by_hand() -> None:
    # one goal, 2 seeds x 2 envs = streams 0..3, 3 per-env steps each (stream-major rows)
    stream = np.repeat(np.arange(4), 3)
    step = np.tile(np.arange(3), 4)
    reward = np.array([0, 1, 0,     # seed 0, env 0: the goal at step 1 (ends there)
                       0, 0, 1,     # seed 0, env 1: the goal at step 2
                       0, 0, 0,     # seed 1, env 0: never
                       1, 0, 0])    # seed 1, env 1: the goal at step 0
    terminated = reward == 1
    truncated = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1], bool)
    cols = {"stream": stream, "step": step, "reward": reward, "terminated": terminated, "truncated": truncated}
    # seed 0's first success ends at per-env step 1: (1 + 1) x 2 envs = 4 agent env steps; seed 1's
    # at step 0: 2. No episode returns 2 (Key-to-Door's success).
    assert first_success_steps(cols, nenvs=2, success=1).tolist() == [4, 2]
    assert first_success_steps(cols, nenvs=2, success=2).tolist() == [-1, -1]
