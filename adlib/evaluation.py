"""Baselines, metrics and plots of in-context evaluation (held-out goals vs training goals)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from adlib.config import DTConfig, EnvConfig, EvalConfig, EvalRuntime
from adlib.device import pick_device
from adlib.envs import darkroom as dr
from adlib.histories import HISTORY_FILE, episode_table, find_source_goals, read_table
from adlib.incontext import play_many
from adlib.io import DataError, atomic_path, file_sha256, write_json
from adlib.model import load_trained_model
from adlib.noise import explorer_of
from adlib.rollout import PlayResult, Runs, random_policy, rollout
from adlib.tasks import spread


def report_points(episodes: int) -> list[int]:
    """Episodes at which metrics are reported: 1, 2, 3, 5, 10, 50, 100, 200, 300, 500, 1000, ... up to
    ``episodes`` (the early ones are where a search shows)."""
    pts = [1, 2, 3, 5, 10, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000]
    return [p for p in pts if p <= episodes] + ([episodes] if episodes not in pts else [])


def source_curve(found: dict[int, Path], goals: list[int], episodes: int) -> np.ndarray:
    """Mean return per episode ``[episodes]`` of the source A2C agents on ``goals``, from
    their own learning histories (every stream from its first episode); ``found`` maps goal
    ids to their source folders (:func:`adlib.histories.find_source_goals`)."""
    curves = []
    for g in goals:
        path = found[g] / HISTORY_FILE
        t = read_table(path, columns=["stream", "reward", "terminated", "truncated"])
        cols = {c: t.column(c).to_numpy() for c in t.column_names}
        ep = episode_table(cols)
        for s in np.unique(ep["stream"]):
            r = ep["return"][ep["stream"] == s][:episodes]
            if len(r) < episodes:
                r = np.concatenate([r, np.full(episodes - len(r), np.nan)])
            curves.append(r)
    return np.nanmean(np.stack(curves), 0)


# Random-policy baseline: 64 parallel runs x 32 episodes per goal (2048 episodes per goal,
# a standard error below 0.01 on a success rate).
RANDOM_RUNS_PER_GOAL, RANDOM_EPISODES = 64, 32


def random_return(env_cfg: EnvConfig, goals: list[int], seed: int = 0) -> float:
    """Mean episode return of the uniform random policy on ``goals`` (Monte Carlo)."""
    res = rollout(random_policy, env_cfg, goals, RANDOM_RUNS_PER_GOAL, RANDOM_EPISODES, greedy=False, seed=seed)
    return float(res.returns.mean())


def optimum_returns(env_cfg: EnvConfig, goals: list[int]) -> np.ndarray:
    """Per task ``[len(goals)]``: the return of the known-task optimal policy from the fixed start."""
    d = dr.shortest_path(env_cfg, torch.tensor(dr.start_pos(env_cfg)), dr.tasks_in_use(env_cfg)[torch.tensor(goals)])
    if env_cfg.reward_mode == "stand" and not env_cfg.terminate_on_goal:
        return (env_cfg.max_episode_steps - d + 1).clamp(min=0).float().numpy()
    return ((d <= env_cfg.max_episode_steps).float() * dr.success_return(env_cfg)).numpy()


def optimum_return(env_cfg: EnvConfig, goals: list[int]) -> float:
    """Mean return of the known-task optimal policy from the fixed start."""
    return float(optimum_returns(env_cfg, goals).mean())


def random_search_runs(env_cfg: EnvConfig, goals: list[int], runs: int, episodes: int, seed: int = 0) -> np.ndarray:
    """Return per run and episode ``[len(goals) * runs, episodes]`` (runs goal-major) of random search:
    uniformly random actions until the first success, then the known-task optimum in every later episode.
    Fixed start only (the optimum is measured from it)."""
    if env_cfg.random_start:
        raise ValueError("random search's optimum is measured from the fixed start (env.random_start is true)")
    res = rollout(random_policy, env_cfg, goals, runs, episodes, greedy=False, seed=seed)
    found_before = np.cumsum(res.success, 1) - res.success > 0                     # [N, E]
    best = np.repeat(optimum_returns(env_cfg, goals), runs)[:, None]                # [N, 1] run = goal-major
    return np.where(found_before, best, res.returns)


def random_search_curve(env_cfg: EnvConfig, goals: list[int], episodes: int, seed: int = 0) -> np.ndarray:
    """Mean return per episode ``[episodes]`` of a learner that searches like a random walk and
    exploits perfectly (:func:`random_search_runs`, ``RANDOM_RUNS_PER_GOAL`` runs per goal): what
    a learner scores whose search is a random walk and whose exploitation is perfect (in the
    paper variant a learner that stays on a goal found mid-episode scores more in that
    episode). All NaN with ``random_start``."""
    if env_cfg.random_start:
        return np.full(episodes, np.nan)
    return random_search_runs(env_cfg, goals, RANDOM_RUNS_PER_GOAL, episodes, seed).mean(0)


# Systematic-explorer baseline: runs per goal (its only randomness is the tie-breaking)
SEARCHER_RUNS_PER_GOAL = 16


def searcher_curve(env_cfg: EnvConfig, goals: list[int], episodes: int, seed: int = 0) -> np.ndarray:
    """Mean return per episode ``[episodes]`` of the systematic explorer (:func:`adlib.noise.explorer_of`:
    knows the room, not the task; walks to the nearest cell it has not seen, then the shortest
    path once a reward showed where the task pays) on ``goals``: the searching learner's yardstick."""
    res = rollout(explorer_of(env_cfg), env_cfg, goals, SEARCHER_RUNS_PER_GOAL, episodes, greedy=False, seed=seed)
    return res.returns.mean(0)


