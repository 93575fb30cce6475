"""Drawing Dark Room frames as RGB arrays (no dynamics here)."""

from __future__ import annotations

import numpy as np

BG = (24, 26, 33)
GRID = (52, 56, 68)
GOAL = (46, 204, 113)
AGENT = (241, 196, 15)
AGENT_ON_GOAL = (231, 76, 60)
VISITED = (40, 44, 60)


def draw_frame(size: int, pos: tuple[int, int], goal: tuple[int, int] | None, cell_px: int = 24,
               visited: np.ndarray | None = None) -> np.ndarray:
    """One frame ``[size*cell_px, size*cell_px, 3] uint8``: grid, optional visited cells, goal, agent."""
    img = np.empty((size * cell_px, size * cell_px, 3), dtype=np.uint8)
    img[:] = BG
    if visited is not None:  # [size, size] bool
        mask = np.kron(visited.astype(np.uint8), np.ones((cell_px, cell_px), np.uint8)).astype(bool)
        img[mask] = VISITED
    img[::cell_px, :] = GRID
    img[:, ::cell_px] = GRID
    pad = max(1, cell_px // 8)
    if goal is not None:
        r, c = goal
        img[r * cell_px + pad:(r + 1) * cell_px - pad + 1, c * cell_px + pad:(c + 1) * cell_px - pad + 1] = GOAL
    r, c = pos
    yy, xx = np.mgrid[0:cell_px, 0:cell_px]
    centre = (cell_px - 1) / 2
    disc = (yy - centre) ** 2 + (xx - centre) ** 2 <= (cell_px / 2 - 1.5 * pad) ** 2
    colour = AGENT_ON_GOAL if goal is not None and tuple(goal) == tuple(pos) else AGENT
    img[r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px][disc] = colour
    return img
