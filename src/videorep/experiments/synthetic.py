"""The controlled synthetic study of seed 003, Sec. 5.5 (Fig. 5-7): does a coupled contrastive
loss starve the harder of two correlated factors, and does the decoupled loss fix it?

Data (Fig. 5). Each video has four binary factors:

* ``static_simple``   - background colour, blue or green;
* ``static_complex``  - foreground shape, pentagon (pointing up) or circle, circumradius = radius,
  random size;
* ``dynamic_simple``  - background brightness rising or falling over the clip (a grey offset, so
  frame differences carry no colour; frame 0 unchanged);
* ``dynamic_complex`` - foreground trajectory, rotation (circular orbit) or linear motion (same
  speed, random phase/direction).

Nuisances (foreground colour, position, size, orientation, speed, brightness rate, colour shade,
pixel noise) are random. The two views of a video share its four factors and re-draw every
nuisance, so the similarity structure of the contrastive task is carried by the factors only -
the situation Proposition 1 analyses (``a`` and ``m`` "provide redundant information about S").

Scenarios. ``static_simple_x_dynamic_complex``: background colour == trajectory in pre-training
data; ``dynamic_simple_x_static_complex``: brightness direction == shape; ``independent``: all four
independent. Probes are always trained and tested on *independent* data (otherwise a probe could
read the easy factor to predict its correlated twin).

Model. Two streams (Eq. 9): ``g_A`` sees the first frame, ``g_M`` the stacked frame differences
(a stand-in for the optical flow of the paper); ``Z = g_A + g_M``. Losses:

* ``coupled``   - InfoNCE (NT-Xent, tau 0.1) on ``Z`` (Eq. 1-2);
* ``decoupled`` - InfoNCE on ``g_A`` plus InfoNCE on ``g_M``, i.e. ``L_sep = L_A(theta_A) +
  L_M(theta_M)`` of Corollary 1 (Eq. 14, App. E). In the toy model the static/dynamic components
  are the two stream outputs, which is exactly the decomposition ``Z = g_A + g_M`` the corollary is
  stated for; on real videos BOD-VCL obtains that decomposition with the Koopman split (Eq. 21)
  because a single 3D encoder has no separate streams.

Reported: linear-probe accuracy (logistic regression on ``Z``) of each factor over training and the
gradient norms ``||grad_{theta_A} L||`` and ``||grad_{theta_M} L||`` (Fig. 6), per scenario and loss.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from videorep.errors import VideorepError
from videorep.methods.bodvcl.probe import linear_probe

FACTORS = ("static_simple", "static_complex", "dynamic_simple", "dynamic_complex")
SCENARIOS: dict[str, tuple[str, str] | None] = {
    "static_simple_x_dynamic_complex": ("static_simple", "dynamic_complex"),
    "dynamic_simple_x_static_complex": ("dynamic_simple", "static_complex"),
    "independent": None,
}
LOSSES = ("coupled", "decoupled")


@dataclass
class SyntheticConfig:
    """Settings of the study; :meth:`quick` is a test-sized run."""

    size: int = 32
    frames: int = 6
    dim: int = 64
    width: int = 16
    batch: int = 64
    steps: int = 300
    lr: float = 2e-3
    temperature: float = 0.1
    probe_every: int = 30
    probe_train: int = 1024
    probe_test: int = 1024
    seed: int = 0
    threads: int = 2

    @classmethod
    def quick(cls) -> SyntheticConfig:
        return cls(steps=3, batch=16, probe_every=3, probe_train=64, probe_test=64)


# ----------------------------------------------------------------------------- data
def sample_factors(n: int, scenario: str, gen: torch.Generator) -> Tensor:
    """``[n, 4]`` binary factors in :data:`FACTORS` order; the scenario's pair is made equal."""
    if scenario not in SCENARIOS:
        raise VideorepError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    f = torch.randint(0, 2, (n, 4), generator=gen)
    pair = SCENARIOS[scenario]
    if pair is not None:
        f[:, FACTORS.index(pair[1])] = f[:, FACTORS.index(pair[0])]
    return f


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def render(factors: Tensor, gen: torch.Generator, size: int = 32, frames: int = 6) -> Tensor:
    """Videos ``[n, T, 3, S, S]`` in [0, 1] for factors ``[n, 4]`` with freshly drawn nuisances.

    Shapes are drawn with OpenCV (anti-aliased, 1/16-pixel positions) - much cheaper on a busy CPU
    than rasterising in torch.
    """
    import cv2
    import numpy as np

    n, t, s = factors.shape[0], frames, size
    bg_green, pentagon, darken, orbit = (factors[:, i].bool() for i in range(4))
    # iso-luminant blue and green (Rec. 601 luma 0.368 vs 0.361): the grey frame differences the
    # dynamic stream sees cannot tell the background colours apart
    blue = torch.tensor([0.2, 0.35, 0.9])
    green = torch.tensor([0.15, 0.5, 0.2])
    bg = torch.where(bg_green[:, None], green, blue) + 0.05 * (
        2 * torch.rand(n, 3, generator=gen) - 1
    )
    rate = _u(n, 0.25, 0.35, gen) * torch.where(darken, -1.0, 1.0)
    tt = torch.arange(t, dtype=torch.float32) / (t - 1)
    # grey (colour-neutral) brightness offset, so frame differences do not reveal the colour
    bright = rate[:, None] * tt[None]  # [n, T]; frame 0 unchanged
    fg = torch.stack([_u(n, 0.8, 1.0, gen), _u(n, 0.3, 0.7, gen), _u(n, 0.0, 0.3, gen)], 1)

    radius = _u(n, 0.18, 0.23, gen) * s  # circle radius = pentagon circumradius
    speed = _u(n, 0.035, 0.045, gen) * s  # pixels per frame, both trajectories
    centre = torch.stack([_u(n, 0.4, 0.6, gen), _u(n, 0.4, 0.6, gen)], 1) * s
    k = torch.arange(t, dtype=torch.float32) - (t - 1) / 2
    ang = _u(n, 0, 2 * math.pi, gen)
    lin = (
        centre[:, None]
        + speed[:, None, None] * k[None, :, None] * torch.stack([ang.cos(), ang.sin()], 1)[:, None]
    )
    orbit_r = speed * (t - 1) / _u(n, 2.5, 3.5, gen)  # the orbit sweeps ~pi per clip
    omega = (speed / orbit_r) * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    phase = ang[:, None] + omega[:, None] * k[None]
    orb = centre[:, None] + orbit_r[:, None, None] * torch.stack([phase.cos(), phase.sin()], -1)
    pos = torch.where(orbit[:, None, None], orb, lin)  # [n, T, 2]
    r_pent = radius
    corners = -math.pi / 2 + torch.arange(5) * (2 * math.pi / 5)  # pointing up
    corners = corners[None].expand(n, 5)

    masks = np.zeros((n, t, s, s), dtype=np.uint8)
    scale = 16.0  # cv2 fixed point, shift=4
    pos_np, rad_np, rp_np = pos.numpy(), radius.numpy(), r_pent.numpy()
    cos_c, sin_c = corners.cos().numpy(), corners.sin().numpy()
    for i in range(n):
        for j in range(t):
            cx, cy = pos_np[i, j] - 0.5
            if pentagon[i]:
                pts = np.stack([cx + rp_np[i] * cos_c[i], cy + rp_np[i] * sin_c[i]], 1)
                pts = np.round(pts * scale).astype(np.int32)[None]
                cv2.fillPoly(masks[i, j], pts, 255, cv2.LINE_AA, shift=4)
            else:
                c = (int(round(cx * scale)), int(round(cy * scale)))
                cv2.circle(masks[i, j], c, int(round(rad_np[i] * scale)), 255, -1, cv2.LINE_AA, 4)
    mask = torch.from_numpy(masks).float().div_(255.0)[:, :, None]  # [n, T, 1, S, S]
    background = (bg[:, None, :] + bright[..., None]).clamp(0, 1)[..., None, None]
    video = mask * fg[:, None, :, None, None] + (1 - mask) * background
    video = video + 0.02 * torch.randn(video.shape, generator=gen)
    return video.clamp(0, 1)


