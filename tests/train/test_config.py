"""Typed run configs: flags generated from dataclass fields, ``config.json`` + ``--config``
replay, and a third method that plugs in with one registry line."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from videorep.cli import build_parser, main
from videorep.methods import METHODS, load_method
from videorep.methods.commands import resolve_configs
from videorep.train.method import Method, MethodPlugin
from videorep.train.trainer import TrainConfig, Trainer
from videorep.utils.config import setting

# ``videorep train cosettle|bodvcl`` flags and defaults before they were generated from the
# config dataclasses (recorded from the hand-written argparse code).
COMMON = {
    "--data": None,
    "--fps": 2.0,
    "--workers": 0,
    "--out": None,
    "--accum": 1,
    "--blr": 1e-4,
    "--lr": None,
    "--warmup-epochs": 1.0,
    "--min-lr": 0.0,
    "--weight-decay": 0.05,
    "--max-steps": None,
    "--save-every": 100,
    "--seed": 0,
    "--resume": False,
    "--no-progress": False,
    "--deterministic": False,
}
COSETTLE = {
    **COMMON,
    "--epochs": 5.0,
    "--batch-size": 512,
    "--backbone": "dinov2_vits14_imgfocus",
    "--checkpoint": None,
    "--head": "linear",
    "--head-init": "auto",  # the backbone family's own init (was trunc_normal)
    "--tau": 0.03,
    "--delta": 0.15,
    "--pool": 2,
    "--reg": "kl",
    "--lambda-reg": 3.0,
    "--pea-alpha": 10.0,
    "--pea-mode": "random",
    "--no-pea": False,
    "--frames": 2,
    "--size": 224,
    "--samples-per-video": 0,
    "--view-bank": 0,
    # bf16 on native-bf16 CPUs became the default when the 9-sequence development set moved by
    # -0.011 J&F (docs/results/2026-12-03-encoder-bf16.md); before: fp32
    "--encoder-dtype": "auto",
}
COSETTLE_CHOICES = {
    "--head": ("linear", "mlp2", "mlp3"),
    "--head-init": ("auto", "trunc_normal", "xavier_uniform", "torch_default", "identity"),
    "--crop": ("authors", "full-res"),
    "--input-norm": ("authors", "family"),
    "--reg": ("kl", "mse", "none"),
    "--pea-mode": ("random", "center", "edge", "multiple"),
    "--encoder-dtype": ("auto", "fp32", "bf16"),
}
BODVCL = {
    **COMMON,
    "--epochs": 200.0,
    "--batch-size": 8,
    # the paper's recipe became the default (docs/bodvcl.md); before: blr 1e-4, weight decay
    # 0.05, r3d_18, inner lr None (= the outer lr), --persist-inner off
    "--blr": 0.3,
    "--weight-decay": 1e-6,
    "--framework": "simclr",
    "--encoder": "slow_r50",
    "--clip-len": 8,
    "--stride": 8,
    "--views": 2,
    "--decoupled": True,
    "--no-decoupled": True,
    "--bilevel": "fd",
    "--inner-steps": 1,
    "--inner-lr": 0.1,
    "--xi": 0.1,
    "--nu": 1e-4,
    "--koopman-dim": 128,
    "--temperature": 0.1,
    "--queue-size": 16384,
    "--momentum": 0.99,
    "--proj-hidden-dim": None,
    "--n-prototypes": 1000,
    "--spectral-mode": "eigenvalue",
    "--persist-inner": True,
    "--image-size": 112,
    "--dtype": "float32",
}
BODVCL_CHOICES = {
    "--framework": ("simclr", "moco", "byol", "swav"),
    "--encoder": (
        "r3d_18",
        "r2plus1d_18",
        "mc3_18",
        "s3d",
        "s3d_g",
        "slow_r50",
        "vit_b_divided",
        "vit_tiny",
        "vit_small",
        "tiny3d",
    ),
    "--bilevel": ("fd", "unrolled", "single", "none"),
    "--spectral-mode": ("eigenvalue", "projector"),
    "--dtype": ("float32", "float64"),
}
# flags for settings that had none before
NEW_COMMON = {
    "--config",
    "--betas",
    # GPU and cluster runs (issue 13)
    "--device",
    "--precision",
    "--tf32",
    "--no-tf32",
    "--compile",
    "--persistent-workers",
    "--prefetch-factor",
}
# the authors' preprocessing options (issue 14) and evaluation during training (issue 15)
NEW_COSETTLE = {"--crop", "--input-norm"}
NEW_COSETTLE |= {"--eval-every", "--eval-root", "--eval-size", "--eval-split", "--eval-max-frames"}
NEW_BODVCL = {"--proj-layers", "--fd-radius", "--keep-time", "--no-keep-time", "--pinv-rtol"}
NEW_BODVCL |= {"--no-persist-inner", "--inner-optimizer", "--optimizer", "--lars-momentum"}
NEW_BODVCL |= {"--color-jitter", "--no-color-jitter", "--sync-batchnorm"}


def subparser(name: str) -> argparse.ArgumentParser:
    def sub(parser: argparse.ArgumentParser, key: str) -> argparse.ArgumentParser:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices[key]

    return sub(sub(build_parser(), "train"), name)


@pytest.mark.parametrize(
    "name,today,choices,new",
    [
        ("cosettle", COSETTLE, COSETTLE_CHOICES, NEW_COMMON | NEW_COSETTLE),
        ("bodvcl", BODVCL, BODVCL_CHOICES, NEW_COMMON | NEW_BODVCL),
    ],
)
def test_generated_flags_are_todays_flags(name, today, choices, new) -> None:
    parser = subparser(name)
    actions = {o: a for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}
    assert set(actions) == set(today) | new
    assert actions["--data"].nargs == "+" and actions["--out"].required
    for flag, default in today.items():
        action = actions[flag]
        value = getattr(action.default, "value", action.default)
        if flag in ("--data", "--out"):  # no default: required (--data: or from --config)
            continue
        if flag in ("--no-pea", "--no-progress"):  # store False into pea / progress
            assert value is True and isinstance(action, argparse._StoreFalseAction)
        elif isinstance(default, bool):
            assert value is default and action.nargs == 0, flag
        else:
            assert value == default and type(value) is type(default), flag
        assert tuple(action.choices or ()) == choices.get(flag, ()), flag
    # the parsed defaults are the dataclass defaults, with each method's trainer defaults
    args = parser.parse_args(["--data", "d", "--out", "o"])
    method_config, data, train = resolve_configs(load_method(name), args)
    assert type(method_config)() == method_config
    trainer_defaults = dict(epochs=today["--epochs"], batch_size=today["--batch-size"])
    trainer_defaults.update(blr=today["--blr"], weight_decay=today["--weight-decay"])
    assert train == TrainConfig(out="o", **trainer_defaults)
    assert data.paths == ["d"] and data.fps == 2.0


def test_the_shipped_cpu_recipe_is_a_train_config() -> None:
    """``train cosettle --config recipes/cpu.yaml`` takes its sections and skips ``evaluation``."""
    from videorep.methods.cosettle.config import RECIPES, load_recipe

    recipe = load_recipe("cpu")
    assert recipe["evaluation"] == {"fuse_alpha": 0.75}  # read by the demo only
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    from videorep.methods.commands import add_method_parser

    add_method_parser(sub, load_method("cosettle"))
    recipe_file = str(RECIPES / "cpu.yaml")
    args = parser.parse_args(["cosettle", "--config", recipe_file, "--data", "d", "--out", "o"])
    method_config, data, train = resolve_configs(load_method("cosettle"), args)
    assert (method_config.tau, method_config.pool, method_config.head_init) == (0.1, 1, "identity")
    assert (data.view_bank, data.crop) == (32, "full-res")
    assert (train.lr, train.epochs, train.batch_size) == (1e-4, 120.0, 16)


def run_args(frames: Path, out: Path, *extra: str) -> list[str]:
    args = ["train", "cosettle", "--data", str(frames), "--out", str(out)]
    args += ["--backbone", "random_vit_tiny16", "--size", "32", "--pool", "1", "--tau", "0.05"]
    args += ["--batch-size", "4", "--lr", "1e-3", "--no-progress", "--max-steps", "3"]
    return args + list(extra)


def losses(out: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (out / "log.jsonl").read_text().splitlines()]


def test_config_json_replays_the_run(frame_folders, tmp_path, capsys) -> None:
    first = tmp_path / "first"
    assert main(run_args(frame_folders, first, "--fps", "3", "--seed", "2")) == 0
    saved = json.loads((first / "config.json").read_text())
    assert saved["method"] == "cosettle" and saved["method_config"]["tau"] == 0.05
    assert saved["data"]["fps"] == 3.0 and saved["train"]["seed"] == 2
    assert saved["provenance"]["torch"] == torch.__version__
    assert not list(first.glob(".config.json.*"))  # written atomically, no leftovers

    replay = tmp_path / "replay"  # only the run folder is given on the command line
    argv = ["train", "cosettle", "--config", str(first / "config.json"), "--out", str(replay)]
    assert main(argv) == 0
    assert losses(replay) == losses(first) and len(losses(first)) == 3
    again = json.loads((replay / "config.json").read_text())
    assert {k: again[k] for k in ("method_config", "data")} == {
        k: saved[k] for k in ("method_config", "data")
    }
    assert again["train"] == {**saved["train"], "out": str(replay)}

    edited = tmp_path / "edited"  # a flag given on the command line overrides the file
    argv = ["train", "cosettle", "--config", str(first / "config.json"), "--out", str(edited)]
    assert main([*argv, "--max-steps", "1", "--tau", "0.2"]) == 0
    cfg = json.loads((edited / "config.json").read_text())
    assert cfg["method_config"]["tau"] == 0.2 and cfg["train"]["max_steps"] == 1
    assert cfg["data"]["fps"] == 3.0 and cfg["train"]["seed"] == 2  # the rest from the file
    assert len(losses(edited)) == 1 and losses(edited)[0] != losses(first)[0]
    capsys.readouterr()


def test_bad_config_files_are_one_error(frame_folders, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    for text, message in [
        ("method_config:\n  tua: 0.1\n", "unknown setting(s) tua"),
        ("method: bodvcl\n", "holds a bodvcl config, not one of cosettle"),
        ("model: {}\n", "unknown section(s) model"),
        ("data: [1, 2\n", "not a valid config file"),
    ]:
        bad.write_text(text)
        argv = ["train", "cosettle", "--config", str(bad), "--out", str(tmp_path / "x")]
        assert main([*argv, "--data", str(frame_folders)]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"videorep: error: {bad}") and message in line, line
    assert main(["train", "cosettle", "--out", str(tmp_path / "x")]) == 2
    assert "no training data: give --data" in capsys.readouterr().err


# ------------------------------------------------------------------------ a third method
@dataclass
class ToyConfig:
    """A linear map fitted to a fixed random linear target."""

    dim: int = setting(4, flag="--toy-dim", help="input and output width")
    noise: float = setting(0.0, help="label noise")


@dataclass
class ToyDataConfig:
    samples: int = setting(64, help="training pairs")


class PairsDataset(Dataset):
    def __init__(self, config: ToyDataConfig, dim: int, noise: float) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(config.samples, dim, generator=g)
        target = torch.randn(dim, dim, generator=g)
        self.y = self.x @ target + noise * torch.randn(config.samples, dim, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


class Toy(Method):
    method_name = "toy"
    progress_metrics = ("loss", "error")

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.map = nn.Linear(config.dim, config.dim, bias=False)

    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        loss = ((self.map(batch["x"]) - batch["y"]) ** 2).mean()
        return {"loss": loss, "error": loss.detach().sqrt()}

    def export(self, out_dir) -> None:  # noqa: ANN001
        torch.save(self.map.state_dict(), Path(out_dir) / "toy.pt")


def train_toy(method_config: ToyConfig, data: ToyDataConfig, train_config: TrainConfig):  # noqa: ANN201
    torch.manual_seed(train_config.seed)
    method = Toy(method_config)
    dataset = PairsDataset(data, method_config.dim, method_config.noise)
    run_config = {"method_config": asdict(method_config), "data": asdict(data)}
    trainer = Trainer(method, dataset, train_config, run_config=run_config)
    return method, trainer.fit()


PLUGIN = MethodPlugin(
    name="toy",
    help="a linear toy",
    method_config=ToyConfig,
    data_config=ToyDataConfig,
    train=train_toy,
    train_defaults={"batch_size": 16, "epochs": 10.0},
    summary=lambda history, out: {"loss": [history[0]["loss"], history[-1]["loss"]]},
)


def test_a_third_method_is_one_registry_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(METHODS, "toy", __name__)  # this module holds PLUGIN
    out = tmp_path / "toy"
    argv = ["train", "toy", "--out", str(out), "--toy-dim", "3", "--samples", "32"]
    assert main([*argv, "--lr", "0.2", "--epochs", "20", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    history = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert len(history) == 40  # 32 samples / batch 16 (the toy default) x 20 epochs
    assert history[-1]["loss"] < 0.1 * history[0]["loss"]
    assert printed["loss"] == [history[0]["loss"], history[-1]["loss"]]
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "toy" and config["method_config"] == {"dim": 3, "noise": 0.0}
    assert config["data"] == {"samples": 32}
    assert torch.load(out / "toy.pt")["weight"].shape == (3, 3)  # its export ran
    # resume with another setting of the toy is refused, naming it
    assert main([*argv, "--noise", "0.5", "--resume", "--max-steps", "30"]) == 2
    assert "'noise': (0.0, 0.5)" in capsys.readouterr().err
