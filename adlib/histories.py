"""Learning histories as Parquet: per-goal source histories and the training dataset.

A *stream* is the sequence of transitions one env saw while its agent learned; streams are
stored contiguously, in time order. Columns (compact integer types, zstd):

    stream      int32   global stream id (unique within a file)
    step        int32   index of the transition within its stream (before any subsampling)
    t           uint16  in-episode timestep of ``state`` (0 at reset)
    state       uint16  observation: cell index row * grid_size + col (+ grid_size**2 holding the key)
    action      uint8   0 no-op, 1 up, 2 right, 3 down, 4 left
    reward      uint8   0 or 1 (Dark Room rewards are binary in both reward modes)
    terminated  bool
    truncated   bool
    next_state  uint16  observation reached by the action, before any auto-reset

The source folders (written by train_source_agents, read by every later stage) are laid out
here and only here::

    <sources>/shard_<k>/shard.json                 {"shard": k, "n_shards": n, "goals": [...]}
    <sources>/shard_<k>/goal_<ggg>/history.parquet every transition of the goal's agents
    <sources>/shard_<k>/goal_<ggg>/agent.pt        their trained parameters
    <sources>/shard_<k>/goal_<ggg>/summary.json    how far they got

Goal ``g`` lives in shard ``g % n``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adlib.config import EnvConfig
from adlib.envs import darkroom as dr
from adlib.io import DataError, atomic_path, read_json
from adlib.logs import get_logger
from adlib.transitions import FIELDS, Transitions

log = get_logger("sources")



@dataclass
class History:
    """Every transition of every env stream of G agents, in time order, in memory.

    Arrays are ``[T, G, E]`` (T = env steps per stream, E = envs per agent) in the compact
    types of the Parquet files; row k is the k-th step of each stream. ``next_state`` is the
    cell reached before any auto-reset.
    """

    t: np.ndarray           # in-episode timestep of ``state`` (0 at reset)
    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_state: np.ndarray

    @classmethod
    def empty(cls, steps: int, G: int, E: int, env_cfg: EnvConfig) -> "History":
        cell = np.uint8 if dr.n_states(env_cfg) <= 256 else np.uint16
        tdt = np.uint8 if env_cfg.max_episode_steps < 256 else np.uint16
        shape = (steps, G, E)
        return cls(t=np.empty(shape, tdt), state=np.empty(shape, cell), action=np.empty(shape, np.uint8),
                   reward=np.empty(shape, np.uint8), terminated=np.empty(shape, bool),
                   truncated=np.empty(shape, bool), next_state=np.empty(shape, cell))

    def write(self, row: int, ro: Transitions, agents: int | None = None) -> None:
        """Store a rollout's ``[T, G, E]`` tensors (their first ``agents`` agents) at rows ``row .. row + T``."""
        s = slice(row, row + ro.state.shape[0])
        for field in FIELDS:
            getattr(self, field)[s] = getattr(ro, field)[:, :agents].cpu().numpy()

SHARD_FILE, HISTORY_FILE, AGENT_FILE, SUMMARY_FILE = "shard.json", "history.parquet", "agent.pt", "summary.json"


def shard_dir(sources_dir: str | Path, shard: int) -> Path:
    return Path(sources_dir) / f"shard_{shard}"


def goal_dir(shard_folder: str | Path, goal_id: int) -> Path:
    return Path(shard_folder) / f"goal_{goal_id:03d}"


def shard_goals(n_goals: int, shard: int, n_shards: int) -> list[int]:
    """Goal ids trained by ``shard``: every ``n_shards``-th goal (interleaved, so shards balance)."""
    return list(range(shard, n_goals, n_shards))


def stale_shards(sources_dir: str | Path, n_shards: int) -> list[Path]:
    """``shard_<k>`` folders with ``k >= n_shards``: left over from a larger ``source.shards``."""
    out = []
    for p in Path(sources_dir).glob("shard_*"):
        k = p.name.removeprefix("shard_")
        if p.is_dir() and k.isdigit() and int(k) >= n_shards:
            out.append(p)
    return sorted(out)


def remove_stale_shards(parents: list[Path], n_shards: int) -> list[Path]:
    """Remove the :func:`stale_shards` folders under each of ``parents`` (e.g. data/sources and
    logs/sources): outputs of shard stages that no longer exist; no stage owns them, no reader
    looks at them, and DVC's cache keeps them if they are ever needed again. Returns them."""
    stale = [p for parent in parents for p in stale_shards(parent, n_shards)]
    for p in stale:
        log.info(f"removing {p}: left over from a larger source.shards")
        shutil.rmtree(p, ignore_errors=True)
    return stale


def find_source_goals(sources_dir: str | Path, n_shards: int) -> dict[int, Path]:
    """goal id -> folder, for every complete goal folder of shards ``0 .. n_shards - 1``.

    Only the current shards are read: folders of another shard count (``stale_shards``) and
    hidden leftovers of a killed writer (``.shard_0.XXXX.tmp``) are never looked at. A shard
    folder made for another shard count, or a goal in the wrong shard, is a :class:`DataError`.
    Missing shards or goals (a partial ``dvc pull``) are the caller's to report.
    """
    found: dict[int, Path] = {}
    for k in range(n_shards):
        sdir = shard_dir(sources_dir, k)
        if not sdir.is_dir():
            continue
        made_for = read_json(sdir / SHARD_FILE).get("n_shards")
        if made_for != n_shards:
            raise DataError(f"{sdir}: made for {made_for} shards but source.shards has {n_shards}; "
                            f"rerun train_source_agents (dvc repro)")
        for gdir in sorted(sdir.glob("goal_*")):
            if not ((gdir / SUMMARY_FILE).exists() and (gdir / HISTORY_FILE).exists()):
                continue
            goal = int(gdir.name.removeprefix("goal_"))
            if goal % n_shards != k:
                raise DataError(f"{gdir}: goal {goal} belongs in shard {goal % n_shards}, not {k}")
            found[goal] = gdir
    return found


