"""Videos of agents walking the room: frames, MP4 / GIF / PNG writers, and the render_videos stage
on a tiny trained pipeline (5x5 room, A2C sources and an AD model trained for a few steps)."""

from __future__ import annotations

import dataclasses

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import yaml
from helpers_dt import ENV, run_stage, tiny_dt, tiny_pipeline, tiny_rt, write_params
from PIL import Image

from adlib.config import RenderConfig
from adlib.envs import darkroom as dr
from adlib.histories import AGENT_FILE, find_source_goals
from adlib.incontext import play
from adlib.model import load_trained_model
from adlib.rollout import oracle_policy, rollout
from adlib.tasks import spread
from adlib.train import train
from adlib.video import (
    SHEET_PAD,
    Trajectory,
    contact_sheet,
    episode_frames,
    render_videos,
    sheet_episodes,
    source_rollout,
    trajectories,
    video_frames,
    write_gif,
    write_mp4,
    write_mp4_and_gif,
)

torch.set_num_threads(1)
CELL = 8
BAND = 3 * (9 + 3) + 6   # three text lines of the 9 px font used at cell_px = 8


def hand_made() -> Trajectory:
    # 5x5 room, start (2, 2), goal (0, 2) = cell 2: episode 0 wanders 3 steps without reaching it
    # (an episode end, whatever the cause), episode 1 walks straight up (reward on arrival)
    return Trajectory(title="test", goal=(0, 2), positions=np.array([7, 8, 13, 7, 2]),
                      episode_of_step=np.array([0, 0, 0, 1, 1]), rewards=np.array([0.0, 0, 0, 0, 1]),
                      returns=np.array([0.0, 1.0]), start=(2, 2))


def test_frames_have_one_shape_and_are_one_per_step_plus_start():
    eps = list(episode_frames(hand_made(), ENV, cell_px=CELL))
    assert [len(e) for e in eps] == [4, 3]
    frames = [f for e in eps for f in e]
    h, w, _ = frames[0].shape
    assert h == BAND + ENV.grid_size * CELL and w >= ENV.grid_size * CELL   # widened to fit the text band
    assert all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in frames)


def test_overlay_changes_with_episode_and_return_but_grid_does_not():
    eps = list(episode_frames(hand_made(), ENV, cell_px=CELL, shade_visited=False))
    start0, start1 = eps[0][0], eps[1][0]
    assert (start0[BAND:] == start1[BAND:]).all()           # same room, agent at the start
    assert (start0[:BAND] != start1[:BAND]).any()           # "episode 1/2" -> "episode 2/2"
    assert (eps[1][-2][:BAND] != eps[1][-1][:BAND]).any()   # return 0 -> 1 on arrival


def test_visited_cells_are_shaded_within_an_episode_only():
    eps = list(episode_frames(hand_made(), ENV, cell_px=CELL))
    plain = list(episode_frames(hand_made(), ENV, cell_px=CELL, shade_visited=False))
    assert (eps[0][-1] != plain[0][-1]).any()               # the path of episode 0 is shaded
    assert (eps[1][0] != plain[1][0]).sum() < (eps[0][-1] != plain[0][-1]).sum()  # reset: only the start


def test_recorded_rollout_splits_into_trajectories_with_matching_rewards():
    res = rollout(oracle_policy, ENV, [0, 5], seeds=1, episodes=3, greedy=True, record=True)
    trajs = trajectories(res, ENV, ["a", "b"])
    for traj, goal in zip(trajs, dr.tasks_in_use(ENV)[[0, 5]].tolist()):
        assert traj.goal == tuple(goal) and traj.episode_of_step.max() == 2
        eps = list(episode_frames(traj, ENV, cell_px=CELL))
        sums = np.bincount(traj.episode_of_step, weights=traj.rewards, minlength=3)
        np.testing.assert_array_equal(sums, traj.returns)   # the recorded rewards add up to the returns
        shortest = int(dr.shortest_path(ENV, torch.tensor([2, 2]), torch.tensor(goal)))
        assert len(eps) == 3 and len(eps[-1]) == 1 + shortest



