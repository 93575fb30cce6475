"""params.yaml validation (adlib.config): every bad value fails loudly and names its key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from adlib.config import (
    RESERVED_KEYS,
    DatasetConfig,
    EnvConfig,
    ParamError,
    Params,
    SourceConfig,
    load_params,
    param_keys,
    parse_params,
    read_yaml,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[1]


def good() -> dict:
    """A small, complete, valid params mapping; each bad case changes one thing."""
    raw = to_dict(Params())
    raw["env"].update(grid_size=5, max_episode_steps=20)
    raw["split"].update(n_train=16)
    raw["source"].update(nenvs=2, nsteps=10, env_steps=2000, shards=[0, 1])
    raw["dataset"].update(history_len=1000, subsample=1)
    raw["dataset"]["noise"].update(streams_per_goal=2, transitions=100, decay_episodes=20)
    raw["dataset"]["explorer"].update(streams_per_goal=1, transitions=100)
    raw["dt"].update(seq_len=16, embedding_dim=32, num_heads=4)
    raw["eval"].update(train_goals=2)
    return raw


def with_(path: str, value) -> dict:
    """good() with ``path`` ('a.b.c') set to ``value``."""
    raw = good()
    *parents, leaf = path.split(".")
    d = raw
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value
    return raw


def drop(path: str) -> dict:
    """good() without the key or section ``path``."""
    raw = good()
    *parents, leaf = path.split(".")
    d = raw
    for p in parents:
        d = d[p]
    del d[leaf]
    return raw


def renamed(path: str, new: str) -> dict:
    """good() with the key ``path`` renamed to ``new`` (same value)."""
    raw = drop(path)
    *parents, leaf = path.split(".")
    d = raw
    for p in parents:
        d = d[p]
    d[new] = good()[parents[0]][leaf] if len(parents) == 1 else None
    return raw


# (id, raw params, key the message must name)
BAD = [
    ("unknown_top_section", {**good(), "sourc": {}}, "sourc"),
    ("unknown_key", with_("env.sise", 9), "env.sise"),
    ("unknown_nested_key", with_("dataset.noise.epsilon", 0.1), "dataset.noise.epsilon"),
    ("section_not_mapping", {**good(), "env": [1, 2]}, "env"),
    ("int_as_string", with_("env.grid_size", "9"), "env.grid_size"),
    ("int_as_float", with_("source.nenvs", 2.5), "source.nenvs"),
    ("int_as_bool", with_("source.nsteps", True), "source.nsteps"),
    ("bool_as_string", with_("env.terminate_on_goal", "yes"), "env.terminate_on_goal"),
    ("bool_as_int", with_("env.random_start", 1), "env.random_start"),
    ("float_as_string", with_("source.lr", "1e-4"), "source.lr"),  # YAML reads 1e-4 (no dot) as a string
    ("float_as_bool", with_("source.lr", True), "source.lr"),      # not 1.0
    ("float_pair_as_bool", with_("dt.betas", [True, 0.99]), "dt.betas[0]"),
    ("float_nan", with_("source.gamma", float("nan")), "source.gamma"),
    ("size_too_small", with_("env.grid_size", 2), "env.grid_size"),
    ("size_even_fixed_start", with_("env.grid_size", 6), "env.grid_size"),
    ("max_episode_steps_zero", with_("env.max_episode_steps", 0), "env.max_episode_steps"),
    ("unknown_reward_mode", with_("env.reward_mode", "dense"), "env.reward_mode"),
    ("n_train_zero", with_("split.n_train", 0), "split.n_train"),
    ("n_train_all_cells", with_("split.n_train", 24), "split.n_train"),
    ("n_train_more_than_cells", with_("split.n_train", 30), "split.n_train"),
    ("midstream_skip_without_explorer", with_("dt.midstream_search", "skip"), "dt.midstream_search"),  # target exploit
    ("midstream_unknown", with_("dt.midstream_search", "drop"), "dt.midstream_search"),
    ("lr_zero", with_("source.lr", 0.0), "source.lr"),
    ("gamma_above_one", with_("source.gamma", 1.5), "source.gamma"),
    ("negative_entropy_coef", with_("source.entropy_coef", -0.01), "source.entropy_coef"),
    ("clip_zero", with_("source.clip_grad_norm", 0), "source.clip_grad_norm"),
    ("betas_one_value", with_("source.betas", [0.9]), "source.betas"),
    ("betas_equal_one", with_("source.betas", [0.9, 1.0]), "source.betas[1]"),
    ("unknown_device", with_("runtime.source.device", "tpu"), "runtime.source.device"),
    ("checkpoint_not_multiple_of_log", with_("runtime.source.checkpoint_every", 75), "runtime.source.checkpoint_every"),
    ("shards_empty", with_("source.shards", []), "source.shards"),
    ("shards_not_list", with_("source.shards", 2), "source.shards"),
    ("shards_not_from_zero", with_("source.shards", [1, 2]), "source.shards"),
    ("shards_repeated", with_("source.shards", [0, 0]), "source.shards"),
    ("shards_string_item", with_("source.shards", [0, "1"]), "source.shards[1]"),
    ("shards_more_than_goals", with_("source.shards", list(range(25))), "source.shards"),
    ("env_steps_not_whole_rollouts", with_("source.env_steps", 2050), "source.env_steps"),
    ("env_steps_below_one_rollout", with_("source.env_steps", 5), "source.env_steps"),
    ("subsample_zero", with_("dataset.subsample", 0), "dataset.subsample"),
    ("history_len_above_env_steps", with_("dataset.history_len", 2001), "dataset.history_len"),
    ("history_len_below_nenvs", with_("dataset.history_len", 1), "dataset.history_len"),
    ("noise_eps_above_one", with_("dataset.noise.eps_start", 1.1), "dataset.noise.eps_start"),
    ("noise_eps_rising", with_("dataset.noise", {**good()["dataset"]["noise"], "eps_start": 0.5, "eps_end": 0.6}),
     "dataset.noise.eps_end"),
    ("eval_threads_negative", with_("runtime.eval.threads", -1), "runtime.eval.threads"),
    ("noise_transitions_below_seq_len", with_("dataset.noise.transitions", 15), "dataset.noise.transitions"),
    ("noise_transitions_zero", with_("dataset.noise.transitions", 0), "dataset.noise.transitions"),
    ("explorer_transitions_below_seq_len", with_("dataset.explorer.transitions", 15), "dataset.explorer.transitions"),
    ("explorer_streams_negative", with_("dataset.explorer.streams_per_goal", -1), "dataset.explorer.streams_per_goal"),
    ("unknown_layout", with_("dt.layout", "quad"), "dt.layout"),
    ("unknown_state_embedding", with_("dt.state_embedding", "onehot"), "dt.state_embedding"),
    ("seq_len_zero", with_("dt.seq_len", 0), "dt.seq_len"),
    ("attention_dropout_one", with_("dt.attention_dropout", 1.0), "dt.attention_dropout"),
    ("residual_dropout_negative", with_("dt.residual_dropout", -0.1), "dt.residual_dropout"),
    ("num_heads_not_dividing", with_("dt.num_heads", 3), "dt.num_heads"),
    ("min_lr_above_lr", with_("dt.min_lr", 0.5), "dt.min_lr"),
    ("warmup_not_below_num_steps", with_("dt.warmup_steps", 1500), "dt.warmup_steps"),
    ("eval_temperature_zero", with_("eval.temperature", 0), "eval.temperature"),
    ("eval_train_goals_above_n_train", with_("eval.train_goals", 17), "eval.train_goals"),
    ("render_cell_px_too_small", with_("render.cell_px", 2), "render.cell_px"),
    ("params_not_mapping", [1, 2, 3], "params"),
    ("eval_train_goals_zero", with_("eval.train_goals", 0), "eval.train_goals"),
    ("missing_key", drop("dt.stream_start_frac"), "dt.stream_start_frac"),
    ("missing_nested_key", drop("dataset.noise.seed"), "dataset.noise.seed"),
    ("missing_section", drop("eval"), "eval"),
    ("missing_runtime_section", drop("runtime.dt"), "runtime.dt"),
    ("empty_section", with_("render", None), "render.source_goals"),
    # DVC's run cache ignores keys named size / nfiles (DVC issue #10296): never allowed
    ("old_room_size_key", renamed("env.grid_size", "size"), "env.size"),
    ("nfiles_key", with_("dt.nfiles", 3), "dt.nfiles"),
]


def test_good_params_parse():
    p = parse_params(good())
    assert isinstance(p, Params)
    assert p.env == EnvConfig(grid_size=5, max_episode_steps=20)
    assert p.source.shards == (0, 1) and p.source.betas == (0.9, 0.999)
    assert isinstance(p.source, SourceConfig) and isinstance(p.dataset, DatasetConfig)


@pytest.mark.parametrize("raw,key", [(raw, key) for _, raw, key in BAD], ids=[i for i, _, _ in BAD])
def test_bad_param_raises_param_error_naming_key(raw, key):
    assert len(BAD) >= 20
    with pytest.raises(ParamError) as e:
        parse_params(copy.deepcopy(raw))
    assert key in str(e.value), str(e.value)


def test_every_bad_value_is_named_not_only_the_first():
    """Bad values in two sections and a nested one: one line each, in params.yaml's order."""
    raw = with_("eval.seeds", 0)
    raw["eval"]["episodes"] = -3
    raw["dataset"]["noise"]["eps_start"] = 2.0
    with pytest.raises(ParamError) as e:
        parse_params(raw)
    lines = str(e.value).splitlines()
    assert [ln.split(" = ")[0] for ln in lines] == ["dataset.noise.eps_start", "eval.episodes", "eval.seeds"], lines
    assert lines[1] == "eval.episodes = -3: out of range, must be >= 1 and <= 1000000", lines