# ----------------------------------------------------------------------------- model
def _stream(in_ch: int, width: int, dim: int) -> nn.Sequential:
    """Three 3x3 convolutions (two with stride 2), global average pool, linear."""
    return nn.Sequential(
        nn.Conv2d(in_ch, width, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, dim),
    )


class TwoStream(nn.Module):
    """``g_A`` on the first frame, ``g_M`` on the grey frame differences (colour-free, like the
    optical flow of the paper); ``Z = g_A + g_M`` (Eq. 9)."""

    def __init__(self, frames: int = 6, width: int = 16, dim: int = 64) -> None:
        super().__init__()
        self.static = _stream(3, width, dim)
        self.dynamic = _stream(frames - 1, width, dim)

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """``[N, T, 3, S, S]`` -> ``(g_A [N, D], g_M [N, D])``."""
        luma = torch.tensor([0.299, 0.587, 0.114], device=video.device).view(1, 1, 3, 1, 1)
        grey = (video * luma).sum(dim=2)  # [N, T, S, S]
        diffs = (grey[:, 1:] - grey[:, :-1]) * 4.0  # small values, scaled to a unit-ish range
        return self.static(video[:, 0]), self.dynamic(diffs)


def info_nce(z0: Tensor, z1: Tensor, temperature: float) -> Tensor:
    """NT-Xent over two views ``[N, D]`` (lightly's NTXentLoss, Eq. 1-2)."""
    from lightly.loss import NTXentLoss

    return NTXentLoss(temperature=temperature)(z0, z1)


