"""The shipped paper recipe (``recipes/paper_k400.yaml``) resolves to the paper's settings."""

from __future__ import annotations

from videorep.cli import build_parser
from videorep.methods import load_method
from videorep.methods.commands import resolve_configs
from videorep.methods.cosettle.config import RECIPES


def test_paper_recipe_is_the_papers_training_run(tmp_path):
    recipe = RECIPES / "paper_k400.yaml"
    args = build_parser().parse_args(
        ["train", "cosettle", "--config", str(recipe), "--data", str(tmp_path)]
        + ["--out", str(tmp_path / "out")]
    )
    method, data, train = resolve_configs(load_method("cosettle"), args)
    assert method.backbone == "dino_vitb16"
    assert (method.head, method.tau, method.pool, method.reg, method.lambda_reg) == (
        "linear",
        0.03,
        2,
        "kl",
        3.0,
    )
    assert (method.pea, method.pea_alpha, method.frames) == (True, 10.0, 2)
    assert (data.fps, data.delta, data.size, data.view_bank) == (2.0, 0.15, 224, 0)
    assert (train.epochs, train.warmup_epochs, train.blr, train.lr) == (5.0, 1.0, 1e-4, None)
    assert (train.weight_decay, tuple(train.betas)) == (0.05, (0.9, 0.95))
    assert train.precision == "fp16"  # the authors' engine_pretrain.py: fp16 autocast + GradScaler
    # 4 processes (the authors' 4 GPUs) x 128 = the paper's global batch of 512
    assert train.batch_size * train.accum * 4 == 512
    assert data.paths == [str(tmp_path)] and train.out == str(tmp_path / "out")
