"""Position-shortcut controls (Co-Settle supplementary E.3/E.4): six short runs.

The Co-Settle head is trained with and without PEA on three kinds of frame pairs:

``real``
    the training pairs (two frames ``delta`` apart, one crop);
``unrelated``
    frame 2 taken from another video (item ``i`` of view ``v`` gets frame 2 of video
    ``(i + 1) mod n``): no content correspondence is left, only position;
``shuffled``
    frame 2's image cut into encoder patches that are permuted before encoding: the content
    moves, the positional embedding stays.

Without PEA the walk ``p1 -> p2 -> p1`` returns to the very tokens it left, so a head that keeps
the positional code solves it on any pair; with PEA the walk returns to ``p1~`` (frame 1 with a
cropped, upsampled positional embedding), which position alone cannot reach.

Encoder passes are shared: one view bank (:mod:`videorep.methods.cosettle.viewbank`) holds
``z1, z2, z1~`` of every sample; the unrelated pairs re-index its ``z2``; the shuffled pairs
add one encoder pass per sample (frame 2 shuffled). The six runs are ordinary Co-Settle runs of
the shared trainer on those tokens (no PEA: the trainer's method swaps ``z1~`` for ``z1``).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import Dataset

from videorep.errors import VideorepError
from videorep.utils.progress import progress_bar

MODES = ("real", "unrelated", "shuffled")


def shuffle_patches(image: torch.Tensor, patch: int, generator: torch.Generator) -> torch.Tensor:
    """``[3, H, W]`` with its ``patch x patch`` cells permuted (``H, W`` multiples of ``patch``)."""
    c, h, w = image.shape
    gh, gw = h // patch, w // patch
    if gh * patch != h or gw * patch != w:
        raise VideorepError(f"image {h}x{w} is not a whole number of {patch}-pixel patches")
    cells = image.reshape(c, gh, patch, gw, patch).permute(1, 3, 0, 2, 4).reshape(gh * gw, -1)
    cells = cells[torch.randperm(gh * gw, generator=generator)]
    return cells.reshape(gh, gw, c, patch, patch).permute(2, 0, 3, 1, 4).reshape(c, h, w)


@torch.no_grad()
def encode_shuffled_frames(
    pairs,  # FramePairDataset
    encoder: torch.nn.Module,
    views: int,
    seed: int,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """``[views * n, N, D]`` float16 tokens of frame 2 of every bank item, patches shuffled.

    Item ``v * n + i`` is the same sample as the view bank's (view ``v``, index ``i``).
    """
    n = len(pairs)
    patch = int(encoder.patch_size)
    out = []
    bar = progress_bar(views * n, desc="shuffled frames") if progress else None
    try:
        for v in range(views):
            pairs.set_epoch(v)
            for start in range(0, n, batch_size):
                images = []
                for i in range(start, min(n, start + batch_size)):
                    frame2 = pairs[i]["frames"][1]
                    gen = torch.Generator().manual_seed(seed * 1_000_003 + v * 10_007 + i)
                    images.append(shuffle_patches(frame2, patch, gen))
                z = encoder(torch.stack(images).to(device)).float().cpu()
                out.append(z.half())
                if bar is not None:
                    bar.update(len(images))
    finally:
        if bar is not None:
            bar.close()
    return torch.cat(out)


class ControlPairs(Dataset):
    """Bank items ``{"tokens": [3, N, D], "grid"}`` with frame 2 replaced as ``mode`` says."""

    def __init__(
        self,
        bank,  # ViewBankDataset
        mode: str,
        items_per_view: int,
        shuffled: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if mode not in MODES:
            raise VideorepError(f"unknown control {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "unrelated" and items_per_view < 2:
            raise VideorepError("unrelated pairs need at least 2 videos")
        if mode == "shuffled" and (shuffled is None or len(shuffled) != len(bank)):
            raise VideorepError("shuffled pairs need one shuffled frame per bank item")
        self.bank, self.mode, self.n = bank, mode, int(items_per_view)
        self.shuffled, self.device = shuffled, device

    def __len__(self) -> int:
        return len(self.bank)

    def __getitem__(self, k: int) -> dict:
        item = self.bank[k]
        tokens = item["tokens"].clone()
        if self.mode == "unrelated":
            v, i = divmod(k, self.n)
            tokens[1] = self.bank[v * self.n + (i + 1) % self.n]["tokens"][1]
        elif self.mode == "shuffled":
            tokens[1] = self.shuffled[k].float()
        return {"tokens": tokens.to(self.device), "grid": item["grid"]}


def run_shortcut_controls(
    encoder: torch.nn.Module,
    sources,  # list[VideoSource]
    out: str | Path,
    method_config,  # CoSettleConfig
    views: int = 4,
    steps: int = 150,
    batch_size: int = 8,
    lr: float = 1e-3,
    delta: float = 0.15,
    size: int = 224,
    seed: int = 0,
    modes=MODES,  # noqa: ANN001
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict:
    """The six runs; returns ``{"runs": {name: {"pea", "mode", "step", "cycle_acc", "loss"}}}``."""
    from videorep.data.pairs import FramePairDataset
    from videorep.methods.cosettle.config import CoSettleConfig
    from videorep.methods.cosettle.method import CoSettle
    from videorep.methods.cosettle.viewbank import ViewBankDataset, build_view_bank
    from videorep.train.config import TrainConfig
    from videorep.train.trainer import Trainer

    out = Path(out)
    pairs = FramePairDataset(sources, delta=delta, frames=2, size=size, seed=seed)
    n = len(pairs)
    base = asdict(method_config)
    base.update(pea=True, frames=2)
    bank_method = CoSettle(encoder, CoSettleConfig(**base), seed=seed)
    identity = {
        "method": {k: base[k] for k in ("backbone", "checkpoint", "pea_alpha", "pea_mode")},
        "data": {"delta": delta, "size": size, "videos": [s.name for s in sources]},
        "seed": seed,
    }
    # the view bank encodes on the CPU (it stores numpy arrays); the rest runs on ``device``
    encoder.cpu()
    try:
        folder = build_view_bank(
            pairs, bank_method, views, out / "view_bank", identity, progress=progress
        )
    finally:
        encoder.to(device)
    bank = ViewBankDataset(folder)
    shuffled = None
    if "shuffled" in modes:
        cache = out / "view_bank" / "shuffled_z2.pt"
        if cache.is_file():
            shuffled = torch.load(cache)
        if shuffled is None or len(shuffled) != len(bank):
            shuffled = encode_shuffled_frames(
                pairs, encoder, views, seed, device, progress=progress
            )
            torch.save(shuffled, cache)
    if len(bank) < batch_size:
        raise VideorepError(f"{len(bank)} samples < --batch-size {batch_size}: add --views")
    runs = {}
    for pea in (True, False):
        for mode in modes:
            name = f"{mode}-{'pea' if pea else 'no-pea'}"
            cfg = CoSettleConfig(**{**base, "pea": pea})
            method = CoSettle(encoder, cfg, seed=seed).to(device)
            data = ControlPairs(bank, mode, n, shuffled, device)
            train = TrainConfig(
                out=str(out / name),
                max_steps=steps,
                epochs=max(1.0, steps * batch_size / len(bank)),
                batch_size=batch_size,
                lr=lr,
                warmup_epochs=0.0,
                save_every=max(steps, 1),
                seed=seed,
                progress=progress,
            )
            history = Trainer(method, data, train).fit()
            runs[name] = {
                "pea": pea,
                "mode": mode,
                "step": [r["step"] for r in history],
                "cycle_acc": [r["cycle_acc"] for r in history],
                "loss": [r["loss"] for r in history],
            }
    return {
        "runs": runs,
        "videos": [s.name for s in sources],
        "views": views,
        "samples": len(bank),
        "settings": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "delta": delta,
            "size": size,
            "seed": seed,
            "method": base,
        },
    }


def final_accuracy(run: dict, tail: float = 0.1) -> float:
    """Mean cycle accuracy over the last ``tail`` share of a run's steps."""
    acc = run["cycle_acc"]
    k = max(1, int(len(acc) * tail))
    return sum(acc[-k:]) / k


def plot_shortcut(result: dict, path) -> None:  # noqa: ANN001
    """Cycle accuracy over steps: colour = pair kind, solid = PEA, dashed = no PEA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"real": "tab:blue", "unrelated": "tab:red", "shuffled": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, run in result["runs"].items():
        ax.plot(
            run["step"],
            run["cycle_acc"],
            color=colours[run["mode"]],
            ls="-" if run["pea"] else "--",
            lw=1.2,
            label=name,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("training cycle accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("position shortcut: with PEA (solid) vs without (dashed)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
