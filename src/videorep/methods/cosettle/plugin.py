"""``videorep train cosettle``: Co-Settle's data pipeline, its training entry point and plug-in."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from videorep.methods.cosettle.config import CoSettleConfig, CoSettleDataConfig
from videorep.train.method import MethodPlugin
from videorep.train.trainer import TrainConfig, Trainer, dist_info, setup_device

#: method settings that only act on the head, not on the frozen encoder's tokens
HEAD_SIDE_SETTINGS = ("lambda_reg", "reg", "tau", "pool", "head", "head_init")


def train_cosettle(
    method_config: CoSettleConfig,
    data: CoSettleDataConfig,
    train_config: TrainConfig,
    encoder=None,  # noqa: ANN001
    on_checkpoint=None,  # noqa: ANN001
):  # noqa: ANN201
    """Build data, encoder and method from configs and run the trainer.

    Returns ``(method, history)``. ``encoder`` may be passed to reuse a loaded one;
    ``on_checkpoint(trainer)`` runs after every checkpoint (see :class:`Trainer`).
    """
    from videorep.backbones import load_encoder
    from videorep.data.pairs import FramePairDataset
    from videorep.data.sources import discover_sources
    from videorep.methods.cosettle.method import CoSettle
    from videorep.methods.cosettle.viewbank import ViewBankDataset, build_view_bank

    if encoder is None:
        encoder = load_encoder(method_config.backbone, method_config.checkpoint)
    sources = discover_sources(data.paths, fps=data.fps)
    repeats = int(data.samples_per_video or 0)
    if repeats <= 0:
        global_batch = train_config.batch_size * train_config.accum * dist_info()[1]
        repeats = max(1, -(-global_batch // len(sources)))
        if repeats > 1 and train_config.progress and dist_info()[0] == 0:
            print(
                f"videorep: {len(sources)} videos < global batch {global_batch}: drawing "
                f"{repeats} samples per video per epoch (--samples-per-video)",
                file=sys.stderr,
            )
    pairs = FramePairDataset(
        sources,
        delta=data.delta,
        frames=data.frames,
        size=data.size,
        seed=train_config.seed,
        repeats=repeats,
        squash=data.size if data.crop == "authors" else None,
        tries=1 if data.crop == "authors" else 10,
    )
    device = setup_device(train_config)  # --device: the view bank is encoded there too
    encoder.to(device)  # before the method: --encoder-dtype auto is decided for this device
    method = CoSettle(encoder, method_config, seed=train_config.seed)
    method.to(device)
    if train_config.progress and dist_info()[0] == 0:
        print(f"videorep: frozen encoder in {method.encoder_dtype} on {device}", file=sys.stderr)
    run_config = {"method_config": asdict(method_config), "data": asdict(data)}
    dataset = pairs
    if data.view_bank:
        identity = {
            "method": asdict(method_config),
            "data": asdict(data),
            "seed": train_config.seed,
        }
        for key in HEAD_SIDE_SETTINGS:
            identity["method"].pop(key, None)  # head-side settings do not change the tokens
        identity["method"]["encoder_dtype"] = method.encoder_dtype  # auto -> what it chose
        folder = build_view_bank(
            pairs,
            method,
            data.view_bank,
            Path(train_config.out) / "view_bank",
            identity,
            progress=train_config.progress,
        )
        dataset = ViewBankDataset(folder)
    trainer = Trainer(
        method, dataset, train_config, run_config=run_config, on_checkpoint=on_checkpoint
    )
    history = trainer.fit()
    return method, history


def prepare(method_config: CoSettleConfig, data: CoSettleDataConfig) -> None:
    """Validate; a sample holds as many frames as the walk (``--frames`` sets both)."""
    method_config.validate()
    data.validate()
    data.frames = method_config.frames


def summary(history: list[dict], out: Path) -> dict:
    first, last = history[0], history[-1]
    return {
        "steps": last["step"],
        "loss": [round(first["loss"], 4), round(last["loss"], 4)],
        "cycle_acc": [round(first["cycle_acc"], 4), round(last["cycle_acc"], 4)],
        "projection": str(Path(out) / "projection"),
    }


PLUGIN = MethodPlugin(
    name="cosettle",
    help="Co-Settle projection on a frozen image encoder",
    method_config=CoSettleConfig,
    data_config=CoSettleDataConfig,
    train=train_cosettle,
    train_defaults={"batch_size": 512, "epochs": 5.0},
    prepare=prepare,
    summary=summary,
)
