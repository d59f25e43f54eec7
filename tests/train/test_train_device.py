"""Training on a chosen device and precision (issue 13): placement, precision, backends.

Every test here runs on the CPU in the default run; the ``cuda`` case of the placement test runs
among the ``cuda`` tests (``pytest -m cuda``, ``make gpu-check``) and is skipped without a GPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from videorep.backbones import load_encoder
from videorep.errors import VideorepError
from videorep.methods.bodvcl.method import BODVCL, BODVCLConfig
from videorep.methods.cosettle import CoSettle, CoSettleConfig
from videorep.train.method import batch_device
from videorep.train.trainer import TrainConfig, Trainer
from videorep.utils import distributed as udist

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ],
)

# The losses of the first two steps of the run below, measured with the code before --device
# existed (/work/main at 0fae96c, same machine and command): --device cpu must not change them.
TODAY_LOSSES = [0.18803198635578156, 0.1842195987701416]


class NoisePairs(Dataset):
    """8 pairs of 32x32 noise images, the second shifted by 16 px and re-noised."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(1, 3, 32, 32, generator=g)
        y = 0.6 * torch.roll(x, 16, -1) + 0.8 * torch.randn(1, 3, 32, 32, generator=g)
        return {"frames": torch.cat([x, y])}


class BlobClips(Dataset):
    """8 videos as ``{"clips": [V=2, T=4, 3, 16, 16]}`` of noise (the shapes BOD-VCL reads)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"clips": torch.randn(2, 4, 3, 16, 16, generator=g)}


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("random_vit_tiny16")


def cosettle_trainer(encoder, out, **kw) -> Trainer:
    method = CoSettle(
        encoder, CoSettleConfig(backbone="random_vit_tiny16", pool=1, encoder_dtype="fp32")
    )
    cfg = dict(out=str(out), epochs=1, batch_size=4, lr=1e-3, progress=False, max_steps=2)
    cfg.update(kw)
    return Trainer(method, NoisePairs(), TrainConfig(**cfg), run_config={"method_config": {}})


def bodvcl_trainer(out, framework: str = "moco", **kw) -> Trainer:
    torch.manual_seed(0)
    method = BODVCL(
        BODVCLConfig(
            framework=framework,
            encoder="tiny3d",
            koopman_dim=8,
            proj_hidden_dim=16,
            queue_size=16,
            n_prototypes=8,
            clip_len=4,
            bilevel=kw.pop("bilevel", "fd"),
        )
    )
    cfg = dict(out=str(out), epochs=1, batch_size=4, lr=1e-3, progress=False, max_steps=1)
    cfg.update(kw)
    return Trainer(method, BlobClips(), TrainConfig(**cfg), run_config={"method_config": {}})


def one_step(trainer: Trainer) -> dict:
    return trainer._one_step(iter(trainer._loader(0, 0)))


def misplaced(trainer: Trainer, device: torch.device) -> list[str]:
    """Names of every parameter, buffer and optimiser state tensor not on ``device``.

    AdamW's per-parameter ``step`` counter is a CPU scalar by PyTorch's design (non-fused,
    non-capturable AdamW), so it is the one exception.
    """
    wrong = [f"param {n}" for n, p in trainer.method.named_parameters() if p.device != device]
    wrong += [f"buffer {n}" for n, b in trainer.method.named_buffers() if b.device != device]
    for i, state in enumerate(trainer.optimizer.state.values()):
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step" and value.device != device:
                wrong.append(f"optimiser state {i}.{key}")
    return wrong


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_cosettle_everything_on_the_device_after_one_step(device, encoder, tmp_path) -> None:
    trainer = cosettle_trainer(encoder, tmp_path, device=device)
    dev = trainer.device
    assert dev.type == device
    record = one_step(trainer)
    assert torch.isfinite(torch.tensor(record["loss"]))
    assert len(trainer.optimizer.state) == 4  # head: Linear weight/bias, LayerNorm weight/bias
    assert misplaced(trainer, dev) == []


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_bodvcl_everything_on_the_device_after_one_step(device, tmp_path) -> None:
    """V-MoCo (queue buffers, momentum encoder) with the AID-FD bi-level step."""
    trainer = bodvcl_trainer(tmp_path, device=device)
    dev = trainer.device
    record = one_step(trainer)
    assert torch.isfinite(torch.tensor(record["loss"]))
    assert trainer.optimizer.state  # the step created AdamW state
    assert int(trainer.method.heads["static"].queue_ptr) == 8  # the 4 x 2 keys were enqueued
    assert misplaced(trainer, dev) == []


def test_device_cpu_gives_todays_losses(encoder, tmp_path) -> None:
    """``--device cpu`` and no flag give the losses measured before the flag existed."""
    with_flag = cosettle_trainer(encoder, tmp_path / "a", device="cpu").fit()
    without = cosettle_trainer(encoder, tmp_path / "b").fit()
    assert [r["loss"] for r in with_flag] == [r["loss"] for r in without]
    # Same machine type: bit-identical; another BLAS / thread count may move the last digits.
    assert [r["loss"] for r in with_flag] == pytest.approx(TODAY_LOSSES, rel=1e-5)


def test_fp16_on_the_cpu_is_refused(encoder, tmp_path) -> None:
    with pytest.raises(VideorepError, match="fp16 on cpu.*CUDA only.*bf16"):
        cosettle_trainer(encoder, tmp_path, device="cpu", precision="fp16")


def test_fp16_refused_on_the_command_line(frame_folders, tmp_path, capsys) -> None:
    from videorep.cli import main

    args = ["train", "cosettle", "--data", str(frame_folders), "--out", str(tmp_path / "r")]
    args += ["--backbone", "random_vit_tiny16", "--size", "32", "--batch-size", "2"]
    assert main([*args, "--device", "cpu", "--precision", "fp16", "--max-steps", "1"]) == 2
    assert "--precision fp16 on cpu" in capsys.readouterr().err


def test_bf16_autocast_trains_close_to_fp32(encoder, tmp_path) -> None:
    fp32 = [r["loss"] for r in cosettle_trainer(encoder, tmp_path / "a").fit()]
    bf16 = [r["loss"] for r in cosettle_trainer(encoder, tmp_path / "b", precision="bf16").fit()]
    assert bf16 != fp32  # autocast is on: the head ran in bf16
    assert bf16 == pytest.approx(fp32, rel=0.05)  # bf16 has ~3 significant digits


def test_resume_refuses_another_precision_but_not_another_device(encoder, tmp_path) -> None:
    first = cosettle_trainer(encoder, tmp_path, precision="bf16")
    one_step(first)
    first.step = 1
    first.save_checkpoint()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["precision"] == "bf16" and ckpt["config"]["train"]["precision"] == "bf16"
    other = cosettle_trainer(encoder, tmp_path, precision="fp32", resume=True)
    with pytest.raises(VideorepError, match=r"'train.precision': \('bf16', 'fp32'\)"):
        other.fit()
    # the device is how, not what: a run may continue on another device
    moved = cosettle_trainer(encoder, tmp_path, precision="bf16", resume=True, device="cpu")
    assert [r["step"] for r in moved.fit()] == [2]


def test_old_checkpoints_without_precision_resume_as_fp32() -> None:
    from videorep.train.trainer import config_diff

    old = {"train": {"lr": 1.0}}
    assert config_diff(old, {"train": {"lr": 1.0, "precision": "fp32"}}) == {}
    assert config_diff(old, {"train": {"lr": 1.0, "precision": "bf16"}}) == {
        "train.precision": ("fp32", "bf16")
    }


def test_bodvcl_precision_limits() -> None:
    small = dict(encoder="tiny3d", koopman_dim=8, proj_hidden_dim=16, queue_size=16)
    fd = BODVCL(BODVCLConfig(**small, bilevel="fd"))
    with pytest.raises(VideorepError, match="fp16 with --bilevel fd"):
        fd.configure_precision(torch.float16)
    fd.configure_precision(torch.bfloat16)  # bf16 is fine
    assert fd.autocast_dtype == torch.bfloat16
    double = BODVCL(BODVCLConfig(**small, dtype="float64"))
    with pytest.raises(VideorepError, match="float64.*--precision fp32"):
        double.configure_precision(torch.bfloat16)


def test_bodvcl_bf16_step_keeps_koopman_in_float32(tmp_path) -> None:
    trainer = bodvcl_trainer(tmp_path, framework="simclr", precision="bf16")
    record = one_step(trainer)
    assert torch.isfinite(torch.tensor(record["loss"]))
    split = trainer.method._last_split
    assert split.z_static.dtype == torch.float32


def test_compile_flag_compiles_the_encoder_in_place(encoder, tmp_path) -> None:
    """Wiring only (a real inductor compile takes minutes on 2 cores): the encoder's forward is
    compiled in place and the checkpointed keys do not change."""
    plain = cosettle_trainer(encoder, tmp_path / "a")
    assert plain.method.encoder._compiled_call_impl is None
    enc = load_encoder("random_vit_tiny16")
    compiled = cosettle_trainer(enc, tmp_path / "b", compile=True)
    assert compiled.method.encoder._compiled_call_impl is not None
    assert set(compiled.method.checkpoint_state()) == set(plain.method.checkpoint_state())


def test_dataloader_options_only_with_workers(encoder, tmp_path) -> None:
    trainer = cosettle_trainer(encoder, tmp_path, persistent_workers=True, prefetch_factor=4)
    loader = trainer._loader(0, 0)  # no workers: the options are not passed (torch refuses)
    assert loader.num_workers == 0 and loader.prefetch_factor is None
    assert not loader.persistent_workers and not loader.pin_memory  # no pinning for the CPU
    trainer.config.workers = 1
    loader = trainer._loader(0, 0)
    assert loader.persistent_workers and loader.prefetch_factor == 4


def test_batch_device_finds_the_first_tensor() -> None:
    assert batch_device({"grid": (1, 2), "frames": torch.zeros(1)}).type == "cpu"
    assert batch_device([{"x": None}]).type == "cpu"
    meta = torch.zeros(1, device="meta")
    assert batch_device({"a": [1, {"b": meta}]}).type == "meta"


@pytest.fixture
def torchrun_env(monkeypatch):
    """A fake 2-process torchrun environment on a fake 2-GPU machine; records the calls."""
    calls: dict = {}
    for key, value in {
        "WORLD_SIZE": "2",
        "RANK": "1",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("gpu", d))
    monkeypatch.setattr(
        udist.dist, "init_process_group", lambda **kw: calls.setdefault("backend", kw["backend"])
    )
    monkeypatch.setattr(udist.dist, "is_initialized", lambda: False)
    yield calls
    udist._STARTED_HERE = False


def test_init_from_env_backend_follows_the_device_cpu(torchrun_env) -> None:
    """``--device cpu`` on a CUDA machine: gloo, and no GPU is touched."""
    assert udist.init_from_env(device="cpu") == (1, 2)
    assert torchrun_env == {"backend": "gloo"}


def test_init_from_env_backend_follows_the_device_cuda(torchrun_env) -> None:
    """``auto`` / ``cuda`` under torchrun: nccl, and rank LOCAL_RANK takes its own GPU."""
    assert udist.init_from_env(device="auto") == (1, 2)
    assert torchrun_env == {"backend": "nccl", "gpu": torch.device("cuda", 1)}
    assert udist.choose_backend("cpu") == "gloo" and udist.choose_backend("cuda") == "nccl"


def test_cuda_index_refused_under_torchrun(torchrun_env) -> None:
    with pytest.raises(VideorepError, match="every rank needs its own GPU"):
        udist.init_from_env(device="cuda:0")


def test_train_command_passes_its_device_to_the_process_group(monkeypatch, tmp_path) -> None:
    """``videorep train`` resolves ``--device`` (flag or --config file) before the group starts."""
    from videorep.methods import commands

    seen = {}
    monkeypatch.setattr(
        commands,
        "run_distributed",
        lambda body, *a, device: seen.setdefault("device", device) and 0,
    )
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"train": {"device": "cpu"}}))
    from videorep.cli import main

    main(["train", "cosettle", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert seen.pop("device") == "auto"
    main(["train", "cosettle", "--data", str(tmp_path), "--out", "o", "--config", str(cfg)])
    assert seen.pop("device") == "cpu"


def test_grad_scaler_path_of_the_default_optimizer_step(encoder) -> None:
    """The fp16 path (loss scaled, gradients unscaled before AdamW, scaler updated), run with
    torch's CPU GradScaler: the step equals the unscaled one, the scale stays (finite grads)."""
    batch = {"frames": torch.stack([NoisePairs()[i]["frames"] for i in range(4)])}

    def step(scaler) -> dict[str, torch.Tensor]:  # noqa: ANN001
        torch.manual_seed(0)
        method = CoSettle(
            encoder, CoSettleConfig(backbone="random_vit_tiny16", pool=1, encoder_dtype="fp32")
        )
        method.configure_precision(None, scaler)
        opt = torch.optim.AdamW(method.head.parameters(), lr=1e-3)
        method.before_optimizer_step(0)
        method.optimizer_step([batch], opt, 1.0)
        return {k: v.clone() for k, v in method.head.state_dict().items()}

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaled, plain = step(scaler), step(None)
    assert scaler.get_scale() == 2.0**10
    assert scaler._scale is not None  # the loss went through scaler.scale
    for key in plain:
        assert torch.allclose(scaled[key], plain[key], atol=1e-6), key


