"""The AD training dataset: training goals' histories in one Parquet file, and a window loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from adlib import tokens
from adlib.config import DatasetConfig, EnvConfig, ParamError, to_dict
from adlib.envs import darkroom as dr
from adlib.histories import (
    COLUMNS,
    HISTORY_FILE,
    DataError,
    cut_and_subsample,
    find_source_goals,
    read_columns,
    read_table,
    to_table,
    write_table,
)
from adlib.io import check_env, read_json, write_json
from adlib.noise import explorer_histories, noise_histories

KIND_A2C, KIND_NOISE, KIND_EXPLORER = 0, 1, 2
DATA_FILE, META_FILE = "histories.parquet", "meta.json"
FORMAT = "adlib-histories-v3"


def _source_meta(path: Path, table: pa.Table, env_cfg: EnvConfig) -> dict:
    """The source params a history was trained with, after checking its environment."""
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "env" not in meta or "source" not in meta:
        raise DataError(f"{path}: no environment metadata; not written by train_source_agents")
    check_env(path, json.loads(meta["env"]), to_dict(env_cfg), "train_source_agents (dvc repro)")
    return json.loads(meta["source"])


def a2c_streams(env_cfg: EnvConfig, cfg: DatasetConfig, goals: list[int], found: dict[int, Path]
                ) -> tuple[list[dict[str, np.ndarray]], dict]:
    """The A2C streams of ``goals`` (one column dict per goal, streams numbered 0.. across
    goals), each cut at ``history_len`` and subsampled; and the source params they share."""
    parts: list[dict[str, np.ndarray]] = []
    next_stream = 0
    source: dict | None = None
    for goal in goals:
        path = found[goal] / HISTORY_FILE
        table = read_table(path)
        src = _source_meta(path, table, env_cfg)
        if source is None:
            source = src
        elif src != source:
            raise DataError(f"{path}: trained with source params {src}, other goals with {source}; "
                            f"rerun train_source_agents (dvc repro)")
        per_stream = cfg.history_len // source["nenvs"]
        cols = {c: table.column(c).to_numpy() for c in COLUMNS}
        if cols["step"].max(initial=-1) + 1 < per_stream:
            raise DataError(f"{path}: streams hold {cols['step'].max() + 1} steps, fewer than "
                            f"dataset.history_len / source.nenvs = {per_stream}")
        if cfg.a2c_streams_per_goal:
            keep = np.unique(cols["stream"])[: cfg.a2c_streams_per_goal]
            cols = {k: v[np.isin(cols["stream"], keep)] for k, v in cols.items()}
        cols = cut_and_subsample(cols, per_stream, cfg.subsample)
        _, cols["stream"] = np.unique(cols["stream"], return_inverse=True)
        cols["stream"] = (cols["stream"] + next_stream).astype(np.int32)
        next_stream = int(cols["stream"].max()) + 1
        cols["goal"] = np.full(len(cols["state"]), goal, np.uint16)
        cols["kind"] = np.full(len(cols["state"]), KIND_A2C, np.uint8)
        cols["variant"] = np.full(len(cols["state"]), -1, np.int8)
        parts.append(cols)
    return parts, source


def build_dataset(env_cfg: EnvConfig, cfg: DatasetConfig, split: dict, sources_dir: str | Path, n_shards: int,
                  out_dir: str | Path) -> dict:
    """Collect the training goals' histories (cut, subsampled) plus AD^eps streams; write
    ``histories.parquet`` and ``meta.json`` into ``out_dir``. Held-out goals never enter.

    Reads the ``n_shards`` current shard folders only, and refuses to run on incomplete
    input (a partial ``dvc pull`` leaves goals missing). The source params come from the
    histories' own metadata (all goals must agree).
    """
    train = list(split["train"])
    held_out = set(split["held_out"])
    assert not held_out & set(train), "split overlap"  # read_split guarantees it
    found = find_source_goals(sources_dir, n_shards)
    missing = [g for g in train if g not in found]
    if missing:
        raise DataError(f"{sources_dir}: histories of training goals {missing} are missing "
                        f"({len(found)} goal folders found); run `dvc repro` or `dvc pull` for all shards")
    parts, source = a2c_streams(env_cfg, cfg, train, found)
    next_stream = n_a2c_streams = int(parts[-1]["stream"].max()) + 1
    synthetic = ((KIND_NOISE, cfg.noise.streams_per_goal, noise_histories, cfg.noise),
                 (KIND_EXPLORER, cfg.explorer.streams_per_goal, explorer_histories, cfg.explorer))
    for kind, per_goal, make, kind_cfg in synthetic:
        if per_goal == 0:
            continue
        cols = make(env_cfg, kind_cfg, train)
        cols.setdefault("variant", np.full(len(cols["state"]), -1, np.int8))
        goal_of_stream = np.repeat(np.array(train, np.uint16), per_goal)
        cols["goal"] = goal_of_stream[cols["stream"]]
        cols["stream"] = (cols["stream"] + next_stream).astype(np.int32)
        cols["kind"] = np.full(len(cols["state"]), kind, np.uint8)
        next_stream = int(cols["stream"].max()) + 1
        parts.append(cols)
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n_kind = np.bincount(data["kind"][np.flatnonzero(np.diff(data["stream"], prepend=-1))], minlength=3)
    assert not held_out & set(np.unique(data["goal"]).tolist()), "held-out goal in training data"

    meta = {
        "format": FORMAT,
        "grid_size": env_cfg.grid_size, "n_states": dr.n_states(env_cfg), "n_actions": dr.N_ACTIONS,
        "env": to_dict(env_cfg), "source": source, "dataset": to_dict(cfg),
        "train_goals": train, "held_out_goals": sorted(held_out),
        "streams": int(data["stream"].max()) + 1, "a2c_streams": n_a2c_streams,
        "noise_streams": int(n_kind[KIND_NOISE]), "explorer_streams": int(n_kind[KIND_EXPLORER]),
        "transitions": int(len(data["state"])),
        "history_len_per_agent": cfg.history_len, "subsample": cfg.subsample,
        "longest_stream": int(np.bincount(data["stream"]).max()),
        "shortest_stream": int(np.bincount(data["stream"]).min()),
    }
    table = to_table(data, extra={"goal": pa.uint16(), "kind": pa.uint8(), "variant": pa.int8()},
                     metadata={"adlib": json.dumps(meta)})
    out_dir = Path(out_dir)
    write_table(table, out_dir / DATA_FILE)
    write_json(out_dir / META_FILE, meta)
    meta["bytes_on_disk"] = (out_dir / DATA_FILE).stat().st_size
    return meta


# what meta.json must hold, and the JSON type of each
META_KEYS = {"format": str, "grid_size": int, "n_states": int, "env": dict, "source": dict, "dataset": dict,
             "train_goals": list, "held_out_goals": list, "streams": int, "transitions": int,
             "longest_stream": int, "shortest_stream": int}


def read_meta(path: Path) -> dict:
    """A dataset's meta.json, checked: a mapping of :data:`META_KEYS` of the right types, this
    format, and a grid size that agrees with its own environment record; else :class:`DataError`
    naming the file."""
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise DataError(f"{path}: must be a JSON object, not {type(meta).__name__}; rerun build_history_dataset")
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: unknown dataset format {meta.get('format')!r} (this code reads {FORMAT!r}); "
                        f"rerun build_history_dataset")
    for key, typ in META_KEYS.items():
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            raise DataError(f"{path}: {key} = {meta.get(key)!r}: missing or not a {typ.__name__}; the file was "
                            f"edited or damaged: rerun build_history_dataset")
    try:
        consistent = (meta["grid_size"] == meta["env"]["grid_size"]
                      and meta["n_states"] == dr.n_states(EnvConfig(**meta["env"])))
    except (KeyError, TypeError):
        consistent = False
    if not consistent:
        raise DataError(f"{path}: grid_size {meta['grid_size']} and n_states {meta['n_states']} disagree with its "
                        f"env record ({meta['env']}); the file was edited or damaged")
    return meta


class HistoryDataset:
    """Whole-dataset columns in memory once (Arrow -> NumPy without copies where possible),
    and windows of consecutive transitions gathered per batch by index arithmetic.
    """

    FIELDS = ("t", "state", "action", "reward", "next_state")

    def __init__(self, data_dir: str | Path, env_cfg: EnvConfig | None = None, held_out: list[int] | None = None,
                 seq_len: int | None = None):
        """Checks the metadata (its format, the environment, its own grid size), loads the data,
        checks that the metadata describes it (counts of transitions and streams, stream lengths),
        and, given ``seq_len``, that every stream holds a window."""
        data_dir = Path(data_dir)
        meta_path = data_dir / META_FILE
        self.meta = meta = read_meta(meta_path)
        if env_cfg is not None:
            check_env(meta_path, meta["env"], to_dict(env_cfg), "build_history_dataset (dvc repro)")
        self.cols = read_columns(data_dir / DATA_FILE, [*self.FIELDS, "stream", "goal", "kind", "variant"])
        goals = set(np.unique(self.cols["goal"]).tolist())
        bad = goals & set(held_out if held_out is not None else meta["held_out_goals"])
        if bad:
            raise DataError(f"{data_dir / DATA_FILE}: held-out goals {sorted(bad)} found in the training data")
        stream = self.cols["stream"]
        if len(stream) and np.any(np.diff(stream) < 0):
            raise DataError(f"{data_dir / DATA_FILE}: rows are not grouped by stream")
        self.starts = np.flatnonzero(np.concatenate([[True], stream[1:] != stream[:-1]]))   # [n_streams]
        self.lengths = np.diff(np.concatenate([self.starts, [len(stream)]]))
        actual = {"transitions": len(stream), "streams": len(self.starts),
                  "longest_stream": int(self.lengths.max(initial=0)),
                  "shortest_stream": int(self.lengths.min()) if len(self.lengths) else 0,
                  "train_goals": sorted(goals)}
        for key, value in actual.items():
            if (sorted(meta[key]) if key == "train_goals" else meta[key]) != value:
                raise DataError(f"{meta_path}: {key} = {meta[key]!r}, but {data_dir / DATA_FILE} holds {value!r}; "
                                f"the metadata was edited or does not belong to the data: rerun build_history_dataset")
        self.grid_size, self.n_states = meta["grid_size"], meta["n_states"]
        if seq_len is not None and (short := self.lengths < seq_len).any():
            kinds = np.unique(self.cols["kind"][self.starts[short]]).tolist()
            keys = " / ".join(["dataset.subsample or dataset.history_len"] * (KIND_A2C in kinds)
                              + ["dataset.noise.transitions"] * (KIND_NOISE in kinds)
                              + ["dataset.explorer.transitions"] * (KIND_EXPLORER in kinds))
            what = "every stream" if short.all() else f"{int(short.sum())} of {len(short)} streams"
            raise ParamError(f"dt.seq_len = {seq_len}: longer than {what} of {data_dir} (shortest "
                             f"{self.lengths.min()} transitions, longest {self.lengths.max()}), which would never be "
                             f"trained on; lower dt.seq_len or change {keys}")

    def __len__(self) -> int:
        return len(self.cols["state"])

    def window_starts(self, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(stream starts, number of valid window starts) of streams at least ``seq_len`` long."""
        ok = self.lengths >= seq_len
        if not ok.any():
            raise DataError(f"no stream is at least {seq_len} transitions long (longest: "
                            f"{self.lengths.max(initial=0)}); lower dt.seq_len or dataset.subsample")
        return self.starts[ok], self.lengths[ok] - seq_len + 1

    def sample_starts(self, gen: np.random.Generator, batch: int, seq_len: int,
                      stream_start_frac: float = 0.0) -> np.ndarray:
        """Window starts ``[batch]`` (row indices): uniform over all valid positions of all
        streams, except that a fraction ``stream_start_frac`` starts exactly at a stream's
        first transition (the situation of in-context evaluation: an empty context)."""
        starts, counts = self.window_starts(seq_len)
        cum = np.cumsum(counts)
        r = gen.integers(0, cum[-1], size=batch)
        s = np.searchsorted(cum, r, side="right")
        rows = starts[s] + (r - (cum[s] - counts[s]))
        at_start = gen.random(batch) < stream_start_frac
        return np.where(at_start, starts[s], rows)

    def windows(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """Windows ``[B, L]`` starting at ``rows``, with the previous transition's fields
        (``prev_action``, ``prev_reward``, ``prev_next_state``); at a stream's first row
        they hold the 'none' indices of :mod:`adlib.tokens`."""
        idx = rows[:, None] + np.arange(seq_len)[None, :]                     # [B, L]
        out = {k: self.cols[k][idx] for k in self.FIELDS}
        prev = idx - 1
        first = self.cols["stream"][np.maximum(prev, 0)] != self.cols["stream"][idx]
        first |= prev < 0
        pidx = np.maximum(prev, 0)
        out["prev_action"] = np.where(first, tokens.none_action(dr.N_ACTIONS), self.cols["action"][pidx])
        out["prev_reward"] = np.where(first, tokens.none_reward(), self.cols["reward"][pidx])
        out["prev_next_state"] = np.where(first, tokens.none_state(self.n_states), self.cols["next_state"][pidx])
        out["goal"] = self.cols["goal"][rows]
        out["variant"] = self.cols["variant"][rows]     # the stream's tie order (-1: none)
        return out
