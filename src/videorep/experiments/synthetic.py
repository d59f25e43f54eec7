"""The controlled synthetic study of BOD-VCL, Sec. 5.5 (Fig. 5-7): does a coupled contrastive
loss starve the harder of two correlated factors, and does the decoupled loss fix it?

What the paper fixes, and what is ours where it is silent (each choice below is one or the other):

Data (Sec. 5.5, Fig. 5). Each video has four binary factors:

* ``static_simple``   - background colour, blue or green (paper);
* ``static_complex``  - foreground shape, pentagon or circle (paper);
* ``dynamic_simple``  - background brightness rising or falling over the clip (paper);
* ``dynamic_complex`` - foreground trajectory, rotation (a circular arc) or linear motion (paper).

Ours: 32x32 pixels, 6 frames; random nuisances (foreground colour, position, size, speed, arc
radius and direction, brightness rate, background shade, pixel noise). Three rendering choices
keep each factor where the paper puts it, all checked by tests:

* blue and green have the same luma and nothing is clipped, so the grey frame differences the
  dynamic stream reads carry no background colour (in an earlier version clipping let the
  dynamic stream read the colour at 0.71-0.75);
* the pentagon has the area of the circle, so shape is not readable from the foreground's area
  or mean colour: it takes the contour, which is what makes it the *complex* static factor (the
  shapes are anti-aliased from their signed distance, which keeps the drawn areas equal to 0.1 %;
  OpenCV's rasteriser, used before, made a small pentagon up to 9 % larger than its circle);
* the arc sweeps 1.5-2.5 rad and speeds vary by +-25 %, so the net displacement between the first
  and last frame (which a random network reads off the frame differences) says little about the
  trajectory: telling the two apart takes the change of direction over time. With the previous
  ~pi arc and +-12.5 % speeds, net displacement alone decoded the trajectory at 0.65.

"Correlated" (Sec. 3.3, Prop. 1: the pair "provide redundant information about the similarity
structure"): in the pre-training data of a correlated scenario the two factors are equal
(``static_simple_x_dynamic_complex``: colour == trajectory; ``dynamic_simple_x_static_complex``:
brightness direction == shape); ``independent``: all four independent (Fig. 7).

Positives and negatives (Eq. 1-2, V-SimCLR, rho = 2): the paper's positives are two augmentations
of one video and the negatives are the other videos of the batch. Prop. 1 assumes the similarity
structure is carried by the semantics, so here the two views of a "video" are two *different
renders of the same four factors*: the augmentation redraws every nuisance, and the views share
the factors and nothing else (ours; with shared nuisances, instance discrimination could be
solved by e.g. the foreground colour and no factor would be needed). The renders come from a
fixed dataset of 256 renders per factor tuple (ours). Negatives are all other samples of the
batch, including ones that happen to have the same factors, as in any V-CL batch.

Model (Sec. 5.5): two streams, ``g_A`` on the first frame and ``g_M`` on the motion input, whose
outputs are summed: ``Z = g_A + g_M`` (Eq. 9). The paper feeds optical flow to ``g_M``; we feed the
grey frame differences (ours), because a uniformly brightening background has no optical flow, so
a flow stream could not see the simple dynamic factor at all. Each stream is three 3x3
convolutions with BatchNorm, a global average pool and a linear layer to 64 dims (ours); no
projection head (none is mentioned).

Losses: ``coupled`` - InfoNCE (NT-Xent, Eq. 1-2) on ``Z``; ``decoupled`` - InfoNCE on ``g_A`` plus
InfoNCE on ``g_M``, ``L_sep = L_A(theta_A) + L_M(theta_M)`` of Corollary 1 (Eq. 14), i.e. Eq. 22
with ``Z_A = g_A``, ``Z_M = g_M``. In the two-stream model the static/dynamic components are the
stream outputs, the decomposition the corollary is stated for; on real videos BOD-VCL gets them
from the Koopman split (Eq. 21) because one 3D encoder has no separate streams. Temperature
0.03, Adam, lr 2e-3, batch 64, 600 steps (ours). Every stream first encodes its simple factor,
which random features already separate, and then sits on a plateau until the complex factor
takes off; a low temperature weighs the hardest negatives (same simple factor, other complex
factor) most and shortens that plateau. Measured on the independent scenario: at 0.1 neither
complex factor was learned in 300 steps; at 0.05 the static stream had not learned the shape
after 600 steps for seeds 1 and 2; at 0.03 every stream learned its complex factor by step 500
for seeds 0-3.

Evaluation (Eq. 5-7, Fig. 6-7): a linear probe (softmax regression, :func:`linear_probe`) per
factor on the frozen representation ``Z``, trained on 1024 and tested on 1024 held-out videos
with *independent* factors (ours, and necessary: on correlated data the probe could read the
easy factor to predict its twin). Also recorded: the probe on each stream alone, and the gradient
norms ``||grad_{theta_A} L||`` and ``||grad_{theta_M} L||`` per step (Fig. 6a, d). Baselines in
``results.json``: chance (majority class of the test labels and the accuracy a label-blind
classifier exceeds with probability 2.5 %) and the same probe on the *untrained* model, which is
where every run starts (same seed): random features already decode both simple factors perfectly
and the complex ones slightly above chance.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from videorep.errors import VideorepError
from videorep.methods.bodvcl.augment import color_distort
from videorep.methods.bodvcl.probe import linear_probe
from videorep.utils.device import resolve_device

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
    steps: int = 600
    lr: float = 2e-3
    temperature: float = 0.03
    probe_every: int = 50
    probe_train: int = 1024
    probe_test: int = 1024
    pool_per_tuple: int = 256
    seed: int = 0
    #: "adam": Adam at ``lr`` (the study's own recipe); "paper": the BOD-VCL paper's recipe
    #: (Sec. 5.1): SGD + LARS (timm's, every tensor adapted, momentum 0.9, trust 0.001, weight decay 1e-6 on weight
    #: matrices only) at ``lars_lr`` = 0.3 x batch / 256 (SimCLR's LARS rule) and colour
    #: distortion of each view (one draw per clip, shared by its frames)
    recipe: str = "adam"
    lars_lr: float = 0.075
    workers: int = 2  # processes for the six runs, one thread each (same results for any value)

    @classmethod
    def quick(cls) -> SyntheticConfig:
        return cls(
            steps=3, batch=16, probe_every=3, probe_train=64, probe_test=64, pool_per_tuple=4
        )


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


LUMA = (0.299, 0.587, 0.114)  # Rec. 601, the grey conversion of the dynamic stream
# iso-luminant background colours (luma 0.4043 both), every channel in [0.25, 0.70]: with the
# +-0.04 shade jitter and a brightness change of at most 0.20 nothing is clipped, so the grey
# frame differences are the same for a blue and a green background
BLUE = (0.30, 0.40, 0.70)
GREEN = (0.25, 0.5125, 0.25)
BRIGHTNESS = (0.14, 0.20)  # total brightness change over the clip (grey offset, up or down)
RADIUS = (0.22, 0.28)  # circle radius, fraction of the frame size
# a regular pentagon of circumradius R has area (5/2) R^2 sin(72 deg); this R / r gives it the area
# of a circle of radius r
PENTAGON_R = math.sqrt(math.pi / (2.5 * math.sin(2 * math.pi / 5)))
SPEED = (0.03, 0.05)  # path length per frame, fraction of the frame size (both trajectories)
SWEEP = (1.5, 2.5)  # angle swept by the circular arc over the clip, radians


def render(factors: Tensor, gen: torch.Generator, size: int = 32, frames: int = 6) -> Tensor:
    """Videos ``[n, T, 3, S, S]`` in [0, 1] for factors ``[n, 4]`` with freshly drawn nuisances.

    The random draws do not depend on the factors, so the same generator state renders the same
    nuisances for any factor values (the tests use this to compare videos differing in one
    factor).
    """
    n, t, s = factors.shape[0], frames, size
    bg_green, pentagon, darken, rotation = (factors[:, i].bool() for i in range(4))
    bg = torch.where(bg_green[:, None], torch.tensor(GREEN), torch.tensor(BLUE)) + 0.04 * (
        2 * torch.rand(n, 3, generator=gen) - 1
    )
    rate = _u(n, *BRIGHTNESS, gen) * torch.where(darken, -1.0, 1.0)
    tt = torch.arange(t, dtype=torch.float32) / (t - 1)
    bright = rate[:, None] * tt[None]  # [n, T] grey offset; frame 0 unchanged
    # bright yellowish foreground, luma 0.74-0.92, always above the background's (<= 0.61), so the
    # moving shape shows in the grey frame differences
    fg = torch.stack([_u(n, 0.9, 1.0, gen), _u(n, 0.75, 0.95, gen), _u(n, 0.2, 0.5, gen)], 1)

    radius = _u(n, *RADIUS, gen) * s
    speed = _u(n, *SPEED, gen) * s  # pixels per frame
    centre = torch.stack([_u(n, 0.4, 0.6, gen), _u(n, 0.4, 0.6, gen)], 1) * s
    k = torch.arange(t, dtype=torch.float32) - (t - 1) / 2
    ang = _u(n, 0, 2 * math.pi, gen)
    lin = (
        centre[:, None]
        + speed[:, None, None] * k[None, :, None] * torch.stack([ang.cos(), ang.sin()], 1)[:, None]
    )
    arc_r = speed * (t - 1) / _u(n, *SWEEP, gen)  # same path length as the linear motion
    omega = (speed / arc_r) * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    phase = ang[:, None] + omega[:, None] * k[None]
    arc = centre[:, None] + arc_r[:, None, None] * torch.stack([phase.cos(), phase.sin()], -1)
    pos = torch.where(rotation[:, None, None], arc, lin)  # [n, T, 2]
    # anti-aliased coverage from the signed distance to the outline: coverage = clamp(0.5 - sd)
    # per pixel, which keeps the drawn area equal to the true one (OpenCV's rasteriser inflates a
    # small pentagon by up to 9 % more than a circle)
    centre_px = torch.arange(s, dtype=torch.float32) + 0.5
    dx = centre_px.view(1, 1, 1, s) - pos[..., 0, None, None]  # [n, T, 1, S]
    dy = centre_px.view(1, 1, s, 1) - pos[..., 1, None, None]  # [n, T, S, 1]
    r = radius.view(n, 1, 1, 1)
    sd_circle = (dx * dx + dy * dy).sqrt() - r
    normals = -math.pi / 2 + math.pi / 5 + torch.arange(5) * (2 * math.pi / 5)  # edge normals
    sd_pentagon = torch.stack(
        [dx * math.cos(a) + dy * math.sin(a) for a in normals.tolist()], 0
    ).amax(0) - r * PENTAGON_R * math.cos(math.pi / 5)  # pointing up (a vertex at -90 deg)
    sd = torch.where(pentagon.view(n, 1, 1, 1), sd_pentagon, sd_circle)
    mask = (0.5 - sd).clamp(0, 1)[:, :, None]  # [n, T, 1, S, S]
    background = (bg[:, None, :] + bright[..., None])[..., None, None]
    video = mask * fg[:, None, :, None, None] + (1 - mask) * background
    video = video + 0.02 * torch.randn(video.shape, generator=gen)
    return video.clamp(0, 1)


def render_uint8(
    factors: Tensor, gen: torch.Generator, size: int = 32, frames: int = 6, chunk: int = 128
) -> Tensor:
    """:func:`render` in chunks (bounded memory), stored as uint8 ``[n, T, 3, S, S]``."""
    return torch.cat(
        [
            render(factors[i : i + chunk], gen, size, frames).mul_(255).round_().to(torch.uint8)
            for i in range(0, len(factors), chunk)
        ]
    )


class VideoPool:
    """The pre-training dataset: ``per_tuple`` renders of each of the 16 factor tuples, each with
    its own nuisances, stored as uint8. A scenario draws factor tuples from its distribution
    (:func:`sample_factors`); a training pair for a tuple is two *different* renders of it.
    """

    def __init__(self, per_tuple: int, gen: torch.Generator, size: int = 32, frames: int = 6):
        if per_tuple < 2:
            raise VideorepError(f"need at least two renders per factor tuple, got {per_tuple}")
        codes = torch.arange(16).repeat_interleave(per_tuple)
        self.factors = (codes[:, None] >> torch.arange(3, -1, -1)) & 1  # [N, 4], FACTORS order
        self.videos = render_uint8(self.factors, gen, size, frames)
        self.per_tuple = per_tuple

    def pairs(self, factors: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Two views ``[n, T, 3, S, S]`` (float in [0, 1]) for factor tuples ``[n, 4]``."""
        code = (factors * torch.tensor([8, 4, 2, 1])).sum(1)
        i = torch.randint(0, self.per_tuple, (len(code),), generator=gen)
        j = (i + torch.randint(1, self.per_tuple, (len(code),), generator=gen)) % self.per_tuple
        base = code * self.per_tuple
        return self.videos[base + i].float() / 255, self.videos[base + j].float() / 255