def explorer_curve(env_cfg: EnvConfig, episodes: int) -> np.ndarray:
    """The idealised perfect explorer of SPEC.md §6: it does not know the goal, reveals
    ``max_episode_steps`` new cells per episode (goal found at a uniform step), then walks
    straight to it. Averaged over all goals; for 9x9 / 20 steps / paper variant it gives
    2.63, 6.75, 10.88, 15.0, then 16.5. In larger rooms far cells take more than one step each
    to reveal: there it bounds the success rate from above, but not the paper variant's return
    (it credits found goals with the room's mean optimum, an explorer finds near ones first;
    benchmarks/explorers.py brackets both). Key-to-Door has no such closed form: all NaN there."""
    if env_cfg.kind == "keydoor":
        return np.full(episodes, np.nan)
    n, m = len(dr.tasks_in_use(env_cfg)), env_cfg.max_episode_steps
    opt = optimum_return(env_cfg, list(range(n)))
    if env_cfg.reward_mode == "stand" and not env_cfg.terminate_on_goal:
        find_value = float(np.mean([m - j + 1 for j in range(1, m + 1)]))
    else:
        find_value = 1.0
    k = np.arange(1, episodes + 1)
    before = np.minimum(1.0, (k - 1) * m / n)
    now = np.minimum(1.0, k * m / n) - before
    return before * opt + now * find_value


def summarize(res: PlayResult, seeds: int, env_cfg: EnvConfig) -> dict:
    """Return / success / path-efficiency at report points, first/last 10 episodes; mean,
    standard deviation over seeds (each seed's value is its mean over goals) and over goals
    (``goal_std``: each goal's value is its mean over seeds)."""
    E = res.returns.shape[1]
    G = len(res.goal_ids) // seeds

    def stat(x: np.ndarray) -> dict:      # x: [N, ...] -> per-seed / per-goal means -> mean, stds
        per_run = x.reshape(G, seeds, -1).mean(axis=2)                          # [G, seeds]
        per_seed, per_goal = per_run.mean(0), per_run.mean(1)
        return {"mean": round(float(per_seed.mean()), 4), "std": round(float(per_seed.std()), 4),
                "goal_std": round(float(per_goal.std()), 4)}

    k = min(10, E)
    out = {"episodes": E, "runs": len(res.goal_ids), "goals": G, "seeds": seeds}
    for p in report_points(E):
        out[f"return@{p}"] = stat(res.returns[:, p - 1:p])
    out["return_first10"] = stat(res.returns[:, :k])
    if E >= 20:
        out["return_11to20"] = stat(res.returns[:, 10:20])
    out["return_last10"] = stat(res.returns[:, -k:])
    if env_cfg.terminate_on_goal or env_cfg.kind == "keydoor":   # success: goal reached / door opened
        for p in report_points(E):
            out[f"success@{p}"] = stat(res.success[:, p - 1:p].astype(float))
        out["success_first10"] = stat(res.success[:, :k].astype(float))
        if E >= 20:
            out["success_11to20"] = stat(res.success[:, 10:20].astype(float))
        out["success_last10"] = stat(res.success[:, -k:].astype(float))
        out.update(search_then_exploit(res.success.astype(bool)))
    if env_cfg.terminate_on_goal:   # episode lengths measure the path only when the episode ends there
        last = res.success[:, -k:]
        ratio = res.lengths[:, -k:] / np.maximum(1, res.shortest)[:, None]
        out["steps_over_shortest_last10"] = round(float(ratio[last].mean()), 4) if last.any() else None
        on_shortest = last & (res.lengths[:, -k:] == res.shortest[:, None])
        out["shortest_path_share_last10"] = stat(on_shortest.astype(float))
    return out