def test_int_given_for_float_is_accepted_as_float():
    p = parse_params(with_("source.gamma", 1))
    assert p.source.gamma == 1.0 and isinstance(p.source.gamma, float)


def test_configs_are_frozen():
    p = parse_params(good())
    with pytest.raises(Exception):
        p.env.grid_size = 7  # type: ignore[misc]


def test_default_params_yaml_parses():
    p = load_params(ROOT / "params.yaml")
    assert p.env.grid_size * p.env.grid_size - 1 > p.split.n_train
    assert p.dataset.history_len <= p.source.env_steps


def test_load_params_missing_file_names_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamError, match=str(path)):
        load_params(path)


def test_load_params_bad_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("env: {grid_size: 5\n")
    with pytest.raises(ParamError, match=str(path)):
        load_params(path)


def test_load_params_bad_value_names_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_("dt.seq_len", 0)))
    with pytest.raises(ParamError) as e:
        load_params(path)
    assert str(path) in str(e.value) and "dt.seq_len" in str(e.value)


# ---------------------------------------------------------------- params.yaml read as DVC reads it

def params_text(**edits: str) -> str:
    """The real params.yaml with lines replaced: ``edits`` maps a line's stripped text to its new text."""
    lines = (ROOT / "params.yaml").read_text().splitlines()
    out = []
    for line in lines:
        key = line.split("#")[0].strip()
        out.append(line.replace(key, edits[key]) if key in edits else line)
    assert len([k for k in edits if any(ln.split("#")[0].strip() == k for ln in lines)]) == len(edits), edits
    return "\n".join(out) + "\n"


