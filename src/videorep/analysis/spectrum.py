"""The spectral check of Co-Settle's theory (supplementary Sec. B, Definitions 1-2, Theorems 1-2).

* :func:`intra_covariance` - Definition 1: ``Sigma = E[(z_a - z_b)(z_a - z_b)^T]`` over temporally
  corresponding patch pairs (same patch index in two frames of a video, the pairs of
  :func:`videorep.analysis.tradeoff.frame_pairs`).
* :func:`inter_covariance` - Definition 2: ``Sigma_bar = E[(zbar_u - zbar_v)(zbar_u - zbar_v)^T]``
  over pairs of videos, ``zbar`` a video's mean token.
* :func:`head_linear_map` - the head as one ``D x D`` matrix: the mean Jacobian of ``g`` at the
  data (``jacobian``; tanh and LayerNorm included) or the product of its Linear weights
  (``weight``).
* :func:`soft_threshold` - Theorem 1: ``mu_i = sqrt(1 - sigma_i / (2 lambda))`` for
  ``sigma_i <= 2 lambda``, else 0; :func:`fit_soft_threshold` fits ``lambda`` and a global scale
  (the theory's surrogate regulariser fixes the scale at 1; the real head's LayerNorm and KL
  regulariser do not).
* :func:`theorem2_delta` - Theorem 2's margin improvement for the fitted ``lambda``.
* :func:`spectrum_analysis` - all of it, plus the checks of the assumptions (symmetric, PSD,
  commuting, diagonal in the common basis, Assumption 6, Gaussian differences, tanh in its
  linear range).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from videorep.analysis.tradeoff import frame_pairs
from videorep.errors import VideorepError


def intra_covariance(videos: Sequence[torch.Tensor], pairs: str = "adjacent") -> torch.Tensor:
    """Definition 1 from ``videos`` ``[T, N, D]``: ``[D, D]`` (float64), averaged over all
    (frame pair, patch) samples."""
    d = videos[0].shape[-1]
    total = torch.zeros(d, d, dtype=torch.float64, device=videos[0].device)
    count = 0
    for v in videos:
        p = frame_pairs(v.shape[0], pairs)
        a = torch.tensor([x[0] for x in p])
        b = torch.tensor([x[1] for x in p])
        diff = (v[a].double() - v[b].double()).reshape(-1, d)
        total += diff.T @ diff
        count += diff.shape[0]
    return total / max(count, 1)


def video_means(videos: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[M, D]``: each video's mean token over frames and patches."""
    return torch.stack([v.double().reshape(-1, v.shape[-1]).mean(dim=0) for v in videos])


def inter_covariance(videos: Sequence[torch.Tensor]) -> torch.Tensor:
    """Definition 2: ``[D, D]`` mean of ``(zbar_u - zbar_v)(zbar_u - zbar_v)^T`` over ``u < v``.

    Its rank is at most ``M - 1``.
    """
    means = video_means(videos)
    m = means.shape[0]
    if m < 2:
        raise VideorepError("the inter-video covariance needs at least 2 videos")
    iu = torch.triu_indices(m, m, offset=1)
    diff = means[iu[0]] - means[iu[1]]
    return diff.T @ diff / diff.shape[0]


def head_linear_map(
    head: torch.nn.Module, tokens: torch.Tensor | None = None, mode: str = "jacobian"
) -> torch.Tensor:
    """The head ``g`` as a ``[D, D]`` float64 matrix.

    ``jacobian``: ``E_z[J_g(z)]`` over ``tokens`` ``[S, D]`` (rows ``dg_j / dz_k``);
    ``weight``: the product of the head's Linear weights (last one first), ignoring the
    activations and the LayerNorm.
    """
    if mode == "weight":
        mats = [
            m.weight.detach().double() for m in head.modules() if isinstance(m, torch.nn.Linear)
        ]
        if not mats:
            raise VideorepError("the head has no Linear layer")
        out = mats[0]
        for w in mats[1:]:
            out = w @ out
        return out
    if mode != "jacobian":
        raise VideorepError(f"unknown head map {mode!r}; choose jacobian or weight")
    if tokens is None:
        raise VideorepError("the Jacobian map needs sample tokens")
    from torch.func import jacrev, vmap

    head = head.eval()
    param = next(head.parameters())
    x = tokens.to(param.device, param.dtype)
    total = None
    for chunk in x.split(64):
        jac = vmap(jacrev(lambda z: head(z[None])[0]))(chunk).detach().double().sum(dim=0)
        total = jac if total is None else total + jac
    return (total / x.shape[0]).cpu()


