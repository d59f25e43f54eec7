"""The trainer's settings: one dataclass whose fields define the shared ``videorep train`` flags."""

from __future__ import annotations

from dataclasses import dataclass, fields

from videorep.utils.config import setting
from videorep.utils.device import DEVICE_CHOICES_HELP

#: ``--precision`` choices: float32, or autocast to bfloat16 / float16 (fp16 with a GradScaler)
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Optimisation settings (paper defaults: Co-Settle supplementary, Tab. 3a); the fields define the flags."""

    out: str = setting("runs/train", required=True, help="run folder (checkpoints, logs, exports)")
    epochs: float = setting(5.0)
    batch_size: int = setting(
        512, help="micro-batch per process; global batch = batch x accum x processes"
    )
    accum: int = setting(1, help="gradient accumulation steps (1)")
    blr: float = setting(1e-4, help="base lr; lr = blr * global batch / 256")
    lr: float | None = setting(
        None,
        help="absolute lr (overrides --blr). Co-Settle: the paper's is blr 1e-4 x 512 / 256 = "
        "2e-4 at batch 512; the CPU recipe's 1e-4 at batch 16 is not the paper's",
    )
    warmup_epochs: float = setting(1.0)
    min_lr: float = setting(0.0)
    weight_decay: float = setting(0.05)
    betas: tuple[float, float] = setting((0.9, 0.95), nargs=2, help="AdamW betas")
    max_steps: int | None = setting(None, help="stop after this many steps")
    save_every: int = setting(100, help="checkpoint every N steps (100)")
    seed: int = setting(0)
    workers: int = setting(0, help="DataLoader worker processes (0)")
    persistent_workers: bool = setting(
        False, help="keep DataLoader workers alive between epochs (only with --workers > 0)"
    )
    prefetch_factor: int | None = setting(
        None, help="batches each DataLoader worker loads ahead (torch default 2; --workers > 0)"
    )
    device: str = setting("auto", metavar="DEVICE", help=DEVICE_CHOICES_HELP)
    precision: str = setting(
        "fp32",
        choices=PRECISIONS,
        help="training precision: fp32, or autocast to bf16 / fp16 (fp16: CUDA only, with a "
        "GradScaler); recorded in the checkpoint, --resume refuses another",
    )
    tf32: bool = setting(
        True, help="allow TF32 tensor cores for float32 matmuls on CUDA (--no-tf32: exact fp32)"
    )
    compile: bool = setting(False, help="torch.compile the encoder (opt-in; first steps slower)")
    resume: bool = setting(False, help="continue from OUT/checkpoint.pt")
    progress: bool = setting(True, flag="--no-progress", help="no progress bar")
    deterministic: bool = setting(
        False,
        help="reproducible run to run on CPU: deterministic kernels, 1 intra-op thread "
        "(slower; see docs/distributed.md)",
    )
    extra: dict = setting(default_factory=dict, cli=False)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in data.items() if k in names})
        cfg.betas = tuple(cfg.betas)  # type: ignore[assignment]
        return cfg
