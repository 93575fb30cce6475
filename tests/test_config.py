"""params.yaml validation (adlib.config): every bad value fails loudly and names its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from adlib.config import DatasetConfig, EnvConfig, Params, ParamError, SourceConfig, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def good() -> dict:
    """A small valid params mapping; each bad case changes one thing."""
    return {
        "env": {"size": 5, "max_episode_steps": 20, "terminate_on_goal": True, "random_start": False,
                "reward_mode": "reach"},
        "split": {"seed": 0, "n_train": 16},
        "source": {"nenvs": 2, "nsteps": 10, "env_steps": 2000, "shards": [0, 1], "betas": [0.9, 0.999]},
        "dataset": {"history_len": 1000, "subsample": 1, "noise": {"episodes": 30, "decay_episodes": 20}},
        "dt": {"seq_len": 16, "embedding_dim": 32, "num_heads": 4},
        "eval": {"train_goals": 2},
    }


def with_(path: str, value) -> dict:
    """good() with ``path`` ('a.b.c') set to ``value``."""
    raw = good()
    *parents, leaf = path.split(".")
    d = raw
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value
    return raw


# (id, raw params, key the message must name)
BAD = [
    ("unknown_top_section", {**good(), "sourc": {}}, "sourc"),
    ("unknown_key", with_("env.sise", 9), "env.sise"),
    ("unknown_nested_key", with_("dataset.noise.epsilon", 0.1), "dataset.noise.epsilon"),
    ("section_not_mapping", {**good(), "env": [1, 2]}, "env"),
    ("int_as_string", with_("env.size", "9"), "env.size"),
    ("int_as_float", with_("source.nenvs", 2.5), "source.nenvs"),
    ("int_as_bool", with_("source.nsteps", True), "source.nsteps"),
    ("bool_as_string", with_("env.terminate_on_goal", "yes"), "env.terminate_on_goal"),
    ("bool_as_int", with_("env.random_start", 1), "env.random_start"),
    ("float_as_string", with_("source.lr", "1e-4"), "source.lr"),  # YAML reads 1e-4 (no dot) as a string
    ("float_nan", with_("source.gamma", float("nan")), "source.gamma"),
    ("size_too_small", with_("env.size", 2), "env.size"),
    ("size_even_fixed_start", with_("env.size", 6), "env.size"),
    ("max_episode_steps_zero", with_("env.max_episode_steps", 0), "env.max_episode_steps"),
    ("unknown_reward_mode", with_("env.reward_mode", "dense"), "env.reward_mode"),
    ("n_train_zero", with_("split.n_train", 0), "split.n_train"),
    ("n_train_all_cells", with_("split.n_train", 24), "split.n_train"),
    ("n_train_more_than_cells", with_("split.n_train", 30), "split.n_train"),
    ("lr_zero", with_("source.lr", 0.0), "source.lr"),
    ("gamma_above_one", with_("source.gamma", 1.5), "source.gamma"),
    ("negative_entropy_coef", with_("source.entropy_coef", -0.01), "source.entropy_coef"),
    ("clip_zero", with_("source.clip_grad_norm", 0), "source.clip_grad_norm"),
    ("betas_one_value", with_("source.betas", [0.9]), "source.betas"),
    ("betas_equal_one", with_("source.betas", [0.9, 1.0]), "source.betas[1]"),
    ("unknown_device", with_("source.device", "tpu"), "source.device"),
    ("shards_empty", with_("source.shards", []), "source.shards"),
    ("shards_not_list", with_("source.shards", 2), "source.shards"),
    ("shards_not_from_zero", with_("source.shards", [1, 2]), "source.shards"),
    ("shards_repeated", with_("source.shards", [0, 0]), "source.shards"),
    ("shards_string_item", with_("source.shards", [0, "1"]), "source.shards[1]"),
    ("shards_more_than_goals", with_("source.shards", list(range(25))), "source.shards"),
    ("subsample_zero", with_("dataset.subsample", 0), "dataset.subsample"),
    ("history_len_above_env_steps", with_("dataset.history_len", 2001), "dataset.history_len"),
    ("history_len_below_nenvs", with_("dataset.history_len", 1), "dataset.history_len"),
    ("noise_eps_above_one", with_("dataset.noise.eps_start", 1.1), "dataset.noise.eps_start"),
    ("noise_decay_longer_than_episodes", with_("dataset.noise.decay_episodes", 31), "dataset.noise.decay_episodes"),
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
]


def test_good_params_parse():
    p = parse_params(good())
    assert isinstance(p, Params)
    assert p.env == EnvConfig(size=5, max_episode_steps=20)
    assert p.source.shards == (0, 1) and p.source.betas == (0.9, 0.999)
    assert isinstance(p.source, SourceConfig) and isinstance(p.dataset, DatasetConfig)


@pytest.mark.parametrize("raw,key", [(raw, key) for _, raw, key in BAD], ids=[i for i, _, _ in BAD])
def test_bad_param_raises_param_error_naming_key(raw, key):
    assert len(BAD) >= 20
    with pytest.raises(ParamError) as e:
        parse_params(copy.deepcopy(raw))
    assert key in str(e.value), str(e.value)


def test_int_given_for_float_is_accepted_as_float():
    p = parse_params(with_("source.gamma", 1))
    assert p.source.gamma == 1.0 and isinstance(p.source.gamma, float)


def test_configs_are_frozen():
    p = parse_params(good())
    with pytest.raises(Exception):
        p.env.size = 7  # type: ignore[misc]


def test_default_params_yaml_parses():
    p = load_params(ROOT / "params.yaml")
    assert p.env.size * p.env.size - 1 > p.split.n_train
    assert p.dataset.history_len <= p.source.env_steps


def test_load_params_missing_file_names_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamError, match=str(path)):
        load_params(path)


def test_load_params_bad_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("env: {size: 5\n")
    with pytest.raises(ParamError, match=str(path)):
        load_params(path)


def test_load_params_bad_value_names_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_("dt.seq_len", 0)))
    with pytest.raises(ParamError) as e:
        load_params(path)
    assert str(path) in str(e.value) and "dt.seq_len" in str(e.value)