def soft_threshold(sigma: torch.Tensor, lam: float) -> torch.Tensor:
    """Theorem 1: ``sqrt(1 - sigma / (2 lam))`` where ``sigma <= 2 lam``, else 0."""
    return torch.sqrt(torch.clamp(1 - sigma / (2 * lam), min=0.0))


def fit_soft_threshold(
    sigma: torch.Tensor, mu: torch.Tensor, steps: int = 600
) -> tuple[float, float, float]:
    """Least-squares fit of ``mu ~ scale * soft_threshold(sigma, lam)``: ``(lam, scale, r2)``.

    ``lam`` is searched on a log grid spanning the spectrum (``scale`` in closed form at each);
    ``r2`` is the share of the variance of ``mu`` explained.
    """
    sigma, mu = sigma.double(), mu.double()
    positive = sigma[sigma > 0]
    lo = float(positive.min()) / 4 if positive.numel() else 1e-6
    hi = float(sigma.max()) * 4 + 1e-12
    best = (float("inf"), 1.0, 1.0)
    for lam in torch.logspace(torch.log10(torch.tensor(lo)), torch.log10(torch.tensor(hi)), steps):
        pred = soft_threshold(sigma, float(lam))
        denom = float(pred @ pred)
        scale = float(mu @ pred) / denom if denom > 0 else 0.0
        err = float(((mu - scale * pred) ** 2).sum())
        if err < best[0]:
            best = (err, float(lam), scale)
    total = float(((mu - mu.mean()) ** 2).sum())
    r2 = 1 - best[0] / total if total > 0 else 0.0
    return best[1], best[2], r2


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(v: torch.Tensor) -> torch.Tensor:
        v = v.double()
        order = torch.argsort(v)
        r = torch.empty_like(v)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        for value in torch.unique(v):  # average the ranks of ties
            tie = v == value
            if int(tie.sum()) > 1:
                r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(rx.norm() * ry.norm())
    return float(rx @ ry) / denom if denom > 0 else 0.0


def theorem2_delta(sigma: torch.Tensor, lam: float) -> float:
    """Eq. 28: ``sum_{sigma_i <= 2 lam} (tau - sigma_i)(1 - sigma_i / (2 lam))``,
    ``tau = mean(sigma)`` (Assumption 6)."""
    sigma = sigma.double()
    tau = float(sigma.mean())
    keep = sigma <= 2 * lam
    return float(((tau - sigma[keep]) * (1 - sigma[keep] / (2 * lam))).sum())


def _excess_kurtosis(x: torch.Tensor) -> float:
    x = x.double() - x.double().mean()
    var = float((x**2).mean())
    return float((x**4).mean()) / var**2 - 3 if var > 0 else 0.0


