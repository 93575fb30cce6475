"""Videos and contact sheets of agents walking Dark Room (the render_videos stage).

A :class:`Trajectory` is what :func:`adlib.rollout.rollout` records for one run: the cell
reached by every step and the episode it belongs to. :func:`episode_frames` draws it with
:func:`adlib.envs.render.draw_frame` under a text band (title, goal, episode, returns) and
shades the cells visited in the current episode, so AD's search, then its straight walk to
the goal, can be seen. MP4 goes through imageio's ffmpeg plugin (the binary ships in the
imageio-ffmpeg wheel, no system ffmpeg), GIF and PNG through Pillow. Frames are drawn one episode
at a time and streamed to the writers: an MP4 needs the memory of one frame whatever its length; a GIF
grows by one palette frame (a third of the RGB size) per distinct frame, which Pillow's encoder keeps.
Every file is written atomically.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from adlib import a2c
from adlib.config import DTConfig, EnvConfig, RenderConfig, to_dict
from adlib.envs import darkroom as dr
from adlib.envs.render import BG, GOAL, colour_key, draw_frame
from adlib.histories import AGENT_FILE, find_source_goals
from adlib.incontext import play
from adlib.io import DataError, atomic_dir, atomic_path, check_env, load_torch
from adlib.logs import bar
from adlib.model import load_trained_model
from adlib.rollout import PlayResult, rollout
from adlib.tasks import spread

TEXT = (236, 239, 244)
DIM_TEXT = (150, 156, 170)
HOLD_END = 2          # extra copies of an episode's last frame, so the arrival can be seen
SOURCE_EPISODES = 5   # episodes filmed per source agent (a trained agent walks straight there)
SHEET_PAD = 6


@dataclass
class Trajectory:
    """One recorded run: ``positions [T]`` cell reached by each step (pre-reset),
    ``episode_of_step [T]``, ``rewards [T]`` of each step, and the return of every episode
    ``returns [E]``."""

    title: str
    goal: tuple[int, ...]   # goal cell, or key cell + door cell (keydoor)
    positions: np.ndarray
    episode_of_step: np.ndarray
    rewards: np.ndarray
    returns: np.ndarray
    start: tuple[int, int] | None   # start cell of every episode; None with random starts (not recorded)


def trajectories(res: PlayResult, env_cfg: EnvConfig, titles: list[str]) -> list[Trajectory]:
    """Split a recorded :class:`PlayResult` into one :class:`Trajectory` per run."""
    if res.trace is None:
        raise ValueError("the PlayResult was not recorded (rollout/play with record=True)")
    goals = dr.tasks_in_use(env_cfg)[torch.as_tensor(res.goal_ids)].tolist()
    start = None if env_cfg.random_start else dr.start_pos(env_cfg)
    out = []
    for i, title in enumerate(titles):
        # lockstep runs: a run that finished early keeps stepping until the last one is done
        keep = res.episode_of_step[i] < res.returns.shape[1]
        out.append(Trajectory(title, tuple(goals[i]), res.positions[i][keep], res.episode_of_step[i][keep],
                              res.trace["reward"][i][keep], res.returns[i], start))
    return out


def _font(px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=px)   # Pillow's bundled font: no system fonts needed


def _text_px(cell_px: int) -> int:
    return max(9, round(cell_px * 0.5))


def overlay(img: np.ndarray, lines: list[str], colours: list[tuple[int, int, int]], cell_px: int,
            width: int | None = None) -> np.ndarray:
    """``img [H, W, 3]`` centred on ``width`` columns under a band of text ``lines`` -> ``[H + band, width, 3]``."""
    px = _text_px(cell_px)
    width = max(width or 0, img.shape[1])
    band = Image.new("RGB", (width, 3 + len(lines) * (px + 3) + 3), BG)
    draw, font = ImageDraw.Draw(band), _font(px)
    for k, (line, colour) in enumerate(zip(lines, colours)):
        draw.text((4, 3 + k * (px + 3)), line, fill=colour, font=font)
    room = np.empty((img.shape[0], width, 3), np.uint8)
    room[:] = BG
    left = (width - img.shape[1]) // 2
    room[:, left:left + img.shape[1]] = img
    return np.concatenate([np.asarray(band), room], 0)


def episode_frames(traj: Trajectory, env_cfg: EnvConfig, cell_px: int = 24, shade_visited: bool = True
                   ) -> Iterator[list[np.ndarray]]:
    """Frames ``[H, W, 3] uint8`` of each episode in turn (drawn lazily, one episode at a time): the start
    cell (when known), then one per step.

    Every frame of a trajectory has the same size: the room, widened where the text needs it.
    """
    size = env_cfg.grid_size
    n_eps = len(traj.returns)
    top = max(float(traj.returns.max()), 0.0)
    font = _font(_text_px(cell_px))
    task = task_label(traj.goal)
    widest = [traj.title, f"{task} | episode {n_eps}/{n_eps}", f"return {top:g} | last episode {top:g}"]
    width = 8 + int(np.ceil(max(font.getlength(s) for s in widest)))
    for e in range(n_eps):
        steps = np.flatnonzero(traj.episode_of_step == e)
        last = f"{traj.returns[e - 1]:g}" if e > 0 else "-"
        visited = np.zeros((size, size), bool)
        # observations -> cells (keydoor observations add size**2 while the key is held)
        cells = ([traj.start] if traj.start is not None else []) + [divmod(int(p) % (size * size), size)
                                                                    for p in traj.positions[steps]]
        gains = ([0.0] if traj.start is not None else []) + traj.rewards[steps].tolist()
        frames, ret = [], 0.0
        for cell, r in zip(cells, gains):
            ret += r
            visited[cell] = True
            # keydoor: rewards so far this episode = 1 key held, 2 door open
            img = draw_frame(size, cell, traj.goal, cell_px, visited if shade_visited else None, progress=int(ret))
            lines = [traj.title, f"{task} | episode {e + 1}/{n_eps}", f"return {ret:g} | last episode {last}"]
            frames.append(overlay(img, lines, [DIM_TEXT, TEXT, GOAL if ret > 0 else TEXT], cell_px, width))
        yield frames


def task_label(goal: tuple[int, ...]) -> str:
    """``goal (r, c)``, or ``key (r, c) door (r, c)`` for Key-to-Door."""
    if len(goal) == 4:
        return f"key {tuple(goal[:2])} door {tuple(goal[2:])}"
    return f"goal {tuple(goal)}"


def video_frames(episodes: Iterable[list[np.ndarray]], hold: int = HOLD_END,
                 last: dict[int, np.ndarray | None] | None = None) -> Iterator[np.ndarray]:
    """The frames of a video, lazily: episodes in order, each one's last frame held ``hold`` more times.
    ``last``, if given, collects the last frame of every episode whose 1-based number is a key of it."""
    for e, ep in enumerate(episodes, 1):
        if last is not None and e in last:
            last[e] = ep[-1]
        yield from ep + ep[-1:] * hold


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height and width (yuv420p H.264 needs them) with the background colour."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    out = np.empty((h + h % 2, w + w % 2, 3), np.uint8)
    out[:] = BG
    out[:h, :w] = frame
    return out


@contextmanager
def _mp4_writer(path: str | Path, fps: int) -> Iterator[Callable[[np.ndarray], None]]:
    """H.264 MP4 via imageio's FFMPEG plugin (binary from the imageio-ffmpeg wheel), written atomically:
    yields a function that streams one ``[H, W, 3] uint8`` frame to ffmpeg. No frames is an error;
    on any error ffmpeg is stopped and nothing is written."""
    count = 0

    def append(frame: np.ndarray) -> None:
        nonlocal count
        writer.append_data(_even(frame))
        count += 1

    with atomic_path(path) as tmp, iio.imopen(tmp, "w", plugin="FFMPEG", extension=".mp4") as file:
        # the temp name ends in .tmp: imageio is given the extension and ffmpeg the container;
        # macro_block_size=2 because frames are padded to even sizes here (no resizing)
        writer = file.legacy_get_writer(fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=2,
                                        ffmpeg_log_level="error",
                                        output_params=["-f", "mp4", "-movflags", "+faststart"])
        try:
            yield append
            if count == 0:
                raise ValueError(f"{path}: no frames to write")
        except BaseException:
            with suppress(Exception):   # stop ffmpeg now, not at garbage collection; the error is what counts
                writer.close()
            raise
        writer.close()


def write_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: int) -> None:
    """An MP4 of ``frames``, consumed one at a time, written atomically."""
    with _mp4_writer(path, fps) as append:
        for frame in frames:
            append(frame)


def gif_frame(frame: np.ndarray) -> Image.Image:
    """An RGB frame as the GIF encoder would turn it into a palette image itself (Pillow's
    ``_normalize_mode``: an adaptive palette of the frame's own colours), so the file is the same."""
    image = Image.fromarray(frame)
    return image.convert("P", palette=Image.Palette.ADAPTIVE) if image.mode == "RGB" else image


def ordered_map(fn: Callable, items: Iterable, threads: int, ahead: int = 8) -> Iterator:
    """``map(fn, items)`` on ``threads`` threads, in order, pulling at most ``ahead`` items beyond the one
    yielded (``items`` stays a stream: frames are made as the encoder takes them)."""
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_gif(frames: Iterable[np.ndarray], path: str | Path, fps: int) -> None:
    """Looping GIF via Pillow, written atomically; ``frames`` are consumed one at a time. Their
    palettes are computed on two threads while the frames are drawn (Pillow's quantizer releases
    the GIL; it was 55 % of render_videos' time on one core): the file is byte for byte the one
    Pillow writes from the RGB frames."""
    images = ordered_map(gif_frame, frames, threads=2)
    first = next(images, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    with atomic_path(path) as tmp:
        first.save(tmp, format="GIF", save_all=True, append_images=images, duration=round(1000 / fps),
                   loop=0, optimize=False)


def write_mp4_and_gif(frames: Iterable[np.ndarray], mp4: str | Path, gif: str | Path, fps: int) -> None:
    """Both videos of ``frames`` in one pass: the GIF encoder pulls each frame, which goes to ffmpeg on the way.
    Each file is atomic on its own (the GIF is in place before the MP4 is finished): render_videos writes
    both into one atomic directory."""
    with _mp4_writer(mp4, fps) as append:
        def tee() -> Iterator[np.ndarray]:
            for frame in frames:
                append(frame)
                yield frame
        write_gif(tee(), gif, fps)


def sheet_episodes(n: int) -> list[int]:
    """1-based episodes shown on a contact sheet: 1, 2, 3, 5, 10, 20, 30, 50, 100, ... and the last."""
    picks = [1, 2, 3, 5]
    k = 10
    while k < n:
        picks += [k, 2 * k, 3 * k, 5 * k]
        k *= 10
    return sorted({p for p in picks if p < n} | {n})


def contact_sheet(grid: list[list[np.ndarray]], path: str | Path, title: str | None = None,
                  cell_px: int = 24, key: list[tuple[str, tuple[int, int, int]]] | None = None) -> np.ndarray:
    """A PNG of ``grid[row][col]`` frames with gaps, an optional title and an optional colour key
    (a line of (label, colour) swatches under the title); returns the image."""
    h = max(f.shape[0] for r in grid for f in r)   # tiles of different sizes get the largest slot
    w = max(f.shape[1] for r in grid for f in r)
    rows, cols = len(grid), max(len(r) for r in grid)
    font = _font(max(10, round(cell_px * 0.6)))
    line = font.getbbox("Ag")[3] + SHEET_PAD          # height of one text line
    side = line - SHEET_PAD                           # a key swatch's side
    swatches, x = [], SHEET_PAD                       # (x of the swatch, label, colour), left to right
    for label, colour in key or []:
        swatches.append((x, label, colour))
        x += side + SHEET_PAD + font.getbbox(label)[2] + 3 * SHEET_PAD
    width = max(cols * w + (cols + 1) * SHEET_PAD, x,                 # never clip the title or the key
                font.getbbox(title)[2] + 2 * SHEET_PAD if title else 0)
    key_y = SHEET_PAD + (line if title else 0)
    top = key_y + (line if key else 0) if title or key else 0
    sheet = Image.new("RGB", (width, top + rows * h + (rows + 1) * SHEET_PAD), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((SHEET_PAD, SHEET_PAD), title, fill=TEXT, font=font)
    for x, label, colour in swatches:
        draw.rectangle((x, key_y, x + side - 1, key_y + side - 1), fill=colour, outline=TEXT)
        draw.text((x + side + SHEET_PAD, key_y), label, fill=TEXT, font=font)
    for i, row in enumerate(grid):
        for j, frame in enumerate(row):
            xy = (SHEET_PAD + j * (w + SHEET_PAD), top + SHEET_PAD + i * (h + SHEET_PAD))
            sheet.paste(Image.fromarray(frame), xy)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG", optimize=True)
    return np.asarray(sheet)


# ---------------------------------------------------------------- the agents

def source_rollout(agent_path: str | Path, env_cfg: EnvConfig, episodes: int, seed: int = 0) -> PlayResult:
    """The trained A2C agent of one goal (its first seed) plays ``episodes`` episodes, sampled actions."""
    ckpt = load_torch(agent_path)
    check_env(agent_path, ckpt["env"], to_dict(env_cfg), "train_source_agents (dvc repro)")
    logits_tab, _ = a2c.policy_value_tables({k: v[:1] for k, v in ckpt["params"].items()})   # [1, S, A]
    policy = lambda obs, t, prev, state: logits_tab[0][obs]                                    # [N, A]
    return rollout(policy, env_cfg, [int(ckpt["goal_id"])], seeds=1, episodes=episodes, greedy=False, seed=seed,
                   record=True)


def render_videos(env_cfg: EnvConfig, dt_cfg: DTConfig, cfg: RenderConfig, split: dict, sources_dir: str | Path,
                  n_shards: int, model_path: str | Path, out_dir: str | Path, seed: int = 0,
                  source_episodes: int = SOURCE_EPISODES, *, temperature: float) -> dict:
    """Write the videos and the AD contact sheet into ``out_dir`` (replaced as a whole); return a summary.

    ``source_train_goal_XXX.mp4`` / ``source_held_out_goal_XXX.mp4``: ``source_goals`` training /
    held-out goals' A2C agents (spread over the room); ``ad_held_out_goal_XXX.{mp4,gif}``: AD in context on
    ``ad_goals`` held-out goals (spread) for ``ad_episodes`` episodes, actions sampled at ``temperature``
    (eval.temperature: AD is filmed as it is evaluated); ``ad_contact_sheet.png``.
    """
    t0 = time.perf_counter()
    found = find_source_goals(sources_dir, n_shards)
    jobs = ([("train", g) for g in spread(split["train"], cfg.source_goals)]
            + [("held_out", g) for g in spread(split["held_out"], cfg.source_goals)])
    missing = [g for _, g in jobs if g not in found]
    if missing:
        raise DataError(f"{sources_dir}: no source agent for goals {missing} (run train_source_agents)")
    ad_goals = spread(list(split["held_out"]), cfg.ad_goals)
    summary: dict = {"files": [], "ad_returns": {}}
    model, _ = load_trained_model(model_path, env_cfg, dt_cfg, split)   # before any work: the params' model
    with atomic_dir(out_dir) as tmp, bar(len(jobs) + 2 * len(ad_goals) + 1, "videos", unit="file") as pbar:
        for group, g in jobs:
            label = "training" if group == "train" else "held-out"
            res = source_rollout(found[g] / AGENT_FILE, env_cfg, source_episodes, seed)
            (traj,) = trajectories(res, env_cfg, [f"A2C source agent, {label} goal {g}"])
            name = f"source_{group}_goal_{g:03d}.mp4"
            write_mp4(video_frames(episode_frames(traj, env_cfg, cfg.cell_px)), tmp / name, cfg.fps)
            summary["files"].append(name)
            pbar.update(1)

        rows = []
        if ad_goals:
            res = play(model, env_cfg, ad_goals, seeds=1, episodes=cfg.ad_episodes, greedy=False,
                       temperature=temperature, seed=seed, record=True)
            titles = [f"AD in context, held-out goal {g}" for g in ad_goals]
            picks = sheet_episodes(cfg.ad_episodes)
            for g, traj in zip(ad_goals, trajectories(res, env_cfg, titles)):
                last = dict.fromkeys(picks)   # the contact sheet's frames, kept as the video streams past
                names = [f"ad_held_out_goal_{g:03d}.{ext}" for ext in ("mp4", "gif")]
                write_mp4_and_gif(video_frames(episode_frames(traj, env_cfg, cfg.cell_px), last=last),
                                  *(tmp / n for n in names), cfg.fps)
                summary["files"] += names
                pbar.update(2)
                rows.append([last[k] for k in picks])
                summary["ad_returns"][g] = traj.returns.tolist()
            title = (f"AD in context on held-out goals (rows), frozen weights: last frame of episodes "
                     f"{', '.join(map(str, picks))}")
            contact_sheet(rows, tmp / "ad_contact_sheet.png", title, cfg.cell_px,
                          key=colour_key(env_cfg.kind == "keydoor"))
            summary["files"].append("ad_contact_sheet.png")
        pbar.update(1)
    summary["seconds"] = time.perf_counter() - t0
    return summary