def distinct_frames(n: int) -> list[np.ndarray]:
    # odd sizes on purpose: the MP4 writer pads to even ones
    frames = np.zeros((n, 41, 37, 3), np.uint8)
    for k in range(n):
        frames[k, :, : 3 * (k + 1)] = 255
    return list(frames)


def test_mp4_round_trip_frame_count_and_even_size(tmp_path):
    path = tmp_path / "v.mp4"
    write_mp4(distinct_frames(7), path, fps=5)
    video = iio.imread(path, plugin="FFMPEG", index=None)
    assert video.shape == (7, 42, 38, 3)
    assert iio.immeta(path, plugin="FFMPEG")["fps"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]   # no temp file left


def test_gif_round_trip_frame_count(tmp_path):
    path = tmp_path / "v.gif"
    write_gif(distinct_frames(6), path, fps=4)
    with Image.open(path) as im:
        assert im.n_frames == 6 and im.size == (37, 41) and im.info["duration"] == 250


def test_gif_with_palettes_made_on_threads_equals_pillows_own_from_rgb_frames(tmp_path):
    """write_gif quantizes frames on two threads; the reference hands Pillow the RGB frames."""
    rng = np.random.default_rng(3)
    frames = [np.kron(rng.integers(0, 200, (5, 4, 3)), np.ones((8, 8, 1), dtype=np.int64)).astype(np.uint8)
              for _ in range(30)]                                # 30 frames of 20 colours each, not one palette
    write_gif(iter(frames), tmp_path / "a.gif", fps=5)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp_path / "b.gif", format="GIF", save_all=True, append_images=images[1:], duration=200,
                   loop=0, optimize=False)
    assert (tmp_path / "a.gif").read_bytes() == (tmp_path / "b.gif").read_bytes()
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 30


def test_mp4_and_gif_in_one_pass_match_the_writers_apart(tmp_path):
    # the one-pass writer reads a one-shot generator; the reference writes each file from its own list
    write_mp4_and_gif((f for f in distinct_frames(6)), tmp_path / "a.mp4", tmp_path / "a.gif", fps=4)
    write_mp4(distinct_frames(6), tmp_path / "b.mp4", fps=4)
    write_gif(distinct_frames(6), tmp_path / "b.gif", fps=4)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert (tmp_path / "a.gif").read_bytes() == (tmp_path / "b.gif").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.mp4", "b.gif", "b.mp4"]   # no temp files


def test_video_frames_hold_each_episode_end_and_keep_the_asked_last_frames():
    eps = [[np.full((2, 2, 3), 10 * e + k, np.uint8) for k in range(n)] for e, n in enumerate([3, 1, 2])]
    last = {1: None, 3: None}
    frames = list(video_frames(iter(eps), hold=2, last=last))
    # by hand: episode 1 = 0 1 2 2 2, episode 2 = 10 10 10, episode 3 = 20 21 21 21
    assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 2, 2, 2, 10, 10, 10, 20, 21, 21, 21]
    assert int(last[1][0, 0, 0]) == 2 and int(last[3][0, 0, 0]) == 21 and 2 not in last


def test_mp4_or_gif_of_no_frames_is_a_clear_error(tmp_path):
    for write, name in ((write_gif, "v.gif"), (write_mp4, "v.mp4")):
        with pytest.raises(ValueError, match="no frames"):
            write(iter([]), tmp_path / name, fps=4)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_mid_video_leaves_no_file(tmp_path):
    def broken():
        yield from distinct_frames(3)
        raise RuntimeError("renderer failed")
    for write in (lambda f: write_mp4(f, tmp_path / "v.mp4", fps=4),
                  lambda f: write_mp4_and_gif(f, tmp_path / "w.mp4", tmp_path / "w.gif", fps=4)):
        with pytest.raises(RuntimeError, match="renderer failed"):
            write(broken())
    assert list(tmp_path.iterdir()) == []   # neither file nor a temp file


