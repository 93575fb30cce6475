"""Nothing wrong is reported as a result: a model of another split or another config, a damaged
checkpoint and metadata that does not describe its data are refused, each naming its file."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers_dt import ENV, SPLIT, tiny_dt, tiny_pipeline, tiny_rt

from adlib.config import EvalConfig, ParamError
from adlib.dataset import META_FILE, HistoryDataset
from adlib.evaluation import evaluate_checkpoint
from adlib.histories import AGENT_FILE, find_source_goals
from adlib.io import DataError, load_torch
from adlib.model import load_trained_model
from adlib.tasks import split_goals
from adlib.train import train

EVAL = EvalConfig(episodes=3, seeds=1, train_goals=2)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    pipe = tiny_pipeline(tmp_path_factory.mktemp("pipe"))
    out = tmp_path_factory.mktemp("model")
    dt = tiny_dt(num_steps=3)
    train(ENV, dt, pipe["split"], pipe["data_dir"], out, rt=tiny_rt())
    return {**pipe, "dt": dt, "model": out / "model.pt"}


def evaluate(made: dict, tmp: Path, model: Path | None = None, split: dict | None = None, dt=None) -> dict:
    return evaluate_checkpoint(model or made["model"], ENV, dt or made["dt"], EVAL, split or made["split"],
                               made["sources"], 1, tmp / "eval.json", tmp / "detail.json", tmp / "curves")


def test_a_model_of_another_split_is_refused(made, tmp_path):
    other = split_goals(ENV, dataclasses.replace(SPLIT, seed=1))
    overlap = sorted(set(made["split"]["train"]) & set(other["held_out"]))
    assert overlap                                         # the two splits share goals across the line
    with pytest.raises(DataError, match=rf"{made['model']}: was trained on goals \[{overlap[0]}, .*which the split"):
        evaluate(made, tmp_path, split=other)
    assert not (tmp_path / "eval.json").exists()


def test_the_checkpoint_says_which_goals_and_which_data_it_was_trained_on(made):
    ckpt = load_torch(made["model"])
    assert ckpt["train_goals"] == made["split"]["train"]
    import hashlib

    data = (made["data_dir"] / "histories.parquet").read_bytes()
    assert ckpt["dataset"]["sha256"] == hashlib.sha256(data).hexdigest()
    m = evaluate(made, Path(made["model"]).parent)
    assert m["model"]["sha256"] == hashlib.sha256(Path(made["model"]).read_bytes()).hexdigest()


@pytest.mark.parametrize("key,value", [("embedding_dim", 32), ("num_layers", 2), ("lr", 1e-3)])
def test_a_model_of_another_dt_config_is_refused_naming_the_keys(made, tmp_path, key, value):
    params_dt = dataclasses.replace(made["dt"], **{key: value})   # params.yaml says this; the model is the old one
    with pytest.raises(DataError, match=rf"trained with dt {{'{key}': .*params.yaml has {{'{key}': {value}}}"):
        evaluate(made, tmp_path, dt=params_dt)
    with pytest.raises(DataError, match=key):
        load_trained_model(made["model"], ENV, params_dt, made["split"])


def flip(src: Path, dst: Path, at: float = 0.5) -> Path:
    """A copy of ``src`` with 4 bytes flipped at the relative position ``at``."""
    b = bytearray(src.read_bytes())
    i = int(len(b) * at)
    b[i:i + 4] = bytes(x ^ 0xFF for x in b[i:i + 4])
    dst.write_bytes(b)
    return dst


def test_flipped_bytes_in_a_checkpoint_are_refused_naming_it(made, tmp_path):
    bad = flip(made["model"], tmp_path / "model.pt")
    torch.load(bad, weights_only=True)                     # torch alone loads it, with other numbers
    with pytest.raises(DataError, match=rf"{bad}: damaged checkpoint: .* does not match the checksum"):
        load_torch(bad)
    with pytest.raises(DataError, match=str(bad)):
        evaluate(made, tmp_path, model=bad)
    agent = next(iter(find_source_goals(made["sources"], 1).values())) / AGENT_FILE
    with pytest.raises(DataError, match="damaged checkpoint"):
        load_torch(flip(agent, tmp_path / "agent.pt"))


def copy_dataset(made: dict, tmp: Path, edit) -> Path:
    d = tmp / "dataset"
    shutil.copytree(made["data_dir"], d)
    meta = json.loads((d / META_FILE).read_text())
    (d / META_FILE).write_text(json.dumps(edit(meta)))
    return d


@pytest.mark.parametrize("name,edit,message", [
    ("list", lambda m: [1, 2], "must be a JSON object, not list"),
    ("longest", lambda m: {**m, "longest_stream": 1}, "longest_stream = 1, but"),
    ("transitions", lambda m: {**m, "transitions": 5}, "transitions = 5, but"),
    ("goals", lambda m: {**m, "train_goals": m["train_goals"][:-1]}, "train_goals = "),
    ("missing", lambda m: {k: v for k, v in m.items() if k != "streams"}, "streams = None: missing"),
])
def test_metadata_that_does_not_describe_its_data_is_refused_naming_the_file(made, tmp_path, name, edit, message):
    d = copy_dataset(made, tmp_path, edit)
    with pytest.raises(DataError, match=rf"{d / META_FILE}: .*{message}"):
        HistoryDataset(d, ENV, held_out=made["split"]["held_out"], seq_len=made["dt"].seq_len)
    with pytest.raises(DataError, match=str(d / META_FILE)):
        train(ENV, made["dt"], made["split"], d, tmp_path / "m", rt=tiny_rt())
    assert not (tmp_path / "m").exists()


def test_a_context_longer_than_the_streams_still_names_dt_seq_len(made):
    longest = json.loads((made["data_dir"] / META_FILE).read_text())["longest_stream"]
    with pytest.raises(ParamError, match=rf"dt.seq_len = {longest + 1}: longer than every stream"):
        HistoryDataset(made["data_dir"], ENV, seq_len=longest + 1)
