"""How faithfully a learner searches like the systematic explorer, episode by episode, and how
far back its moves remember.

    python -m benchmarks.search_fidelity --name NAME [--model models/dt/model.pt] [--seeds 20] [--episodes 6]

Plays the held-out goals of params.yaml's env and split from an empty context with the frozen
model (sampled at ``eval.temperature``, ``--seeds`` runs per goal), the systematic explorer
(:func:`adlib.noise.explorer_of`) and uniformly random actions, and asks of every step taken
before the run's first reward: is the action one the explorer would take given the whole context
(:func:`adlib.targets.explorer_mask`, the ``dt.target: explorer`` labels), and given only the last
k transitions? An explorer that remembers k steps counts every cell outside them as unseen; the
horizon whose masks agree best with a learner's moves is how far back the learner's search
remembers. The explorer agrees with its full-context masks at every step (a check of the
measure); random actions give the agreement of chance. Writes the section "Search fidelity:
NAME" of docs/results.md (use the split the model was trained on: ``dvc exp run`` first).

``--smoke`` measures a tiny pipeline run in a temporary folder and writes nothing.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import numpy as np
import torch

from adlib import tokens
from adlib.config import EnvConfig, load_params
from adlib.envs import darkroom as dr
from adlib.incontext import play
from adlib.model import load_model
from adlib.noise import TIE_ORDERS, explorer_of, first_action
from adlib.rollout import PlayResult, random_policy, rollout
from adlib.targets import explorer_mask
from adlib.tasks import read_split
from benchmarks import commit, table, write_section
from benchmarks.smoke import parse, tiny_workspace

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
HORIZONS = (10, 20, 40, 80)


def context_fields(trace: dict[str, np.ndarray], env_cfg: EnvConfig) -> dict[str, torch.Tensor]:
    """The model-input fields ``[N, L]`` of recorded runs (each step's state and the previous
    step's outcome; 'none' before the first), as the labels of a training window read them."""
    tr = {k: torch.as_tensor(v) for k, v in trace.items()}
    N = tr["state"].shape[0]
    none_state = torch.full((N, 1), tokens.none_state(dr.n_states(env_cfg)))
    none_reward = torch.full((N, 1), tokens.none_reward())
    return {"state": tr["state"].long(), "t": tr["t"].long(),
            "prev_next_state": torch.cat([none_state, tr["next_state"][:, :-1].long()], 1),
            "prev_reward": torch.cat([none_reward, tr["reward"][:, :-1].long()], 1)}


def search_steps(res: PlayResult, env_cfg: EnvConfig) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor,
                                                                torch.Tensor]:
    """Recorded runs as the measures read them: the model-input fields (:func:`context_fields`),
    the actions ``[N, L]``, the episode of each step ``[N, L]`` and whether the step is one of the
    run's search (no reward before it) ``[N, L]``."""
    f = context_fields(res.trace, env_cfg)
    action = torch.as_tensor(res.trace["action"]).long()                                # [N, L]
    episode = torch.as_tensor(res.trace["episode"])
    paid = torch.as_tensor(res.trace["reward"]) > 0
    searching = (paid.long().cumsum(1) - paid.long()) == 0                              # no reward before this step
    return f, action, episode, searching


def agreement(res: PlayResult, env_cfg: EnvConfig, episodes: int, horizons: tuple[int, ...] = HORIZONS
              ) -> tuple[np.ndarray, dict[int | None, np.ndarray]]:
    """Search steps per episode ``[episodes]``, and for the whole context (key None) and each
    horizon k the share of them ``[episodes]`` whose action the explorer would take given the
    context (its last k transitions)."""
    f, action, episode, searching = search_steps(res, env_cfg)
    N, L = action.shape
    ok = {None: explorer_mask(f, env_cfg).gather(-1, action[..., None])[..., 0]}
    for k in horizons:
        hits = torch.zeros(N, L, dtype=torch.bool)
        for i in range(L):   # the window of the k transitions ending at step i, its last position
            w = {name: v[:, max(0, i - k + 1):i + 1] for name, v in f.items()}
            hits[:, i] = explorer_mask(w, env_cfg)[:, -1].gather(-1, action[:, i:i + 1])[:, 0]
        ok[k] = hits
    cells = [searching & (episode == e) for e in range(episodes)]
    steps = np.array([int(c.sum()) for c in cells])
    share = {k: np.array([v[c].double().mean().item() if c.any() else np.nan for c in cells]) for k, v in ok.items()}
    return steps, share