def search_then_exploit(success: np.ndarray) -> dict:
    """``success`` [runs, E] -> ``found_by10``: share of runs with a success in their first 10
    episodes (the search); ``success_after_first``: share of the runs with a next episode whose
    episode right after their first success succeeds too (the exploitation; None if no run has one)."""
    runs, E = success.shape
    hit = success.any(1)
    first = np.where(hit, success.argmax(1), E)                        # [runs] 0-based; E = never
    has_next = first + 1 < E
    nxt = success[np.flatnonzero(has_next), first[has_next] + 1]
    return {"found_by10": round(float((first < min(10, E)).mean()), 4),
            "success_after_first": round(float(nxt.mean()), 4) if has_next.any() else None}


def write_curves_csv(path: str | Path, columns: dict[str, np.ndarray]) -> None:
    """Per-episode curves as CSV (``episode`` first), for ``dvc plots``."""
    n = len(next(iter(columns.values())))
    lines = [",".join(["episode", *columns])]
    for i in range(n):
        lines.append(",".join([str(i + 1), *(f"{float(v[i]):.5f}" for v in columns.values())]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# a curve named NAME + STD_SUFFIX is the spread of curve NAME: plotted as a band, not a line
STD_SUFFIX = "_std"


def moving_average(y: np.ndarray, k: int = 5) -> np.ndarray:
    """Centred moving average of ``k``, shrinking at the edges, ignoring NaNs."""
    ok = np.isfinite(y)
    num = np.convolve(np.where(ok, y, 0.0), np.ones(k), mode="same")
    den = np.convolve(ok.astype(float), np.ones(k), mode="same")
    return num / np.maximum(den, 1)


def plot_curves(path: str | Path, curves: dict[str, np.ndarray], title: str, ylabel: str,
                reference: dict[str, tuple[list[int], list[float]]] | None = None, band_over: str = "seeds",
                x_log: bool = False, smooth: bool = True) -> None:
    """A PNG of learning curves against episode number; curves longer than 10 episodes (but the
    constant baselines) are smoothed with a moving average of 5, and the title says so. A
    curve's ``_std`` partner is drawn as a band labelled '± std over ``band_over``'."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    styles = {"random search": dict(ls="--", color="tab:brown"), "random actions": dict(ls=":", color="grey"),
              "shortest path": dict(ls="--", color="black"), "explorer": dict(ls="-.", color="tab:purple"),
              "systematic explorer": dict(ls="-.", color="tab:olive", lw=2.0)}
    smoothed = False
    for name, y in curves.items():
        if name.endswith(STD_SUFFIX):
            continue
        x = np.arange(1, len(y) + 1)
        st = next((v for k, v in styles.items() if name.startswith(k)), {})
        if smooth and len(y) > 10 and not st:
            y, smoothed = moving_average(y), True
        line, = ax.plot(x, y, label=name, **{"lw": 1.8 if not st else 1.2, **st})
        if name + STD_SUFFIX in curves:   # the spread: mean +- std (smoothed like the mean)
            sd = moving_average(curves[name + STD_SUFFIX]) if smooth and len(y) > 10 else curves[name + STD_SUFFIX]
            ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.2, lw=0,
                            label=f"{name} ± std over {band_over}")
    for name, (xs, ys) in (reference or {}).items():
        ax.plot(xs, ys, "D", ms=5, label=name, color="black")   # markers only: no cycle colour a curve uses
    if x_log:
        ax.set_xscale("log")
    ax.set_xlabel("episode of in-context play")
    ax.set_ylabel(ylabel)
    ax.set_title(title + (" (moving average of 5)" if smoothed else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)   # beside, never on a curve
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# how plots name random_search_curve and searcher_curve
RANDOM_SEARCH_LABEL = "random search, then shortest paths"
SEARCHER_LABEL = "systematic explorer (same goals)"

# how plots name the curves of metrics/curves/*.csv (the CSV keeps the short column names)
CURVE_LABELS = {"ad_sampled": "AD, sampled", "ad_greedy": "AD, greedy", "a2c_source": "A2C source (its own learning)",
                "random": "random actions", "optimum": "shortest path (knows the goal)",
                "random_search": RANDOM_SEARCH_LABEL, "systematic_explorer": SEARCHER_LABEL}

# the AD paper's held-out curve on Dark Room, paper variant (episode, return), read off its Fig. 4 (SPEC.md §6)
AD_PAPER = [(1, 1.3), (100, 4.5), (200, 9.8), (300, 12.1), (500, 13.4), (1000, 14.1)]


def plot_report(curves_dir: str | Path, curves: dict[str, dict[str, np.ndarray]], n_goals: dict[str, int],
                variant: str, env_cfg: EnvConfig) -> None:
    """eval_dt's PNGs: per group, AD's curves with the baselines; the AD paper's points beside
    the paper variant's held-out curve (9x9 room, +1 per step on the goal)."""
    E = len(curves["held_out"]["ad_sampled"])
    ylabel = "success rate (return)" if env_cfg.terminate_on_goal else "return per episode"
    reference = None
    if (env_cfg.kind == "darkroom" and not env_cfg.terminate_on_goal and env_cfg.reward_mode == "stand"
            and env_cfg.grid_size == 9):
        reference = {"AD paper (Fig. 4)": ([x for x, _ in AD_PAPER if x <= E], [y for x, y in AD_PAPER if x <= E])}
    explorer = "explorer (ideal, all goals" + (", fixed start)" if not env_cfg.random_start else ", from the centre)")
    task = "(key, door) pairs" if env_cfg.kind == "keydoor" else "goals"
    titles = {"held_out": f"AD on {n_goals['held_out']} held-out {task}, {variant}",
              "train_goals": f"AD on {n_goals['train_goals']} training {task} (over-fitting check), {variant}"}
    for group, cs in curves.items():
        names = {**CURVE_LABELS, "explorer": explorer}
        shown = {}
        for k, v in cs.items():
            base = k[:-len(STD_SUFFIX)] if k.endswith(STD_SUFFIX) else k
            if not np.isnan(v).all():
                shown[names.get(base, base) + k[len(base):]] = v
        plot_curves(Path(curves_dir) / f"{group}.png", shown, titles[group], ylabel,
                    reference if group == "held_out" else None,
                    x_log=not env_cfg.terminate_on_goal and E >= 100)   # the paper's long horizon


# The headline numbers of metrics/eval.json (what `dvc metrics diff` and `dvc exp show`
# compare between experiments), picked from the full report (metrics/eval_detail.json):
# variant score -> group -> mode (or "baselines") -> keys (means over seeds).
HEADLINE = {
    "success": {  # original variant: an episode ends on the goal
        "held_out": {"sampled": ["success_first10", "success_11to20", "success@50", "success_last10",
                                "found_by10", "success_after_first",
                                "steps_over_shortest_last10", "shortest_path_share_last10"],
                    "greedy": ["success_last10"],
                    "baselines": ["a2c_source_last10", "random", "random_search_11to20",
                                  "systematic_explorer_11to20"]},
        "train_goals": {"sampled": ["success_last10"], "greedy": ["success_last10"]},
    },
    "return": {  # paper variant: +1 per step on the goal
        "held_out": {"sampled": ["return_first10", "return@50", "return@100", "return_last10"],
                    "greedy": ["return_last10"], "baselines": ["a2c_source_last10", "random", "optimum"]},
        "train_goals": {"sampled": ["return_last10"], "greedy": ["return_last10"]},
    },
}


def headline(detail: dict, score: str) -> dict:
    """The few numbers worth comparing between experiments, from the full report ``detail``;
    ``score`` is 'success' (original variant) or 'return' (paper variant)."""
    out: dict = {}
    for group, modes in HEADLINE[score].items():
        for mode, keys in modes.items() if group in detail else ():
            vals = {k: detail[group][mode].get(k) for k in keys}
            out.setdefault(group, {})[mode] = {k: v["mean"] if isinstance(v, dict) else v
                                               for k, v in vals.items() if v is not None}
    return out


def variant_name(env_cfg: EnvConfig) -> str:
    """How plots and reports name the environment variant."""
    if env_cfg.kind == "keydoor":
        return "Key-to-Door: " + ("the door ends the episode" if env_cfg.terminate_on_goal else "no termination")
    return "original: terminate on goal" if env_cfg.terminate_on_goal else "paper: no termination"


def runs_per_goal(mode: str, eval_cfg: EvalConfig) -> int:
    """eval_dt's runs per goal: one greedy (greedy play is deterministic), ``eval.seeds`` sampled."""
    return 1 if mode == "greedy" else eval_cfg.seeds


def play_groups(model: torch.nn.Module, env_cfg: EnvConfig, eval_cfg: EvalConfig, groups: dict[str, list[int]],
                device: torch.device) -> dict[str, dict[str, PlayResult]]:
    """AD from an empty context on every group of goals (held-out, training), greedy and sampled
    (:func:`runs_per_goal`), all in one batch of the model (:func:`adlib.incontext.play_many`):
    ``{group: {mode: result}}``."""
    kinds = [(group, mode) for group, goals in groups.items() if goals for mode in ("greedy", "sampled")]
    runs = [Runs(groups[group], runs_per_goal(mode, eval_cfg), greedy=mode == "greedy",
                 temperature=eval_cfg.temperature, seed=eval_cfg.seed) for group, mode in kinds]
    played: dict[str, dict[str, PlayResult]] = {}
    for (group, mode), res in zip(kinds, play_many(model, env_cfg, runs, eval_cfg.episodes, device, progress="eval_dt")):
        played.setdefault(group, {})[mode] = res
    return played


def group_report(played: dict[str, PlayResult], env_cfg: EnvConfig, eval_cfg: EvalConfig, goals: list[int],
                 found: dict[int, Path]) -> tuple[dict, dict[str, np.ndarray]]:
    """One group of goals (held-out or training): AD's greedy and sampled plays (``played``, from
    :func:`play_groups`) summarised, and the baselines beside them. Returns (metrics, per-episode curves)."""
    E = eval_cfg.episodes
    metrics: dict = {}
    curves: dict[str, np.ndarray] = {}
    for mode, res in played.items():
        seeds = runs_per_goal(mode, eval_cfg)
        assert len(res.goal_ids) == len(goals) * seeds, (mode, len(res.goal_ids), len(goals), seeds)
        metrics[mode] = summarize(res, seeds, env_cfg)
        curves[f"ad_{mode}"] = res.returns.mean(0)
        if seeds > 1:   # [goals x seeds, E] -> per-seed curves (each a mean over goals) -> std
            per_seed = res.returns.reshape(len(goals), seeds, E).mean(0)
            curves[f"ad_{mode}{STD_SUFFIX}"] = per_seed.std(0)
    curves["a2c_source"] = source_curve(found, goals, E)
    curves["random"] = np.full(E, random_return(env_cfg, goals))
    curves["optimum"] = np.full(E, optimum_return(env_cfg, goals))
    curves["explorer"] = explorer_curve(env_cfg, E)
    curves["systematic_explorer"] = searcher_curve(env_cfg, goals, E, seed=eval_cfg.seed)
    curves["random_search"] = random_search_curve(env_cfg, goals, E, seed=eval_cfg.seed)
    metrics["baselines"] = baseline_metrics(curves)
    return metrics, curves


def baseline_metrics(curves: dict[str, np.ndarray]) -> dict:
    """The report's baseline numbers from a group's curves."""
    E = len(curves["a2c_source"])
    out = {"a2c_source_first10": round(float(np.nanmean(curves["a2c_source"][:10])), 4),
           "a2c_source_last10": round(float(np.nanmean(curves["a2c_source"][-10:])), 4),
           "random": round(float(curves["random"][0]), 4),
           "optimum": round(float(curves["optimum"][0]), 4)}
    rs = curves["random_search"]
    if np.isfinite(rs).all():   # NaN (random_start) would be invalid JSON: the keys are left out
        out["random_search_first10"] = round(float(np.mean(rs[:10])), 4)
        if E >= 20:
            out["random_search_11to20"] = round(float(np.mean(rs[10:20])), 4)
    se = curves["systematic_explorer"]
    out["systematic_explorer_first10"] = round(float(np.mean(se[:10])), 4)
    if E >= 20:
        out["systematic_explorer_11to20"] = round(float(np.mean(se[10:20])), 4)
    return out


def write_report(report: dict, curves: dict[str, dict[str, np.ndarray]], n_goals: dict[str, int], env_cfg: EnvConfig,
                 metrics_path: str | Path, detail_path: str | Path, curves_dir: str | Path,
                 log_dir: str | Path | None = None) -> None:
    """eval_dt's files: per group a CSV and a PNG of the curves; with ``log_dir``, the curves as
    TensorBoard scalars; the full report (``detail_path``) and its headline (``metrics_path``)."""
    for group, cs in curves.items():
        write_curves_csv(Path(curves_dir) / f"{group}.csv", cs)
    plot_report(curves_dir, curves, n_goals, report["variant"], env_cfg)
    if log_dir is not None:
        shutil.rmtree(log_dir, ignore_errors=True)
        with SummaryWriter(str(log_dir)) as w:
            for group, cs in curves.items():
                for name, y in cs.items():
                    for i, v in enumerate(y):
                        w.add_scalar(f"incontext_{group}/{name}_return", float(v), i + 1)
    write_json(detail_path, report)
    write_json(metrics_path, headline(report, "success" if env_cfg.terminate_on_goal else "return"))


def evaluate_checkpoint(model_path: str | Path, env_cfg: EnvConfig, dt_cfg: DTConfig, eval_cfg: EvalConfig, split: dict,
                        sources_dir: str | Path, n_shards: int, metrics_path: str | Path, detail_path: str | Path,
                        curves_dir: str | Path, log_dir: str | Path | None = None,
                        rt: EvalRuntime = EvalRuntime()) -> dict:
    """The eval_dt stage: held-out goals (and a few training goals, reported apart) x seeds,
    greedy and sampled, from an empty context. Writes the headline metrics (``metrics_path``),
    the full report (``detail_path``), per-episode CSVs and PNGs (``curves_dir``) and, with
    ``log_dir``, the in-context curves as TensorBoard scalars. Returns the full report."""
    device = pick_device(rt.device, "runtime.eval.device")
    if rt.threads > 0:
        torch.set_num_threads(rt.threads)
    model, ckpt = load_trained_model(model_path, env_cfg, dt_cfg, split, device)
    groups = {"held_out": list(split["held_out"]), "train_goals": spread(list(split["train"]), eval_cfg.train_goals)}
    found = find_source_goals(sources_dir, n_shards)   # checked before the (long) in-context play
    missing = [g for goals in groups.values() for g in goals if g not in found]
    if missing:
        raise DataError(f"{sources_dir}: no source histories for goals {missing} (the A2C baseline); "
                        f"run train_source_agents or dvc pull")
    report: dict = {"variant": variant_name(env_cfg),
                    "model": {"sha256": file_sha256(model_path), "dt": ckpt["dt"], "train_goals": len(ckpt["train_goals"]),
                              "dataset": ckpt.get("dataset")}}
    curves: dict[str, dict[str, np.ndarray]] = {}
    played = play_groups(model, env_cfg, eval_cfg, groups, device)
    for group, goals in groups.items():
        if goals:
            report[group], curves[group] = group_report(played[group], env_cfg, eval_cfg, goals, found)
    write_report(report, curves, {g: len(v) for g, v in groups.items()}, env_cfg, metrics_path, detail_path,
                 curves_dir, log_dir)
    return report