def make_probe_set(cfg: SyntheticConfig) -> dict[str, Tensor]:
    """Independent-factor videos for the linear probes (train and test), uint8."""
    gen = torch.Generator().manual_seed(cfg.seed + 12345)
    out = {}
    for split, n in (("train", cfg.probe_train), ("test", cfg.probe_test)):
        f = sample_factors(n, "independent", gen)
        out[f"{split}_x"] = render_uint8(f, gen, cfg.size, cfg.frames)
        out[f"{split}_y"] = f
    return out


# ----------------------------------------------------------------------------- model
def _stream(in_ch: int, width: int, dim: int) -> nn.Sequential:
    """Three 3x3 convolutions with BatchNorm (two with stride 2), global average pool, linear."""

    def block(i: int, o: int, stride: int) -> list[nn.Module]:
        return [
            nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(o),
            nn.ReLU(inplace=True),
        ]

    return nn.Sequential(
        *block(in_ch, width, 2),
        *block(width, 2 * width, 2),
        *block(2 * width, 2 * width, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, dim),
    )


class TwoStream(nn.Module):
    """``g_A`` on the first frame, ``g_M`` on the grey frame differences; ``Z = g_A + g_M``
    (Eq. 9)."""

    def __init__(self, frames: int = 6, width: int = 16, dim: int = 64) -> None:
        super().__init__()
        self.static = _stream(3, width, dim)
        self.dynamic = _stream(frames - 1, width, dim)

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """``[N, T, 3, S, S]`` -> ``(g_A [N, D], g_M [N, D])``."""
        return self.static(video[:, 0]), self.dynamic(motion_input(video))


