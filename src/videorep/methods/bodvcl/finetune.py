"""Supervised fine-tuning of a video encoder (the BOD-VCL paper's protocol, Sec. 5.3).

"The entire set of weights for the feature extractor is trained with supervision, complemented by
an additional classification layer" (BOD-VCL, Sec. 5.3; Table 3: UCF101 / HMDB51, average of the
3 splits). Here:

* model (:class:`ClipClassifier`): a per-frame video encoder (:mod:`.encoders`, ``[N, T, 3, S, S]
  -> [N, T', C]``), mean over time, dropout, one linear layer to the classes; every weight trains.
* training clips (:class:`LabelledClipDataset`): per item one clip of ``clip_len`` frames
  ``stride`` apart, its start drawn uniformly among ``candidates`` starts spread over the video
  (:func:`videorep.data.labelled.read_clips`), one random resized crop shared by the clip's frames
  (scale 0.5-1, as the BOD-VCL pre-training clips), horizontal flip off by default (it would turn
  a "moving right" class into "moving left"; ``flip=True`` for UCF101-like sets), ImageNet
  normalisation (the pre-training pipeline's, :func:`videorep.data.pairs.augment`). Draws are
  seeded from ``(seed, epoch, index)``.
* optimisation: the shared trainer (:class:`videorep.train.trainer.Trainer`: AdamW, warm-up +
  cosine, checkpoints, resume), cross-entropy.
* test (:func:`evaluate_clips`): ``test_clips`` clips spread uniformly over each video, each
  resized whole to ``S x S`` (no crop), softmax averaged over the clips; top-1 / top-5.

Ours where the paper is silent: the clip geometry, the number of test clips (default 5), the
dropout (0.5), the optimiser settings of :class:`FinetuneConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from videorep.data.images import normalize, resize, to_tensor
from videorep.data.labelled import LabelledVideo, read_clips
from videorep.data.pairs import augment, make_generator
from videorep.errors import VideorepError
from videorep.methods.bodvcl.encoders import build_encoder
from videorep.train.checkpoint import load_checkpoint
from videorep.train.config import TrainConfig
from videorep.train.method import Method
from videorep.train.trainer import Trainer


@dataclass
class FinetuneConfig:
    """Settings of one fine-tuning run (see the module docstring)."""

    clip_len: int = 8
    stride: int = 1
    size: int = 112
    candidates: int = 4
    test_clips: int = 5
    flip: bool = False
    dropout: float = 0.5
    epochs: float = 30.0
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    seed: int = 0
    workers: int = 0
    cache_mb: int = 2048

    def validate(self) -> None:
        for name in ("clip_len", "stride", "size", "candidates", "test_clips", "batch_size"):
            if getattr(self, name) < 1:
                raise VideorepError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs <= 0 or self.lr <= 0:
            raise VideorepError("epochs and lr must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise VideorepError(f"dropout must be in [0, 1), got {self.dropout}")


class ClipClassifier(nn.Module):
    """``[N, T, 3, S, S]`` clips -> ``[N, K]`` logits: encoder, mean over time, dropout, linear."""

    def __init__(self, encoder: nn.Module, classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(encoder.out_dim), classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, clips: Tensor) -> Tensor:
        return self.head(self.dropout(self.encoder(clips).mean(dim=1)))


class FinetuneMethod(Method):
    """The trainer's :class:`Method` for supervised fine-tuning: cross-entropy of the clip logits.

    Batches ``{"clips": [B, T, 3, S, S], "label": [B]}`` are moved to the model's device here
    (the trainer leaves batches where the DataLoader puts them).
    """

    method_name = "finetune"
    progress_metrics = ("loss", "acc")

    def __init__(self, model: ClipClassifier) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: Any) -> dict[str, Tensor]:
        device = next(self.model.parameters()).device
        clips = batch["clips"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        logits = self.model(clips)
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "acc": acc.detach()}


class LabelledClipDataset(Dataset):
    """Augmented training clips of labelled videos; ``repeats`` items per video and epoch.

    The ``candidates`` clips of a video are decoded once and kept in memory (per process) while
    they fit in ``config.cache_mb``; the random choices are made afresh for every item.

    Item ``i``: video ``i % len(videos)``, ``{"clips": float [clip_len, 3, size, size],
    "label": int, "index": int}``.
    """

    def __init__(
        self, videos: Sequence[LabelledVideo], config: FinetuneConfig, repeats: int = 1
    ) -> None:
        if not videos:
            raise VideorepError("no training video to fine-tune on")
        self.videos = list(videos)
        self.cfg = config
        self.repeats = max(1, int(repeats))
        self.epoch = 0
        self._decoded: dict[int, np.ndarray] = {}  # decoded candidate clips, up to cache_mb
        self._bytes = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.videos) * self.repeats

    def __getitem__(self, index: int) -> dict:
        cfg = self.cfg
        video = self.videos[int(index) % len(self.videos)]
        gen = make_generator(cfg.seed, self.epoch, int(index))
        key = int(index) % len(self.videos)
        clips = self._decoded.get(key)
        if clips is None:
            clips = read_clips(video, cfg.clip_len, cfg.stride, cfg.candidates)  # [C, L, H, W, 3]
            if self._bytes + clips.nbytes <= cfg.cache_mb * 2**20:
                self._decoded[key] = clips
                self._bytes += clips.nbytes
        pick = int(torch.randint(0, len(clips), (1,), generator=gen))
        frames = list(clips[pick])
        x = augment(frames, gen, size=cfg.size, scale=(0.5, 1.0), flip=cfg.flip)
        return {"clips": x, "label": int(video.label), "index": int(index)}


def clip_stack(video: LabelledVideo, config: FinetuneConfig) -> Tensor:
    """``[test_clips, clip_len, 3, size, size]``: clips spread over ``video``, each frame resized
    whole (no crop) and ImageNet-normalised."""
    clips = read_clips(video, config.clip_len, config.stride, config.test_clips)
    k, t = clips.shape[:2]
    frames = torch.stack([to_tensor(f) for f in clips.reshape(k * t, *clips.shape[2:])])
    x = normalize(resize(frames, (config.size, config.size)))
    return x.reshape(k, t, *x.shape[1:])


@torch.no_grad()
def evaluate_clips(
    model: ClipClassifier,
    videos: Sequence[LabelledVideo],
    config: FinetuneConfig,
    progress: bool = False,
) -> dict[str, float]:
    """Multi-clip test: softmax averaged over ``test_clips`` clips per video; top-1 / top-5 (%).

    Returns ``{"top1", "top5", "videos", "probs"}`` (``probs``: ``[N, K]`` list, for the record).
    """
    if not videos:
        raise VideorepError("no test video")
    device = next(model.parameters()).device
    model.eval()
    probs, labels = [], []
    bar = None
    if progress:
        from videorep.utils.progress import progress_bar

        bar = progress_bar(len(videos), desc="test clips")
    for v in videos:
        x = clip_stack(v, config).to(device)
        probs.append(F.softmax(model(x).float(), dim=1).mean(0).cpu())
        labels.append(int(v.label))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    p = torch.stack(probs)
    y = torch.tensor(labels)
    top = p.topk(min(5, p.shape[1]), dim=1).indices
    return {
        "top1": 100.0 * float((top[:, 0] == y).float().mean()),
        "top5": 100.0 * float((top == y[:, None]).any(1).float().mean()),
        "videos": len(videos),
    }


def load_bodvcl_encoder(path: str | Path) -> tuple[nn.Module, dict]:
    """The online encoder of a ``videorep train bodvcl`` run (``RUN/checkpoint.pt`` or ``RUN``).

    Returns ``(encoder, method_config)``; the encoder is built from the run's own config.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    if ckpt.get("method") != "bodvcl":
        raise VideorepError(f"{path}: a {ckpt.get('method')} checkpoint, not a BOD-VCL run")
    mc = ckpt.get("config", {}).get("method_config")
    if not isinstance(mc, dict) or "encoder" not in mc:
        raise VideorepError(f"{path}: the checkpoint does not record its BOD-VCL config")
    encoder = build_encoder(
        mc["encoder"], keep_time=bool(mc.get("keep_time", True)), img_size=mc.get("image_size", 224)
    )
    prefix = "online.encoder."
    state = {k[len(prefix) :]: v for k, v in ckpt["method_state"].items() if k.startswith(prefix)}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected or not state:
        raise VideorepError(
            f"{path}: the encoder weights do not fit a {mc['encoder']} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return encoder.float(), mc


def finetune(
    encoder: nn.Module,
    train: Sequence[LabelledVideo],
    test: Sequence[LabelledVideo],
    classes: int,
    out: str | Path,
    config: FinetuneConfig,
    device: torch.device | str = "cpu",
    progress: bool = True,
    resume: bool = False,
) -> dict:
    """Fine-tune ``encoder`` + a linear layer on ``train``; multi-clip test on ``test``.

    The run (checkpoints, ``log.jsonl``) lives in ``out``; ``resume`` continues it. Returns
    ``{"top1", "top5", "videos", "train_loss_first", "train_loss_last", "train_acc_last",
    "steps"}``.
    """
    config.validate()
    device = torch.device(device)
    torch.manual_seed(config.seed)
    model = ClipClassifier(encoder, classes, config.dropout).to(device)
    method = FinetuneMethod(model)
    repeats = max(1, math.ceil(config.batch_size / len(train)))
    dataset = LabelledClipDataset(train, config, repeats=repeats)
    tc = TrainConfig(
        out=str(out),
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_epochs=config.warmup_epochs,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.999),
        seed=config.seed,
        workers=config.workers,
        resume=resume,
        progress=progress,
        save_every=100,
    )
    run_config = {"finetune": asdict(config), "classes": classes, "train_videos": len(train)}
    history = Trainer(method, dataset, tc, run_config=run_config).fit()
    scores = evaluate_clips(model, test, config, progress=progress)
    if history:
        scores.update(
            train_loss_first=history[0]["loss"],
            train_loss_last=history[-1]["loss"],
            train_acc_last=history[-1]["acc"],
            steps=history[-1]["step"],
        )
    return scores
