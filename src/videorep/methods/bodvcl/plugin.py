"""``videorep train bodvcl``: BOD-VCL on the shared trainer and the clip dataset."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

from videorep.methods.bodvcl.method import BODVCLConfig
from videorep.methods.sources import SourcesConfig
from videorep.train.method import MethodPlugin
from videorep.train.trainer import TrainConfig, Trainer, dist_info


@dataclass
class BODVCLDataConfig(SourcesConfig):
    """Training videos; the clip geometry (``clip_len``, ``stride``, ``views``, ``image_size``)
    belongs to :class:`BODVCLConfig`, which the data pipeline reads."""


def train_bodvcl(method_config: BODVCLConfig, data: BODVCLDataConfig, train_config: TrainConfig):  # noqa: ANN201
    """Build the clip dataset (``videorep.data.pairs.ClipDataset``) and the method; fit.

    Returns ``(method, history)``.
    """
    import torch

    from videorep.data.pairs import ClipDataset
    from videorep.data.sources import discover_sources
    from videorep.methods.bodvcl.method import BODVCL

    torch.manual_seed(train_config.seed)  # initial weights and MoCo queue: same on every rank
    method = BODVCL(method_config)
    method.to(getattr(torch, method_config.dtype))  # clips are cast to it in BODVCL._clips
    sources = discover_sources(data.paths, fps=data.fps)
    global_batch = train_config.batch_size * train_config.accum * dist_info()[1]
    repeats = max(1, -(-global_batch // max(1, len(sources))))
    if repeats > 1 and train_config.progress and dist_info()[0] == 0:
        print(f"videorep: drawing {repeats} clips per video per epoch", file=sys.stderr)
    dataset = ClipDataset(
        sources,
        clip_len=method.config.clip_len,
        stride=method.config.stride,
        views=method.config.views,
        size=method.config.image_size,
        seed=train_config.seed,
        repeats=repeats,
    )
    run_config = {"method_config": asdict(method.config), "data": asdict(data)}
    trainer = Trainer(method, dataset, train_config, run_config=run_config)
    return method, trainer.fit()


def prepare(method_config: BODVCLConfig, data: BODVCLDataConfig) -> None:
    method_config.validate()
    data.validate()


PLUGIN = MethodPlugin(
    name="bodvcl",
    help="BOD-VCL: Koopman-decoupled video contrastive learning (BOD-VCL paper)",
    method_config=BODVCLConfig,
    data_config=BODVCLDataConfig,
    train=train_bodvcl,
    # the paper's recipe (Sec. 5.1): SGD + LARS; lr = 0.3 x global batch / 256 and weight decay
    # 1e-6 are SimCLR's LARS values (the paper gives none; see docs/bodvcl.md)
    train_defaults={"batch_size": 8, "epochs": 200.0, "blr": 0.3, "weight_decay": 1e-6},
    prepare=prepare,
)