def test_sheet_episodes():
    assert sheet_episodes(1) == [1]
    assert sheet_episodes(4) == [1, 2, 3, 4]
    assert sheet_episodes(40) == [1, 2, 3, 5, 10, 20, 30, 40]
    assert sheet_episodes(200) == [1, 2, 3, 5, 10, 20, 30, 50, 100, 200]


def test_contact_sheet_size_matches_grid(tmp_path):
    h, w = 30, 20
    grid = [[np.full((h, w, 3), 40 * (i + j), np.uint8) for j in range(4)] for i in range(3)]
    img = contact_sheet(grid, tmp_path / "s.png")
    want = (3 * h + 4 * SHEET_PAD, 4 * w + 5 * SHEET_PAD)
    assert img.shape == (*want, 3)
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == want[::-1]
    assert (img[SHEET_PAD:SHEET_PAD + h, SHEET_PAD:SHEET_PAD + w] == grid[0][0]).all()
    titled = contact_sheet(grid, tmp_path / "t.png", title="a title")
    assert titled.shape[0] > want[0]
    assert (titled[-(h + SHEET_PAD):-SHEET_PAD, -(w + SHEET_PAD):-SHEET_PAD] == grid[2][3]).all()


def test_contact_sheet_colour_key_draws_each_swatch_in_its_colour(tmp_path):
    h, w = 30, 20
    grid = [[np.zeros((h, w, 3), np.uint8)]]
    plain = contact_sheet(grid, tmp_path / "p.png", title="t")
    red, blue = (255, 0, 0), (0, 0, 255)
    img = contact_sheet(grid, tmp_path / "k.png", title="t", key=[("red thing", red), ("blue thing", blue)])
    assert img.shape[0] > plain.shape[0]           # a line more
    assert img.shape[1] > plain.shape[1]           # widened so the key is not clipped
    assert (img[-(h + SHEET_PAD):-SHEET_PAD, SHEET_PAD:SHEET_PAD + w] == 0).all()   # the tile is still there
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert red in colours and blue in colours
    ys, xs = np.nonzero((img == red).all(-1))
    yb, xb = np.nonzero((img == blue).all(-1))
    assert xs.max() < xb.min()                     # in the order given, on one line
    assert abs(int(ys.mean()) - int(yb.mean())) <= 1


def test_colour_key_names_every_colour_a_frame_uses():
    from adlib.envs import render
    for keydoor, task in ((False, (2, 2)), (True, (1, 1, 3, 3))):
        key = dict((c, label) for label, c in render.colour_key(keydoor))
        for progress in (0, 1, 2) if keydoor else (0,):
            visited = np.zeros((5, 5), bool)
            visited[0, 0] = True
            frame = render.draw_frame(5, (0, 4), task, cell_px=12, visited=visited, progress=progress)
            used = {tuple(int(v) for v in c) for c in frame.reshape(-1, 3)} - {render.BG, render.GRID}
            assert used <= set(key), (keydoor, progress, used - set(key))


# ---------------------------------------------------------------- the stage on a tiny trained setup

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    pipe = tiny_pipeline(tmp_path_factory.mktemp("pipe"))
    out = tmp_path_factory.mktemp("ad")
    dt = tiny_dt(num_steps=4)
    train(ENV, dt, pipe["split"], pipe["data_dir"], out / "model", rt=tiny_rt())
    return {**pipe, "model": out / "model" / "model.pt", "dt": dt}


def test_source_agent_rollout_is_its_own_goal(trained):
    goal = trained["split"]["train"][0]
    res = source_rollout(find_source_goals(trained["sources"], 1)[goal] / AGENT_FILE, ENV, episodes=2)
    assert res.goal_ids.tolist() == [goal] and res.positions.shape[0] == 1