def motion_input(video: Tensor) -> Tensor:
    """What the dynamic stream sees: grey frame differences ``[N, T-1, S, S]`` (x4, so that the
    small values are roughly unit-scaled)."""
    luma = torch.tensor(LUMA, device=video.device).view(1, 1, 3, 1, 1)
    grey = (video * luma).sum(dim=2)
    return (grey[:, 1:] - grey[:, :-1]) * 4.0


def info_nce(z0: Tensor, z1: Tensor, temperature: float) -> Tensor:
    """NT-Xent over two views ``[N, D]`` (lightly's NTXentLoss, Eq. 1-2)."""
    from lightly.loss import NTXentLoss

    return NTXentLoss(temperature=temperature)(z0, z1)


def _grad_norm(module: nn.Module) -> float:
    sq = sum(float(p.grad.pow(2).sum()) for p in module.parameters() if p.grad is not None)
    return math.sqrt(sq)


@torch.no_grad()
def _features(model: TwoStream, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(g_A, g_M)`` of uint8 videos ``x``, in eval mode."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(x[i : i + 256].to(device).float() / 255) for i in range(0, len(x), 256)]
    model.train(was)
    # the probes run on the CPU whatever the device (the same numbers as a CPU run's features)
    return torch.cat([a.cpu() for a, _ in out]), torch.cat([m.cpu() for _, m in out])


def probe_accuracies(model: TwoStream, probe: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Linear-probe test accuracy of every factor on ``Z`` (``"Z"``) and on each stream alone
    (``"A"``, ``"M"``)."""
    feats = {split: _features(model, probe[f"{split}_x"]) for split in ("train", "test")}
    reps = {"Z": lambda a, m: a + m, "A": lambda a, m: a, "M": lambda a, m: m}
    return {
        rep: {
            name: linear_probe(
                sel(*feats["train"]),
                probe["train_y"][:, i],
                sel(*feats["test"]),
                probe["test_y"][:, i],
                topk=(1,),
            )["top1"]
            for i, name in enumerate(FACTORS)
        }
        for rep, sel in reps.items()
    }


def init_model(cfg: SyntheticConfig) -> TwoStream:
    """The model every run starts from (seeded: all six runs share it)."""
    torch.manual_seed(cfg.seed)
    return TwoStream(cfg.frames, cfg.width, cfg.dim)


RECIPES = ("adam", "paper")


def build_optimizer(model: nn.Module, cfg: SyntheticConfig) -> torch.optim.Optimizer:
    """Adam (``recipe="adam"``) or SGD + LARS (``recipe="paper"``); see :class:`SyntheticConfig`."""
    if cfg.recipe not in RECIPES:
        raise VideorepError(f"unknown recipe {cfg.recipe!r}; choose one of {', '.join(RECIPES)}")
    if cfg.recipe == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    from videorep.methods.bodvcl.optim import build_lars

    return build_lars(list(model.named_parameters()), cfg.lars_lr, 1e-6)


def run_one(
    scenario: str,
    loss: str,
    cfg: SyntheticConfig,
    probe: dict[str, Tensor],
    pool: VideoPool,
    device: torch.device | str = "cpu",
) -> dict[str, list]:
    """Pre-train one two-stream model on ``device``; returns the accuracy / gradient-norm
    history. The data are drawn on the CPU (same draws on every device) and moved."""
    if loss not in LOSSES:
        raise VideorepError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    device = torch.device(device)
    model = init_model(cfg).to(device)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = build_optimizer(model, cfg)
    history: dict[str, list] = {"step": [], "acc": [], "acc_A": [], "acc_M": []}
    history.update(grad_step=[], grad_A=[], grad_M=[], loss=[])

    def record(step: int) -> None:
        accs = probe_accuracies(model, probe)
        history["step"].append(step)
        history["acc"].append(accs["Z"])
        history["acc_A"].append(accs["A"])
        history["acc_M"].append(accs["M"])

    record(0)
    for step in range(1, cfg.steps + 1):
        v0, v1 = pool.pairs(sample_factors(cfg.batch, scenario, gen), gen)
        if cfg.recipe == "paper":  # drawn on the CPU generator (same draws on every device)
            v0 = color_distort(v0, gen, normalized=False)
            v1 = color_distort(v1, gen, normalized=False)
        v0, v1 = v0.to(device, non_blocking=True), v1.to(device, non_blocking=True)
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


# ----------------------------------------------------------------------------- plots
def _smooth(values: list[float], k: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= k:
            acc -= values[i - k]
        out.append(acc / min(i + 1, k))
    return out


LABELS = {
    "static_simple": "simple static (bg colour)",
    "static_complex": "complex static (shape)",
    "dynamic_simple": "simple dynamic (brightness)",
    "dynamic_complex": "complex dynamic (trajectory)",
}


def plot(histories: dict, out: Path) -> list[Path]:
    """Fig. 6 (correlated scenarios) and Fig. 7 (independent) as PNGs in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def acc_panel(ax, hist, title):
        for name in FACTORS:
            ax.plot(
                hist["step"], [a[name] for a in hist["acc"]], marker="o", ms=3, label=LABELS[name]
            )
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
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
        res = histories[scen]
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
        acc_panel(ax, histories["independent"][loss], f"independent factors: accuracy, {loss} loss")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths.append(out / "fig7_independent.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def save_examples(out: Path, cfg: SyntheticConfig) -> Path:
    """Fig. 5-like strip: four videos (first, middle and last frame)."""
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


# ----------------------------------------------------------------------------- driver
_SHARED: dict[str, object] = {}  # probe set and pool, inherited by forked workers


def _job(args: tuple[str, str, SyntheticConfig, str]) -> tuple[str, str, dict, float]:
    scen, loss, cfg, device = args
    torch.set_num_threads(1)
    t0 = time.time()
    hist = run_one(scen, loss, cfg, _SHARED["probe"], _SHARED["pool"], device)  # type: ignore[arg-type]
    return scen, loss, hist, time.time() - t0


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_study(out: Path, cfg: SyntheticConfig, log=print, device: str = "cpu") -> dict:
    """All scenarios x losses; writes ``results.json``, ``history.json`` and the figures.

    Every run uses one thread; with ``cfg.workers > 1`` the runs go to that many forked processes
    (same numbers as sequentially). ``device`` (``--device``): where the models train; on a GPU
    the six runs go one after the other in this process (CUDA does not survive a fork).
    """
    import multiprocessing

    dev = resolve_device(device)

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VideorepError(f"cannot create output directory {out}: {exc}") from exc
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start, cpu0, load0 = time.time(), _cpu_seconds(), os.getloadavg()
    try:
        _SHARED["probe"] = probe = make_probe_set(cfg)
        _SHARED["pool"] = VideoPool(
            cfg.pool_per_tuple, torch.Generator().manual_seed(cfg.seed + 2), cfg.size, cfg.frames
        )
        untrained = probe_accuracies(init_model(cfg), probe)
        log(f"data and untrained probes: {time.time() - start:.0f}s")
        jobs = [(scen, loss, cfg, str(dev)) for scen in SCENARIOS for loss in LOSSES]
        histories: dict[str, dict[str, dict]] = {scen: {} for scen in SCENARIOS}
        workers = min(cfg.workers, len(jobs)) if dev.type == "cpu" else 1
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(workers) as mp_pool:
                done = list(mp_pool.imap_unordered(_job, jobs))
        else:
            done = [_job(job) for job in jobs]
    finally:
        _SHARED.clear()
        torch.set_num_threads(threads)
    for scen, loss, hist, seconds in done:
        histories[scen][loss] = hist
        acc = hist["acc"][-1]
        log(
            f"{scen:34s} {loss:9s} "
            + " ".join(f"{k}={v:.3f}" for k, v in acc.items())
            + f"  ({seconds:.0f}s)"
        )
    elapsed, cpu = time.time() - start, _cpu_seconds() - cpu0

    n_test = len(probe["test_y"])
    majority = (probe["test_y"].float().mean(0)).tolist()
    results: dict = {
        scen: {
            loss: {k: round(v, 4) for k, v in histories[scen][loss]["acc"][-1].items()}
            for loss in LOSSES
        }
        for scen in SCENARIOS
    }
    results["baselines"] = {
        "chance": {f: round(max(p, 1 - p), 4) for f, p in zip(FACTORS, majority)},
        "chance_upper_95": round(0.5 + 1.96 * math.sqrt(0.25 / n_test), 4),
        "untrained": {k: round(v, 4) for k, v in untrained["Z"].items()},
        "untrained_static_stream": {k: round(v, 4) for k, v in untrained["A"].items()},
        "untrained_dynamic_stream": {k: round(v, 4) for k, v in untrained["M"].items()},
    }
    results["streams"] = {
        scen: {
            loss: {
                "static_stream": {
                    k: round(v, 4) for k, v in histories[scen][loss]["acc_A"][-1].items()
                },
                "dynamic_stream": {
                    k: round(v, 4) for k, v in histories[scen][loss]["acc_M"][-1].items()
                },
            }
            for loss in LOSSES
        }
        for scen in SCENARIOS
    }
    results["meta"] = {
        "config": asdict(cfg),
        "device": str(dev),
        "seconds": round(elapsed, 1),
        "cpu_seconds": round(cpu, 1),
        "load_average_start": [round(x, 2) for x in load0],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "probe": "softmax regression (L-BFGS) on Z = g_A + g_M of the frozen model; "
        f"{cfg.probe_train} train / {n_test} test videos with independent factors",
        "baselines": "chance = majority-class rate of the test labels; chance_upper_95 = the "
        "accuracy a label-blind classifier exceeds with probability 2.5%; untrained = the same "
        "probe on the seeded initial model every run starts from",
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "history.json").write_text(json.dumps(histories))
    plot(histories, out)
    save_examples(out, cfg)
    return results


def format_table(results: dict) -> str:
    """Final per-factor accuracies, with the baselines, as a text table."""
    head = f"{'scenario':34s} {'loss':9s} " + " ".join(f"{f:>15s}" for f in FACTORS)
    lines = [head, "-" * len(head)]
    for scen in SCENARIOS:
        for loss in LOSSES:
            accs = results[scen][loss]
            lines.append(f"{scen:34s} {loss:9s} " + " ".join(f"{accs[f]:15.3f}" for f in FACTORS))
    base = results["baselines"]
    lines.append("-" * len(head))
    for name, accs in (("untrained model", base["untrained"]), ("chance", base["chance"])):
        lines.append(f"{name:44s} " + " ".join(f"{accs[f]:15.3f}" for f in FACTORS))
    lines.append(
        f"(a label-blind probe exceeds {base['chance_upper_95']:.3f} with probability 2.5%)"
    )
    return "\n".join(lines)
