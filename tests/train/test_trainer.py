"""The shared trainer: loss falls, exact resume, clean stops, atomic checkpoints."""

from __future__ import annotations

import errno
import json
import math

import pytest
import torch
from torch.utils.data import Dataset

from videorep.backbones import load_encoder
from videorep.errors import VideorepError
from videorep.methods.cosettle import CoSettle, CoSettleConfig
from videorep.train import checkpoint as ckpt_module
from videorep.train.schedule import lr_at, param_groups
from videorep.train.trainer import MicroBatchSampler, TrainConfig, Trainer


class ShiftedNoise(Dataset):
    """Pairs of noise images, the second shifted by 16 px and re-noised: a correspondence to learn."""

    def __init__(self, n: int = 24) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        x = torch.randn(1, 3, 64, 64, generator=g)
        y = 0.6 * torch.roll(x, 16, -1) + 0.8 * torch.randn(1, 3, 64, 64, generator=g)
        return {"frames": torch.cat([x, y], 0)}


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("random_vit_tiny16")


def make(encoder, out, **kw) -> Trainer:
    method = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16", pool=1))
    cfg = dict(out=str(out), epochs=3, batch_size=4, accum=2, lr=2e-3, save_every=4, progress=False)
    cfg.update(kw)
    return Trainer(
        method,
        ShiftedNoise(),
        TrainConfig(**cfg),
        run_config={"method_config": method.export_config()},
    )


def head_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.method.head.state_dict().items()}


def test_loss_falls_and_outputs_are_written(tmp_path, encoder) -> None:
    trainer = make(encoder, tmp_path / "run", epochs=4)
    history = trainer.fit()
    assert trainer.total_steps == 12 and len(history) == 12  # 24 samples / global batch 8 x 4
    first = sum(r["loss"] for r in history[:3]) / 3
    last = sum(r["loss"] for r in history[-3:]) / 3
    assert last < first - 0.1
    assert history[-1]["cycle_loss"] < history[0]["cycle_loss"]
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 13))
    assert (tmp_path / "run" / "projection" / "projection.safetensors").is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_resume_after_a_crash_gives_bit_identical_weights(tmp_path, encoder) -> None:
    reference = make(encoder, tmp_path / "a")
    reference.fit()

    crashed = make(encoder, tmp_path / "b")
    original = crashed.method.optimizer_step
    calls = {"n": 0}

    def dying_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # dies during step 7; the last checkpoint is step 4
            raise RuntimeError("simulated kill")
        return original(*args, **kwargs)

    crashed.method.optimizer_step = dying_step
    with pytest.raises(RuntimeError, match="simulated kill"):
        crashed.fit()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 4

    resumed = make(encoder, tmp_path / "b", resume=True)
    resumed.fit()
    a, b = head_state(reference), head_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 10))  # 3 epochs x 3 steps; trimmed back to step 4, then 5..9


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path, encoder) -> None:
    trainer = make(encoder, tmp_path / "nan", save_every=2)
    original = trainer.method.training_step
    calls = {"n": 0}

    def poisoned(batch):
        calls["n"] += 1
        out = original(batch)
        if calls["n"] > 6:  # step 4 (2 micro-batches per step)
            out["loss"] = out["loss"] * float("nan")
        return out

    trainer.method.training_step = poisoned
    with pytest.raises(VideorepError, match="non-finite.*step 4.*last good checkpoint"):
        trainer.fit()
    saved = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["method_state"].values())


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    ckpt_module.atomic_save({"step": 1}, path)

    def no_space(obj, fh):  # noqa: ANN001
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_module.torch, "save", no_space)
    with pytest.raises(VideorepError, match="No space left.*previous checkpoint is intact"):
        ckpt_module.atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, encoder) -> None:
    make(encoder, tmp_path / "r", max_steps=2).fit()
    method = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16", pool=1, tau=0.1))
    other = Trainer(
        method,
        ShiftedNoise(),
        TrainConfig(out=str(tmp_path / "r"), batch_size=4, accum=2, resume=True, progress=False),
        run_config={"method_config": method.export_config()},
    )
    with pytest.raises(VideorepError, match="different settings.*tau"):
        other.fit()


def test_lr_schedule_warmup_then_cosine() -> None:
    assert lr_at(0, 1.0, 4, 12) == pytest.approx(0.25)
    assert lr_at(3, 1.0, 4, 12) == pytest.approx(1.0)
    assert lr_at(8, 1.0, 4, 12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(12, 1.0, 4, 12, min_lr=0.1) == pytest.approx(0.1)


def test_lr_scales_with_the_global_batch(tmp_path, encoder) -> None:
    trainer = make(encoder, tmp_path / "lr", lr=None, blr=1e-4)
    assert trainer.global_batch == 8
    assert trainer.base_lr == pytest.approx(1e-4 * 8 / 256)


def test_no_weight_decay_on_biases_and_norms() -> None:
    head = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    groups = param_groups(list(head.named_parameters()), 0.05)
    assert [len(g["params"]) for g in groups] == [1, 3]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]


def test_micro_batch_sampler_partitions_the_global_batch() -> None:
    per_rank = [list(MicroBatchSampler(20, 2, 2, r, 2, seed=1, epoch=0)) for r in range(2)]
    steps = 20 // 8
    assert all(len(batches) == steps * 2 for batches in per_rank)
    flat = [i for batches in per_rank for b in batches for i in b]
    assert len(flat) == len(set(flat)) == 16
    again = list(MicroBatchSampler(20, 2, 2, 0, 2, seed=1, epoch=0))
    assert again == per_rank[0]
    other_epoch = list(MicroBatchSampler(20, 2, 2, 0, 2, seed=1, epoch=1))
    assert other_epoch != per_rank[0]
    resumed = list(MicroBatchSampler(20, 2, 2, 0, 2, seed=1, epoch=0, start_step=1))
    assert resumed == per_rank[0][2:]


def test_too_small_dataset_is_a_clear_error(tmp_path, encoder) -> None:
    with pytest.raises(VideorepError, match="24 samples, fewer than one global batch of 32"):
        make(encoder, tmp_path / "small", batch_size=16)