def test_render_videos_writes_every_file(trained, tmp_path):
    cfg = RenderConfig(source_goals=1, ad_goals=2, ad_episodes=4, fps=4, cell_px=CELL)
    split = trained["split"]
    s = render_videos(ENV, trained["dt"], cfg, split, trained["sources"], 1, trained["model"], tmp_path / "videos",
                      source_episodes=2, temperature=1.0)
    (tr,), (te,), ad = spread(split["train"], 1), spread(split["held_out"], 1), spread(split["held_out"], 2)
    want = {f"source_train_goal_{tr:03d}.mp4", f"source_held_out_goal_{te:03d}.mp4", "ad_contact_sheet.png",
            *(f"ad_held_out_goal_{g:03d}.{ext}" for g in ad for ext in ("mp4", "gif"))}
    assert {p.name for p in (tmp_path / "videos").iterdir()} == want == set(s["files"])
    assert sorted(s["ad_returns"]) == sorted(ad) and all(len(r) == 4 for r in s["ad_returns"].values())
    with Image.open(tmp_path / "videos" / "ad_contact_sheet.png") as im:   # 2 goals x episodes 1, 2, 3, 4
        frame_w = ENV.grid_size * CELL
        assert im.size[0] >= 4 * frame_w + 5 * SHEET_PAD and im.size[1] > 2 * (BAND + frame_w)


def test_render_videos_films_ad_at_the_given_temperature(trained, tmp_path):
    """AD is filmed as eval_dt plays it: the filmed returns are play()'s at that temperature and seed."""
    cfg = RenderConfig(source_goals=0, ad_goals=2, ad_episodes=6, fps=4, cell_px=CELL)
    split, ad = trained["split"], spread(trained["split"]["held_out"], 2)
    model, _ = load_trained_model(trained["model"], ENV, trained["dt"], split)
    got = {}
    for T in (0.05, 5.0):
        s = render_videos(ENV, trained["dt"], cfg, split, trained["sources"], 1, trained["model"],
                          tmp_path / str(T), temperature=T)
        want = play(model, ENV, ad, seeds=1, episodes=6, greedy=False, temperature=T, seed=0).returns
        got[T] = np.array([s["ad_returns"][g] for g in ad])
        np.testing.assert_array_equal(got[T], want)
    assert not np.array_equal(got[0.05], got[5.0])


def test_render_videos_stage_cli(trained, tmp_path):
    params = write_params(tmp_path / "params.yaml", trained["dt"])
    raw = yaml.safe_load(params.read_text())
    raw["render"] = {"source_goals": 1, "ad_goals": 1, "ad_episodes": 2, "fps": 4, "cell_px": CELL}
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    r = run_stage(["-m", "stages.render_videos", "--params", str(params), "--split", str(trained["split_path"]),
                   "--sources", str(trained["sources"]), "--model", str(trained["model"]),
                   "--out", str(tmp_path / "v")])
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "v").iterdir())) == 5 and "5 files" in r.stderr


def test_model_of_other_env_raises(trained, tmp_path):
    other = dataclasses.replace(ENV, max_episode_steps=11)
    with pytest.raises(ValueError, match="params.yaml has env"):
        render_videos(other, trained["dt"], RenderConfig(source_goals=0, ad_goals=1, ad_episodes=1, cell_px=CELL),
                      trained["split"],
                      trained["sources"], 1, trained["model"], tmp_path / "v", temperature=1.0)
    assert not (tmp_path / "v").exists()


def test_model_trained_on_another_split_raises(trained, tmp_path):
    test = list(trained["split"]["held_out"])
    test[test.index(spread(test, 1)[0])] = trained["split"]["train"][0]   # the goal that will be filmed
    split = {**trained["split"], "held_out": test}
    with pytest.raises(ValueError, match="was trained on goals .* which the split holds out"):
        render_videos(ENV, trained["dt"], RenderConfig(source_goals=0, ad_goals=1, ad_episodes=1, cell_px=CELL), split,
                      trained["sources"], 1, trained["model"], tmp_path / "v", temperature=1.0)