def _grad_norm(module: nn.Module) -> float:
    sq = sum(float(p.grad.pow(2).sum()) for p in module.parameters() if p.grad is not None)
    return math.sqrt(sq)


@torch.no_grad()
def _probe_all(model: TwoStream, probe: dict[str, Tensor]) -> dict[str, float]:
    model.eval()
    feats = {}
    for split in ("train", "test"):
        za, zm = model(probe[f"{split}_x"])
        feats[split] = za + zm
    model.train()
    return {
        name: linear_probe(
            feats["train"], probe["train_y"][:, i], feats["test"], probe["test_y"][:, i], topk=(1,)
        )["top1"]
        for i, name in enumerate(FACTORS)
    }


def run_one(
    scenario: str, loss: str, cfg: SyntheticConfig, probe: dict[str, Tensor]
) -> dict[str, object]:
    """Pre-train one two-stream model; returns the accuracy / gradient-norm history."""
    if loss not in LOSSES:
        raise VideorepError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    model = TwoStream(cfg.frames, cfg.width, cfg.dim)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: dict[str, list] = {"step": [], "acc": [], "grad_step": [], "grad_A": [], "grad_M": []}
    history["loss"] = []

    def record(step: int) -> None:
        history["step"].append(step)
        history["acc"].append(_probe_all(model, probe))

    record(0)
    for step in range(1, cfg.steps + 1):
        f = sample_factors(cfg.batch, scenario, gen)
        v0 = render(f, gen, cfg.size, cfg.frames)
        v1 = render(f, gen, cfg.size, cfg.frames)
        (a0, m0), (a1, m1) = model(v0), model(v1)
        if loss == "coupled":
            total = info_nce(a0 + m0, a1 + m1, cfg.temperature)
        else:
            total = info_nce(a0, a1, cfg.temperature) + info_nce(m0, m1, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        total.backward()
        history["grad_step"].append(step)
        history["grad_A"].append(_grad_norm(model.static))
        history["grad_M"].append(_grad_norm(model.dynamic))
        history["loss"].append(float(total.detach()))
        opt.step()
        if step % cfg.probe_every == 0 or step == cfg.steps:
            record(step)
    return history


def make_probe_set(cfg: SyntheticConfig) -> dict[str, Tensor]:
    """Independent-factor videos for the linear probes (train and test)."""
    gen = torch.Generator().manual_seed(cfg.seed + 12345)
    out = {}
    for split, n in (("train", cfg.probe_train), ("test", cfg.probe_test)):
        f = sample_factors(n, "independent", gen)
        out[f"{split}_x"] = render(f, gen, cfg.size, cfg.frames)
        out[f"{split}_y"] = f
    return out


# ----------------------------------------------------------------------------- plots / driver
def _smooth(values: list[float], k: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= k:
            acc -= values[i - k]
        out.append(acc / min(i + 1, k))
    return out


def plot(results: dict, out: Path) -> list[Path]:
    """Fig. 6 (correlated scenarios) and Fig. 7 (independent) as PNGs in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "static_simple": "simple static (bg colour)",
        "static_complex": "complex static (shape)",
        "dynamic_simple": "simple dynamic (brightness)",
        "dynamic_complex": "complex dynamic (trajectory)",
    }

    def acc_panel(ax, hist, title):
        for name in FACTORS:
            ax.plot(
                hist["step"], [a[name] for a in hist["acc"]], marker="o", ms=3, label=labels[name]
            )
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0.4, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel("linear probe accuracy")
        ax.set_title(title, fontsize=9)

    def grad_panel(ax, hist, title):
        k = max(1, len(hist["grad_A"]) // 30)
        ax.plot(hist["grad_step"], _smooth(hist["grad_A"], k), label="static stream ||dL/dθ_A||")
        ax.plot(hist["grad_step"], _smooth(hist["grad_M"], k), label="dynamic stream ||dL/dθ_M||")
        ax.set_xlabel("step")
        ax.set_ylabel("gradient norm")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)

    paths = []
    correlated = [s for s in SCENARIOS if SCENARIOS[s] is not None]
    fig, axes = plt.subplots(len(correlated), 4, figsize=(18, 4.2 * len(correlated)))
    for row, scen in enumerate(correlated):
        res = results[scen]
        tag = scen.replace("_x_", " x ")
        grad_panel(axes[row, 0], res["coupled"], f"{tag}: gradient norms, coupled loss")
        acc_panel(axes[row, 1], res["coupled"], f"{tag}: accuracy, coupled loss")
        acc_panel(axes[row, 2], res["decoupled"], f"{tag}: accuracy, decoupled loss")
        grad_panel(axes[row, 3], res["decoupled"], f"{tag}: gradient norms, decoupled loss")
    axes[0, 1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths.append(out / "fig6_correlated.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, loss in zip(axes, LOSSES):
        acc_panel(ax, results["independent"][loss], f"independent factors: accuracy, {loss} loss")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths.append(out / "fig7_independent.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def save_examples(out: Path, cfg: SyntheticConfig) -> Path:
    """Fig. 5-like strip: one video per factor value (first, middle and last frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen = torch.Generator().manual_seed(7)
    f = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1], [1, 0, 1, 0]])
    vids = render(f, gen, cfg.size, cfg.frames)
    fig, axes = plt.subplots(len(f), 3, figsize=(4.5, 1.6 * len(f)))
    for i in range(len(f)):
        for j, t in enumerate((0, cfg.frames // 2, cfg.frames - 1)):
            axes[i, j].imshow(vids[i, t].permute(1, 2, 0).numpy())
            axes[i, j].axis("off")
        axes[i, 0].set_title(
            f"{'green' if f[i, 0] else 'blue'}/{'pentagon' if f[i, 1] else 'circle'}/"
            f"{'darker' if f[i, 2] else 'brighter'}/{'rotation' if f[i, 3] else 'linear'}",
            fontsize=6,
            loc="left",
        )
    fig.tight_layout()
    path = out / "fig5_examples.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_study(out: Path, cfg: SyntheticConfig, log=print) -> dict:
    """All scenarios x losses; writes ``results.json``, ``history.json`` and the figures."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VideorepError(f"cannot create output directory {out}: {exc}") from exc
    torch.set_num_threads(cfg.threads)
    start = time.time()
    probe = make_probe_set(cfg)
    histories: dict[str, dict[str, dict]] = {}
    final: dict[str, dict[str, dict[str, float]]] = {}
    for scen in SCENARIOS:
        histories[scen], final[scen] = {}, {}
        for loss in LOSSES:
            t0 = time.time()
            hist = run_one(scen, loss, cfg, probe)
            histories[scen][loss] = hist
            final[scen][loss] = {k: round(v, 4) for k, v in hist["acc"][-1].items()}
            log(
                f"{scen:34s} {loss:9s} "
                + " ".join(f"{k}={v:.3f}" for k, v in final[scen][loss].items())
                + f"  ({time.time() - t0:.0f}s)"
            )
    elapsed = time.time() - start
    results = {
        **final,
        "meta": {
            "config": asdict(cfg),
            "seconds": round(elapsed, 1),
            "chance": 0.5,
            "probe": "logistic regression on Z = g_A + g_M, independent-factor videos",
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "history.json").write_text(json.dumps(histories))
    plot(histories, out)
    save_examples(out, cfg)
    return results


def format_table(results: dict) -> str:
    """Final per-factor accuracies as a text table."""
    head = f"{'scenario':34s} {'loss':9s} " + " ".join(f"{f:>15s}" for f in FACTORS)
    lines = [head, "-" * len(head)]
    for scen in SCENARIOS:
        for loss in LOSSES:
            accs = results[scen][loss]
            lines.append(f"{scen:34s} {loss:9s} " + " ".join(f"{accs[f]:15.3f}" for f in FACTORS))
    return "\n".join(lines)