COLUMNS = ("stream", "step", *FIELDS)
SCHEMA = pa.schema([
    ("stream", pa.int32()), ("step", pa.int32()), ("t", pa.uint16()), ("state", pa.uint16()),
    ("action", pa.uint8()), ("reward", pa.uint8()), ("terminated", pa.bool_()), ("truncated", pa.bool_()),
    ("next_state", pa.uint16()),
])


def agent_streams(hist: "History", agents: list[int], stream_offset: int = 0) -> dict[str, np.ndarray]:
    """Columns of the streams of agents ``agents`` (indices into the G axis), stream-major."""
    T, _, E = hist.state.shape
    sel = lambda a: np.ascontiguousarray(a[:, agents, :].transpose(1, 2, 0)).reshape(-1)  # [n, E, T] -> flat
    n_streams = len(agents) * E
    return {
        "stream": np.repeat(np.arange(stream_offset, stream_offset + n_streams, dtype=np.int32), T),
        "step": np.tile(np.arange(T, dtype=np.int32), n_streams),
        "t": sel(hist.t), "state": sel(hist.state), "action": sel(hist.action), "reward": sel(hist.reward),
        "terminated": sel(hist.terminated), "truncated": sel(hist.truncated), "next_state": sel(hist.next_state),
    }


def to_table(cols: dict[str, np.ndarray], metadata: dict[str, str] | None = None,
             extra: dict[str, pa.DataType] | None = None) -> pa.Table:
    """A table with :data:`SCHEMA` (plus ``extra`` columns), cast to the compact types."""
    schema = pa.schema([*SCHEMA, *(pa.field(k, t) for k, t in (extra or {}).items())])
    arrays = [pa.array(np.asarray(cols[f.name]).astype(f.type.to_pandas_dtype(), copy=False), type=f.type)
              for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table.replace_schema_metadata(metadata) if metadata else table


def write_table(table: pa.Table, path: str | Path) -> None:
    """Atomically write a Parquet file (zstd, row groups of 1M rows, a CRC32 per data page:
    readers verify it, so a flipped bit inside the data is an error, not a silent change)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20, write_page_checksum=True)


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a history Parquet file; a missing, truncated or foreign file raises :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: history file missing")
    try:
        table = pq.read_table(path, columns=columns, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: corrupt or truncated Parquet file ({str(e).splitlines()[0]})") from None
    missing = [c for c in (columns or COLUMNS) if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: not a learning-history file (missing columns {missing})")
    return table


def read_columns(path: str | Path, columns: list[str]) -> dict[str, np.ndarray]:
    """Columns of a Parquet file as NumPy arrays, read one row group at a time into
    preallocated arrays, so the load never holds the file twice (peak ~ the arrays alone)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: history file missing")
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise DataError(f"{path}: not a learning-history file (missing columns {missing})")
        n = pf.metadata.num_rows
        out = {c: np.empty(n, dtype=pf.schema_arrow.field(c).type.to_pandas_dtype()) for c in columns}
        off = 0
        for i in range(pf.num_row_groups):
            t = pf.read_row_group(i, columns=columns)
            for c in columns:
                out[c][off:off + t.num_rows] = t.column(c).to_numpy()
            off += t.num_rows
            del t
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: corrupt or truncated Parquet file ({str(e).splitlines()[0]})") from None
    if off != n:
        raise DataError(f"{path}: row groups hold {off} rows, the footer says {n}")
    pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed pages otherwise
    return out


def episode_index(terminated: np.ndarray, truncated: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """Episode number of each row within its stream (0-based), for stream-major rows."""
    done = (terminated | truncated).astype(np.int64)
    ends_before = np.concatenate([[0], np.cumsum(done)[:-1]])       # episodes finished before each row
    first = np.concatenate([[True], stream[1:] != stream[:-1]])
    base = np.maximum.accumulate(np.where(first, ends_before, 0))    # count at each stream's first row
    return ends_before - base


def cut_and_subsample(cols: dict[str, np.ndarray], steps_per_stream: int, every: int) -> dict[str, np.ndarray]:
    """Keep the first ``steps_per_stream`` transitions of each stream, then every ``every``-th episode."""
    keep = cols["step"] < steps_per_stream
    if every > 1:
        ep = episode_index(cols["terminated"], cols["truncated"], cols["stream"])
        keep &= ep % every == 0
    return {k: v[keep] for k, v in cols.items()}


def episode_table(cols: dict[str, np.ndarray], success_return: int = 1) -> dict[str, np.ndarray]:
    """One row per finished episode: stream, episode number, return, length, success (a return
    of at least ``success_return``: :func:`adlib.envs.darkroom.success_return`)."""
    done = cols["terminated"] | cols["truncated"]
    ep = episode_index(cols["terminated"], cols["truncated"], cols["stream"])
    # per-episode return: sum of rewards of rows with the same (stream, episode)
    key = cols["stream"].astype(np.int64) * (1 << 32) + ep
    uniq, inv = np.unique(key, return_inverse=True)
    ret = np.bincount(inv, weights=cols["reward"].astype(np.float64), minlength=len(uniq))
    finished = np.zeros(len(uniq), bool)
    finished[inv[done]] = True
    length = np.bincount(inv, minlength=len(uniq))
    return {"stream": (uniq >> 32)[finished], "episode": (uniq & 0xFFFFFFFF)[finished],
            "return": ret[finished], "length": length[finished], "success": ret[finished] >= success_return}
