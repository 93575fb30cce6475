"""Drawing Dark Room family frames as RGB arrays (no dynamics here)."""

from __future__ import annotations

import numpy as np

BG = (24, 26, 33)
GRID = (52, 56, 68)
GOAL = (46, 204, 113)
AGENT = (241, 196, 15)
AGENT_ON_GOAL = (231, 76, 60)
VISITED = (40, 44, 60)
KEY = (52, 152, 219)
DOOR = (211, 84, 0)


def colour_key(keydoor: bool) -> list[tuple[str, tuple[int, int, int]]]:
    """What each colour of a frame means, as (label, colour) pairs: a contact sheet's key."""
    task = [("key", KEY), ("closed door", DOOR), ("open door", GOAL)] if keydoor else [("goal", GOAL)]
    return task + [("agent", AGENT), ("agent on the goal", AGENT_ON_GOAL), ("visited in the episode", VISITED)]


def _fill(img: np.ndarray, cell: tuple[int, ...], cell_px: int, pad: int, colour: tuple[int, int, int],
          ring: bool = False) -> None:
    """Fill a cell's square (inset by ``pad``), or only its border with ``ring``."""
    r, c = cell
    y0, y1, x0, x1 = r * cell_px + pad, (r + 1) * cell_px - pad + 1, c * cell_px + pad, (c + 1) * cell_px - pad + 1
    if ring:
        w = max(1, pad // 2 + 1)
        for sl in ((slice(y0, y0 + w), slice(x0, x1)), (slice(y1 - w, y1), slice(x0, x1)),
                   (slice(y0, y1), slice(x0, x0 + w)), (slice(y0, y1), slice(x1 - w, x1))):
            img[sl] = colour
    else:
        img[y0:y1, x0:x1] = colour


def draw_frame(size: int, pos: tuple[int, int], goal: tuple[int, ...] | None, cell_px: int = 24,
               visited: np.ndarray | None = None, progress: int = 0) -> np.ndarray:
    """One frame ``[size*cell_px, size*cell_px, 3] uint8``: grid, optional visited cells, task, agent.

    ``goal`` is a goal cell (row, col), or for Key-to-Door (key row, key col, door row, door
    col) with ``progress`` 0 (no key: key filled), 1 (key held: key cell outlined, a key dot on
    the agent) or 2 (door open: the door turns green)."""
    img = np.empty((size * cell_px, size * cell_px, 3), dtype=np.uint8)
    img[:] = BG
    if visited is not None:  # [size, size] bool
        mask = np.kron(visited.astype(np.uint8), np.ones((cell_px, cell_px), np.uint8)).astype(bool)
        img[mask] = VISITED
    img[::cell_px, :] = GRID
    img[:, ::cell_px] = GRID
    pad = max(1, cell_px // 8)
    keydoor = goal is not None and len(goal) == 4
    if keydoor:
        _fill(img, goal[:2], cell_px, pad, KEY, ring=progress >= 1)
        _fill(img, goal[2:], cell_px, pad, GOAL if progress >= 2 else DOOR)
    elif goal is not None:
        _fill(img, goal, cell_px, pad, GOAL)
    r, c = pos
    yy, xx = np.mgrid[0:cell_px, 0:cell_px]
    centre = (cell_px - 1) / 2
    disc = (yy - centre) ** 2 + (xx - centre) ** 2 <= (cell_px / 2 - 1.5 * pad) ** 2
    on_goal = goal is not None and tuple(goal[-2:]) == tuple(pos) and (not keydoor or progress >= 2)
    img[r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px][disc] = AGENT_ON_GOAL if on_goal else AGENT
    if keydoor and progress >= 1:   # the agent holds the key
        dot = (yy - centre) ** 2 + (xx - centre) ** 2 <= (cell_px / 6) ** 2
        img[r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px][dot] = KEY
    return img
