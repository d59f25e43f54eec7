"""The consistency/separability trade-off metrics of Co-Settle (supplementary D.3.3, Eq. 47-55).

Every function here is pure tensor code: it takes patch tokens that were already extracted
(``[T, N, D]`` per video: ``T`` frames, ``N`` patch tokens, ``D`` channels) and returns numbers.
The extraction (frame sampling, Resize 256 + CenterCrop 224, encoder, head) lives in
:mod:`videorep.analysis.features`.

Two protocols, because the paper's equations and the authors' ``cal_metric.py`` disagree:

``paper`` (default; Eq. 47-53 as printed)
    * ``d(u, v) = 1/N sum_i ||z_u(i) - z_v(i)||`` on the middle frame ``T // 2``;
      ``D_inter^ori`` is its mean over pairs ``u < v``; ``c(i)`` is the mean over videos of patch
      ``i``; ``r(u) = 1/N sum_i ||z_u(i) - c(i)||``; ``R_inter = max_u r(u)``;
      ``D_inter = D_inter^ori / (2 R_inter)``.
    * ``d_n(a, b) = 1/N sum_i ||z_a(i) - z_b(i)||`` (same patch index) averaged over the frame
      pairs; ``R_intra^(n) = max_t 1/N sum_i ||z_t(i) - zbar(i)||`` with ``zbar(i)`` the mean of
      patch ``i`` over the frames the pairs use; ``D_intra = mean_n D^ori_n / (2 R_n)``.

``script`` (what ``cal_metric.py`` of github.com/yafeng19/Co-Settle computes)
    * inter: 8 patches drawn at random (``torch.manual_seed(42)``) instead of all ``N``; the
      radius is the largest distance of any single patch vector to ONE global centre (the mean
      of all sampled patch vectors), not the largest per-video mean distance to per-position
      centres.
    * intra: each patch of frame ``t`` is matched to its NEAREST patch of frame ``t + 1`` (any
      position), and only the 50% smallest of these distances are averaged; the radius is the
      largest distance of any patch vector of the video (all ``T`` frames) to the video's one
      centre.

Both protocols use the same frame pairs (``pairs``; the authors' choice by default: adjacent
frames among ``3 .. T - 4``, i.e. the first and last three frames dropped) and the same cycle
accuracy (Eq. 55 with the script's frame pairs at 0.25/0.4, 0.35/0.5, 0.45/0.6, 0.55/0.7,
0.65/0.8 of the video, the palindrome walk ``a -> b -> a`` on 2x2-pooled tokens, temperature
0.03, raw dot products as in the script, or cosine with ``l2=True``).

The margin is ``D = D_inter - gamma * D_intra`` (Eq. 54). The paper defines ``gamma`` as the ratio
of the mean unnormalised distances over the compared models and then fixes ``gamma = 0.3`` (its
Tab. 10 numbers satisfy ``D = D_inter - 0.3 D_intra``); :func:`gamma_from` computes the ratio for
any set of results (e.g. the frozen encoder alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from videorep.errors import VideorepError
from videorep.methods.cosettle.losses import cycle_loss

PROTOCOLS = ("paper", "script")
#: ``authors``: adjacent frames among 3..T-4 (cal_metric.py); ``adjacent``: all adjacent
#: frames; ``all``: every pair a < b; ``middle``: the middle frame with every other frame
PAIR_MODES = ("authors", "adjacent", "all", "middle")
#: the frame pairs of the cycle accuracy, as fractions of the video length (cal_metric.py)
CYCLE_TIME_PAIRS = ((0.25, 0.4), (0.35, 0.5), (0.45, 0.6), (0.55, 0.7), (0.65, 0.8))
#: the paper's fixed scale factor (Eq. 54, "we use the average gamma = 0.3 in practice")
PAPER_GAMMA = 0.3
SCRIPT_INTER_PATCHES = 8
SCRIPT_SEED = 42
EPS = 1e-12  # a zero radius (all tokens equal) gives a zero distance, not 0/0


def _check_video(tokens: torch.Tensor, what: str = "video") -> None:
    if tokens.dim() != 3:
        raise VideorepError(f"{what}: expected tokens [T, N, D], got {list(tokens.shape)}")


def frame_pairs(num_frames: int, mode: str = "authors") -> list[tuple[int, int]]:
    """Frame pairs ``(t_a, t_b)`` of one video for ``D_intra`` (Eq. 51-52).

    ``authors``: ``(t, t + 1)`` for ``t = 3 .. T - 5`` (cal_metric.py drops three frames at
    each end, falling back to all adjacent pairs when ``T < 8``); ``adjacent``: ``(t, t + 1)``
    for all ``t``; ``all``: every ``a < b``; ``middle``: ``(T // 2, t)`` for every ``t != T // 2``.
    """
    t = int(num_frames)
    if t < 2:
        raise VideorepError(f"D_intra needs at least 2 frames per video, got {t}")
    if mode == "authors":
        lo, hi = (3, t - 3) if t - 6 >= 2 else (0, t)
        return [(a, a + 1) for a in range(lo, hi - 1)]
    if mode == "adjacent":
        return [(a, a + 1) for a in range(t - 1)]
    if mode == "all":
        return [(a, b) for a in range(t) for b in range(a + 1, t)]
    if mode == "middle":
        mid = t // 2
        return [(mid, b) for b in range(t) if b != mid]
    raise VideorepError(f"unknown frame-pair mode {mode!r}; choose one of {', '.join(PAIR_MODES)}")


def sample_frame_indices(num_frames: int, frames: int = 40) -> list[int]:
    """``frames`` indices spread evenly over ``0 .. num_frames - 1`` (all of them if fewer)."""
    n = int(num_frames)
    if n < 1:
        raise VideorepError("a video without frames")
    if n <= frames:
        return list(range(n))
    return torch.linspace(0, n - 1, frames).round().long().tolist()


def patch_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1/N sum_i ||a(i) - b(i)||_2`` for ``[..., N, D]`` token sets -> ``[...]`` (Eq. 47/51)."""
    return (a - b).norm(dim=-1).mean(dim=-1)


@dataclass
class InterVideo:
    """``D_inter`` of ``M`` videos: unnormalised, radius, normalised and per video."""

    ori: float
    radius: float
    normalized: float
    #: per video ``u``: mean over ``v != u`` of ``d(u, v)`` divided by ``2 R_inter``
    per_video: list[float] = field(default_factory=list)


def inter_video_distance(middle: torch.Tensor, protocol: str = "paper") -> InterVideo:
    """``D_inter`` (Eq. 47-50) of the middle-frame tokens ``[M, N, D]`` of ``M >= 2`` videos."""
    if middle.dim() != 3 or middle.shape[0] < 2:
        raise VideorepError(f"D_inter needs [M >= 2, N, D] tokens, got {list(middle.shape)}")
    z = middle.double()
    m, n, _ = z.shape
    if protocol == "script" and n > SCRIPT_INTER_PATCHES:
        gen = torch.Generator().manual_seed(SCRIPT_SEED)
        keep = torch.randperm(n, generator=gen)[:SCRIPT_INTER_PATCHES]
        z = z[:, keep]
    # d(u, v) for all pairs [M, M]
    d = (z[:, None] - z[None]).norm(dim=-1).mean(dim=-1)
    iu = torch.triu_indices(m, m, offset=1)
    ori = d[iu[0], iu[1]].mean()
    if protocol == "paper":
        centre = z.mean(dim=0, keepdim=True)  # c(i): [1, N, D]
        radius = (z - centre).norm(dim=-1).mean(dim=-1).max()
    elif protocol == "script":
        flat = z.reshape(-1, z.shape[-1])
        radius = (flat - flat.mean(dim=0)).norm(dim=-1).max()
    else:
        raise VideorepError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    scale = torch.clamp_min(2 * radius, EPS)
    per_video = (d.sum(dim=1) / (m - 1) / scale).tolist()
    return InterVideo(float(ori), float(radius), float(ori / scale), per_video)


@dataclass
class IntraVideo:
    """``D_intra`` terms of one video (Eq. 51-53)."""

    ori: float
    radius: float
    normalized: float
    pairs: int


def intra_video_distance(
    tokens: torch.Tensor, pairs: Sequence[tuple[int, int]], protocol: str = "paper"
) -> IntraVideo:
    """``D_intra^ori``, ``R_intra`` and their ratio ``D^ori / (2 R)`` for tokens ``[T, N, D]``."""
    _check_video(tokens)
    if not pairs:
        raise VideorepError("D_intra needs at least one frame pair")
    z = tokens.double()
    a = torch.tensor([p[0] for p in pairs])
    b = torch.tensor([p[1] for p in pairs])
    if protocol == "paper":
        ori = patch_distance(z[a], z[b]).mean()
        used = torch.unique(torch.cat([a, b]))
        zbar = z[used].mean(dim=0, keepdim=True)  # [1, N, D]
        radius = (z[used] - zbar).norm(dim=-1).mean(dim=-1).max()
    elif protocol == "script":
        dist = torch.cdist(z[a], z[b])  # [P, N, N]
        nearest = dist.min(dim=-1).values  # [P, N]
        k = max(1, int(z.shape[1] * 0.5))
        ori = nearest.topk(k, dim=-1, largest=False).values.mean(dim=-1).mean()
        flat = z.reshape(-1, z.shape[-1])
        radius = (flat - flat.mean(dim=0)).norm(dim=-1).max()
    else:
        raise VideorepError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return IntraVideo(
        float(ori), float(radius), float(ori / torch.clamp_min(2 * radius, EPS)), len(pairs)
    )


def cycle_pair_indices(num_frames: int) -> list[tuple[int, int]]:
    """The frames ``(a, b)`` of the cycle accuracy: ``int(frac * T)`` of :data:`CYCLE_TIME_PAIRS`."""
    t = int(num_frames)
    return [(min(int(fa * t), t - 1), min(int(fb * t), t - 1)) for fa, fb in CYCLE_TIME_PAIRS]


def cycle_accuracy(
    tokens: torch.Tensor,
    grid: tuple[int, int],
    pairs: Sequence[tuple[int, int]] | None = None,
    tau: float = 0.03,
    pool: int = 2,
    l2: bool = False,
) -> float:
    """Eq. 55: the share of patches whose palindrome walk ``a -> b -> a`` returns home.

    Args:
        tokens: ``[T, N, D]`` tokens of one video, ``N = grid[0] * grid[1]``.
        grid: the token grid ``(h, w)``.
        pairs: frames ``(a, b)`` of each walk (default :func:`cycle_pair_indices`).
        tau: transition temperature (0.03).
        pool: average-pooling window before the walk (2, as in training and cal_metric.py).
        l2: L2-normalise the tokens first (cosine affinities, as in training); the script uses
            raw dot products.

    Returns the accuracy averaged over the walks. The walk is the one of the training loss
    (:func:`videorep.methods.cosettle.losses.cycle_loss` with the path ``[0, 1, 0]``).
    """
    _check_video(tokens)
    h, w = grid
    if tokens.shape[1] != h * w:
        raise VideorepError(f"{tokens.shape[1]} tokens do not fill a {h}x{w} grid")
    if h % pool or w % pool:
        pool = 1
    pairs = list(pairs) if pairs is not None else cycle_pair_indices(tokens.shape[0])
    z = tokens.float()
    if l2:
        z = torch.nn.functional.normalize(z, dim=-1)
    a = torch.tensor([p[0] for p in pairs], device=z.device)
    b = torch.tensor([p[1] for p in pairs], device=z.device)
    walks = torch.stack([z[a], z[b]], dim=1)  # [P, 2, N, D]
    _, acc = cycle_loss(walks, (h, w), tau=tau, pool=pool, path=[0, 1, 0])
    return float(acc)


@dataclass
class TradeoffMetrics:
    """The Tab. 10 numbers of one model (encoder or encoder + head) on ``M`` videos."""

    d_inter: float
    d_intra: float
    cycle_acc: float
    d_inter_ori: float
    d_intra_ori: float
    r_inter: float
    videos: int
    protocol: str
    pairs: str
    #: one dict per video: ``d_intra``, ``d_intra_ori``, ``r_intra``, ``d_inter`` (its mean
    #: normalised distance to the other videos), ``cycle_acc``
    per_video: list[dict] = field(default_factory=list)

    def margin(self, gamma: float) -> float:
        """``D = D_inter - gamma * D_intra`` (Eq. 54)."""
        return margin(self.d_inter, self.d_intra, gamma)

    def to_dict(self) -> dict:
        return asdict(self)


def margin(d_inter: float, d_intra: float, gamma: float) -> float:
    """The distance margin ``D = D_inter - gamma * D_intra`` (Eq. 54)."""
    return float(d_inter) - float(gamma) * float(d_intra)


def gamma_from(results: TradeoffMetrics | Sequence[TradeoffMetrics]) -> float:
    """``gamma = E[D_intra^ori] / E[D_inter^ori]`` over ``results`` (Eq. 54)."""
    if isinstance(results, TradeoffMetrics):
        results = [results]
    if not results:
        raise VideorepError("gamma needs at least one result")
    intra = sum(r.d_intra_ori for r in results) / len(results)
    inter = sum(r.d_inter_ori for r in results) / len(results)
    if inter <= 0:
        raise VideorepError("gamma undefined: the mean inter-video distance is 0")
    return intra / inter


def tradeoff_metrics(
    videos: Sequence[torch.Tensor],
    grid: tuple[int, int],
    pairs: str = "authors",
    protocol: str = "paper",
    tau: float = 0.03,
    pool: int = 2,
    l2: bool = False,
) -> TradeoffMetrics:
    """``D_inter``, ``D_intra`` and the cycle accuracy of ``M >= 2`` videos.

    Args:
        videos: ``M`` token tensors ``[T_n, N, D]`` (``T_n`` may differ; ``N, D`` may not).
        grid: token grid ``(h, w)``, ``h * w = N``.
        pairs: frame pairs of ``D_intra`` (see :func:`frame_pairs`).
        protocol: ``paper`` (Eq. 47-53) or ``script`` (cal_metric.py), see the module docstring.
        tau, pool, l2: the cycle walk (see :func:`cycle_accuracy`).
    """
    if protocol not in PROTOCOLS:
        raise VideorepError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if len(videos) < 2:
        raise VideorepError(f"the trade-off metrics need at least 2 videos, got {len(videos)}")
    shapes = {tuple(v.shape[1:]) for v in videos}
    if len(shapes) != 1:
        raise VideorepError(f"videos differ in token shape [N, D]: {sorted(shapes)}")
    for v in videos:
        _check_video(v)
    middle = torch.stack([v[v.shape[0] // 2] for v in videos])
    inter = inter_video_distance(middle, protocol)
    per_video = []
    for n, v in enumerate(videos):
        intra = intra_video_distance(v, frame_pairs(v.shape[0], pairs), protocol)
        acc = cycle_accuracy(v, grid, tau=tau, pool=pool, l2=l2)
        per_video.append(
            {
                "d_intra": intra.normalized,
                "d_intra_ori": intra.ori,
                "r_intra": intra.radius,
                "d_inter": inter.per_video[n],
                "cycle_acc": acc,
                "frames": int(v.shape[0]),
            }
        )
    m = len(per_video)
    return TradeoffMetrics(
        d_inter=inter.normalized,
        d_intra=sum(p["d_intra"] for p in per_video) / m,
        cycle_acc=sum(p["cycle_acc"] for p in per_video) / m,
        d_inter_ori=inter.ori,
        d_intra_ori=sum(p["d_intra_ori"] for p in per_video) / m,
        r_inter=inter.radius,
        videos=m,
        protocol=protocol,
        pairs=pairs,
        per_video=per_video,
    )