def _gloo_threads() -> set[str]:
    """Ids of this process's gloo threads (``gloo_tcp_loop``, ``pt_gloo_runloop``)."""
    found = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            name = (Path("/proc/self/task") / tid / "comm").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        if "gloo" in name:
            found.add(tid)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="lists threads in /proc")
def test_cleanup_frees_the_process_group_of_a_finished_ddp_run(tmp_path, monkeypatch) -> None:
    """A finished run leaves DDP and its module in a reference cycle (``attach_ddp``); the
    reducer holds the gloo group. :func:`cleanup` must free it, gloo threads and all, before the
    interpreter exits (left to finalization it can abort the rank: a CI run of the torchrun
    test died with SIGABRT, "terminate called without an active exception")."""
    from torch.nn.parallel import DistributedDataParallel

    net = torch.nn.Linear(3, 2)
    before = _gloo_threads()
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    monkeypatch.setattr(udist, "_STARTED_HERE", True)
    try:
        ddp = DistributedDataParallel(net)
        net.__dict__["_ddp_wrapper"] = ddp  # the cycle of Method.attach_ddp
        ddp(torch.randn(4, 3)).sum().backward()
        ours = _gloo_threads() - before
        del ddp, net
    finally:
        udist.cleanup()
    assert not torch.distributed.is_initialized()
    assert len(ours) >= 2  # the group's threads ran (else this test checks nothing)
    assert not ours & _gloo_threads()