def test_yaml_is_read_with_dvc_semantics(tmp_path):
    """YAML 1.2, as DVC reads params.yaml into dvc.lock: 1e-4 and 3e5 are numbers (PyYAML's YAML
    1.1 reads them as strings); a whole float is accepted for an integer key."""
    from dvc.utils.serialize._yaml import parse_yaml

    path = tmp_path / "params.yaml"
    path.write_text(params_text(**{"lr: 1.0e-4": "lr: 1e-4", "env_steps: 300000": "env_steps: 3e5"}))
    assert read_yaml(path) == parse_yaml(path.read_text(), str(path))
    p = load_params(path)
    assert p.source.lr == 1e-4 and p.source.env_steps == 300_000 and isinstance(p.source.env_steps, int)


def test_yes_is_a_string_not_a_bool_as_in_dvc(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(params_text(**{"terminate_on_goal: true": "terminate_on_goal: yes"}))
    with pytest.raises(ParamError, match=r"env.terminate_on_goal = 'yes': must be true or false"):
        load_params(path)


def test_duplicate_key_is_refused_naming_its_full_path(tmp_path):
    path = tmp_path / "params.yaml"
    text = re.sub(r"(\n  num_steps: [^\n]*\n)", r"\1  lr: 3.0e-4\n", (ROOT / "params.yaml").read_text(), count=1)
    path.write_text(text)
    lines = text.splitlines()
    first = lines.index("  lr: 1.0e-3") + 1                       # 1-based line numbers
    second = lines.index("  lr: 3.0e-4") + 1
    with pytest.raises(ParamError, match=rf"dt\.lr: duplicate key \(line {second}, first at line {first}\)"):
        load_params(path)


def test_deleting_a_section_line_is_refused_not_merged(tmp_path):
    """Deleting only the `eval:` line used to merge its keys into `dt` (seed, device ...)."""
    path = tmp_path / "params.yaml"
    path.write_text("".join(ln for ln in (ROOT / "params.yaml").read_text().splitlines(keepends=True)
                            if not ln.startswith("eval:")))
    with pytest.raises(ParamError, match=r"dt\.seed: duplicate key"):
        load_params(path)


def test_no_config_key_is_named_like_a_dvc_meta_field():
    """DVC's run cache drops keys named size / nfiles from its hash (DVC issue #10296)."""
    assert set(RESERVED_KEYS) == {"size", "nfiles"}
    bad = [k for k in param_keys() if set(k.split(".")) & set(RESERVED_KEYS)]
    assert not bad, bad


def test_old_size_key_message_says_why_and_what_to_use():
    with pytest.raises(ParamError) as e:
        parse_params(renamed("env.grid_size", "size"))
    msg = str(e.value)
    assert "env.size" in msg and "env.grid_size" in msg and "10296" in msg and "\n" not in msg


# ---------------------------------------------------------------- one owner for each default

def test_params_yaml_values_equal_the_config_defaults():
    """params.yaml mirrors the dataclasses 1:1 (CORL's habit): the README table and library
    users see the same defaults as `dvc repro`."""
    import json

    assert json.loads(json.dumps(read_yaml(ROOT / "params.yaml"))) == to_dict(Params())


def test_readme_parameter_table_is_generated_from_the_config():
    from adlib.check import params_table

    readme = (ROOT / "docs" / "params.md").read_text()
    start, end = "<!-- params:start -->\n", "<!-- params:end -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == params_table(), "docs/params.md: regenerate the table with `python -m adlib.check --table`"