def spectrum_analysis(
    videos: Sequence[torch.Tensor],
    head: torch.nn.Module,
    pairs: str = "adjacent",
    map_mode: str = "jacobian",
    samples: int = 512,
    seed: int = 0,
) -> dict:
    """Theorem 1 and 2 against a trained head on encoder tokens ``videos`` ``[T, N, D]``.

    Returns a JSON-serialisable dict: the spectra (``sigma`` descending, ``tau_i`` = the
    inter-video covariance in the same basis, ``mu`` observed, ``mu_pred`` fitted), the fit
    (``lambda``, ``scale``, ``r2``), ``spearman`` (observed vs predicted ``mu``), Theorem 2's
    ``delta``, and ``assumptions`` (each a number with what it should be).
    """
    sigma_mat = intra_covariance(videos, pairs)
    inter_mat = inter_covariance(videos)
    sigma, basis = torch.linalg.eigh(sigma_mat)
    sigma, basis = sigma.flip(0).clamp(min=0), basis.flip(1)
    gen = torch.Generator().manual_seed(seed)
    flat = torch.cat([v.reshape(-1, v.shape[-1]) for v in videos])
    pick = torch.randperm(flat.shape[0], generator=gen)[:samples]
    sample = flat[pick].float()
    w = head_linear_map(head, sample, map_mode)
    w_sym = (w + w.T) / 2
    in_basis = basis.T @ w_sym @ basis
    mu = torch.diagonal(in_basis)
    lam, scale, r2 = fit_soft_threshold(sigma, mu)
    mu_pred = scale * soft_threshold(sigma, lam)
    tau_i = torch.diagonal(basis.T @ inter_mat @ basis)
    off = in_basis - torch.diag(mu)
    norm = float(sigma_mat.norm() * inter_mat.norm())
    comm = float((sigma_mat @ inter_mat - inter_mat @ sigma_mat).norm()) / norm if norm else 0.0
    eig_w = torch.linalg.eigvalsh(w_sym)
    # differences of corresponding patches along the top eigenvectors (Gaussian: kurtosis 0)
    a_b = frame_pairs(videos[0].shape[0], pairs)
    diffs = torch.cat(
        [
            (v[torch.tensor([p[0] for p in a_b])] - v[torch.tensor([p[1] for p in a_b])])
            .reshape(-1, v.shape[-1])
            .double()
            for v in videos
            if v.shape[0] == videos[0].shape[0]
        ]
    )
    kurt = [_excess_kurtosis(diffs @ basis[:, i]) for i in range(min(5, basis.shape[1]))]
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    pre = sample.to(linears[0].weight.dtype) @ linears[0].weight.detach().T + linears[0].bias
    tanh_out = float((pre.detach().abs() > 1).double().mean())
    return {
        "dim": int(sigma.numel()),
        "videos": len(videos),
        "pairs": pairs,
        "map": map_mode,
        "sigma": sigma.tolist(),
        "tau_i": tau_i.tolist(),
        "mu": mu.tolist(),
        "mu_pred": mu_pred.tolist(),
        "lambda": lam,
        "scale": scale,
        "r2": r2,
        "spearman": spearman(mu, mu_pred),
        "spearman_mu_sigma": spearman(mu, sigma),
        "above_threshold": int((sigma > 2 * lam).sum()),
        "delta_theorem2": theorem2_delta(sigma, lam),
        "assumptions": {
            "asymmetry ||W - W^T|| / ||W|| (symmetric: 0)": float((w - w.T).norm() / w.norm()),
            "negative eigenvalue share of sym(W) (PSD: 0)": float((eig_w < 0).double().mean()),
            "off-diagonal energy of sym(W) in the Sigma basis (commuting: 0)": float(
                off.norm() ** 2 / in_basis.norm() ** 2
            ),
            "commutator ||Sigma Sigma_bar - Sigma_bar Sigma|| / (||Sigma|| ||Sigma_bar||) (0)": comm,
            "Assumption 6: std/mean of tau_i (0)": float(tau_i.std() / tau_i.mean())
            if float(tau_i.mean()) > 0
            else float("nan"),
            "Assumption 6: mean tau_i / mean sigma_i (1)": float(tau_i.mean() / sigma.mean())
            if float(sigma.mean()) > 0
            else float("nan"),
            "rank of Sigma_bar (<= videos - 1; full: dim)": int(
                torch.linalg.matrix_rank(inter_mat).item()
            ),
            "excess kurtosis of z_a - z_b on the top-5 eigenvectors (Gaussian: 0)": kurt,
            "share of first-layer pre-activations with |x| > 1 (tanh linear: 0)": tanh_out,
        },
    }


def plot_spectrum(result: dict, path) -> None:  # noqa: ANN001
    """Two panels: the covariance spectra (sigma_i, tau_i) and the head's mu_i vs Theorem 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = list(range(1, result["dim"] + 1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    axes[0].semilogy(idx, [max(s, 1e-12) for s in result["sigma"]], label="sigma_i (intra)")
    axes[0].semilogy(
        idx, [max(t, 1e-12) for t in result["tau_i"]], ".", ms=2, label="tau_i (inter, same basis)"
    )
    axes[0].axhline(2 * result["lambda"], color="k", ls="--", lw=1, label="2 lambda (fitted)")
    axes[0].set_xlabel("eigen-direction i (sigma descending)")
    axes[0].set_title("covariance spectra")
    axes[0].legend(fontsize=8)
    axes[1].plot(idx, result["mu"], ".", ms=3, label=f"head mu_i ({result['map']})")
    axes[1].plot(idx, result["mu_pred"], "-", lw=1.5, label="Theorem 1 (fitted)")
    axes[1].set_xlabel("eigen-direction i (sigma descending)")
    axes[1].set_title(
        f"Spearman {result['spearman']:.3f}, R^2 {result['r2']:.3f}, lambda {result['lambda']:.3g}"
    )
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