def one_order(res: PlayResult, env_cfg: EnvConfig, episodes: int) -> np.ndarray:
    """``[episodes]`` the share of runs whose tied search moves, up to the end of each episode,
    all follow one of the 24 tie orders (:data:`adlib.noise.TIE_ORDERS`): at every step before
    the run's first reward where the explorer has several moves and the run took one of them, the
    first of them in that one order. A learner distilled from streams that each keep one order
    walks one tour per run only if it keeps one too; random ties keep none after a few ties."""
    f, action, episode, searching = search_steps(res, env_cfg)
    mask = explorer_mask(f, env_cfg)                                                    # [N, L, A]
    tied = searching & (mask.sum(-1) > 1) & mask.gather(-1, action[..., None])[..., 0]
    keeps = torch.zeros(episodes, action.shape[0], dtype=torch.bool)                    # [E, N]: some order kept
    for k in range(len(TIE_ORDERS)):
        broken = tied & (first_action(mask, k).float().argmax(-1) != action)           # [N, L]
        keeps |= torch.stack([~(broken & (episode <= e)).any(1) for e in range(episodes)])
    return keeps.double().mean(1).numpy()


def measure(model_path: Path, seeds: int, episodes: int) -> dict[str, tuple[np.ndarray, dict, np.ndarray]]:
    """The learner, the explorer and random actions on the held-out goals: :func:`agreement` and
    :func:`one_order` of each."""
    p = load_params("params.yaml")
    goals = list(read_split("data/split.json", p.env)["held_out"])
    model, _ = load_model(model_path, "cpu")
    if episodes * p.env.max_episode_steps > model.cfg.seq_len:   # "whole context" must be what the model sees
        raise SystemExit(f"--episodes {episodes}: {episodes * p.env.max_episode_steps} steps, longer than the model's "
                         f"{model.cfg.seq_len}-transition context; use at most {model.cfg.seq_len // p.env.max_episode_steps}")
    runs = {
        "learner": play(model, p.env, goals, seeds, episodes, greedy=False, temperature=p.eval.temperature,
                        seed=p.eval.seed, record=True),
        "systematic explorer": rollout(explorer_of(p.env), p.env, goals, seeds, episodes, greedy=False,
                                       seed=p.eval.seed, record=True),
        "random actions": rollout(random_policy, p.env, goals, seeds, episodes, greedy=False, seed=p.eval.seed,
                                  record=True),
    }
    return {name: (*agreement(res, p.env, episodes), one_order(res, p.env, episodes)) for name, res in runs.items()}


def section(name: str, out: dict[str, tuple[np.ndarray, dict, np.ndarray]], seeds: int, command: str) -> str:
    episodes = len(next(iter(out.values()))[0])
    head = ["player", "the explorer's context", *(f"ep. {e + 1}" for e in range(episodes))]
    rows = []
    for player, (steps, share, kept) in out.items():
        rows.append([player, "search steps", *(f"{s:,}" for s in steps)])
        for k, v in share.items():
            rows.append([player, "whole context" if k is None else f"last {k} transitions",
                         *("–" if np.isnan(x) else f"{x:.3f}" for x in v)])
        rows.append([player, "runs keeping one tie order so far", *(f"{x:.3f}" for x in kept)])
    return "\n".join([
        f"Held-out goals of this split, {seeds} runs per goal from an empty context. Each cell: the share of "
        "the steps taken before the run's first reward, in that episode, whose action the systematic explorer "
        "would take given the whole context (the `dt.target: explorer` labels) or only its last k transitions "
        "(a shorter memory: every cell outside them unseen). \"search steps\": how many such steps there are "
        "(later episodes hold only the runs still searching). \"runs keeping one tie order so far\": the share of "
        "all runs whose tied search moves up to the end of that episode are each the first of the tie in one "
        "of the 24 orders of `adlib.noise.TIE_ORDERS` (a fixed tour per run).",
        "",
        table(head, rows),
        "",
        f"Commit {commit()}. Command: `{command}`.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default=None, help="label of the section (required unless --smoke)")
    ap.add_argument("--model", default="models/dt/model.pt")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--episodes", type=int, default=6)
    args = parse(ap, seeds=2, episodes=1, name="smoke")   # the tiny model sees 16 transitions
    if not args.smoke and not args.name:
        ap.error("--name is required")
    command = (f"python -m benchmarks.search_fidelity --name {shlex.quote(args.name)} --seeds {args.seeds} "
               f"--episodes {args.episodes}")
    if args.smoke:
        with tiny_workspace() as root:
            body = section(args.name, measure(root / args.model, args.seeds, args.episodes), args.seeds, command)
            print(body)
            write_section(f"Search fidelity: {args.name}", body, root / "results.md")
        return
    body = section(args.name, measure(Path(args.model), args.seeds, args.episodes), args.seeds, command)
    print(body)
    write_section(f"Search fidelity: {args.name}", body, RESULTS)


if __name__ == "__main__":
    main()
