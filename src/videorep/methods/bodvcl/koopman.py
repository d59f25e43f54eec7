"""Per-video Koopman operator and the static/dynamic split of BOD-VCL (BOD-VCL, Sec. 4.3).

Conventions. Per-frame features arrive as ``features`` of shape ``[B, T, M]`` (batch, frames,
feature dimension). Following Eq. 18 the paper stacks frames as *columns*:

* ``F_b = [f(x_1) .. f(x_{T-1})]`` and ``F_f = [f(x_2) .. f(x_T)]``, both ``[B, M, T-1]``;
* the Koopman estimate ``K = F_f F_b^+`` (Eq. 18) is ``[B, M, M]`` and maps column features
  forward in time, ``f(x_{t+1}) ~= K f(x_t)`` (Eq. 17/20).

The split (Eq. 20-21). With ``K = Phi Lambda Phi^-1``, eigenvalues with ``|lambda - 1| < xi``
are time-invariant (static) and the rest time-variant (dynamic). ``Lambda_inv`` keeps the static
eigenvalues (others set to zero), ``Lambda_var`` the dynamic ones, and

    Z_A = 1/T sum_t Phi Lambda_inv Phi^-1 f(x_t),   Z_M = 1/T sum_t Phi Lambda_var Phi^-1 f(x_t).

How it is computed (exactly, not approximately). ``K`` is a product ``K = A B^T`` with inner
dimension ``r = min(M, T - 1)``: ``A = F_f`` and ``B^T = F_b^+`` when ``T - 1 <= M`` (the usual
case: 8 frames, M = 128), otherwise ``A = I`` and ``B^T = K``. Every non-zero eigenvalue of ``K``
is an eigenvalue of the small matrix ``K~ = B^T A`` (``[B, r, r]``) and the remaining ``M - r``
eigenvalues of ``K`` are exactly zero (``K`` has rank at most ``T - 1``). For any spectral
function ``h`` with ``h(0) = 0``, ``h(K) = A (h(K~) / K~) B^T``; since ``xi < 1`` the static set
never contains 0, and Eq. 21 becomes

    Z_A = A  W 1_A W^-1  B^T z,     Z_M = A  W (1 - 1_A) W^-1  B^T z,     z = 1/T sum_t f(x_t)

with ``K~ = W Lambda~ W^-1`` the batched complex eigen-decomposition (``torch.linalg.eig``,
computed in float64) and ``1_A`` the diagonal static indicator. The mean over t commutes with the
linear map (App. F, Eq. 36). This is the same number as building the full ``[M, M]``
decomposition (``benchmarks/koopman.py`` checks it against a per-video loop over the literal
Eq. 21), but it avoids the ``M - r`` repeated zero eigenvalues that make the full decomposition
ill-conditioned and its gradient infinite.

Two readings of Eq. 21. ``mode="eigenvalue"`` (default) is the main text: ``Lambda_inv`` retains
the eigenvalue *values*, so ``T_A + T_M = K`` and ``Z_A`` is the one-step prediction of the static
part. ``mode="projector"`` uses the spectral projectors (``Lambda_inv`` -> indicator), so that
``T_A + T_M = I`` and ``Z = Z_A + Z_M`` as App. F (Eq. 35, 37) states; ``Z_M = z - Z_A`` then also
holds the part of ``z`` in the null space of ``K``. The two agree to O(xi) on the static part.

Gradients. ``koopman_operator`` and ``prediction_loss`` are differentiable through
``torch.linalg.pinv`` (constant-rank derivative). The eigen-part uses :class:`_SpectralFilter`, a
custom autograd function whose backward is the Daleckii-Krein formula restricted to the static
indicator: only divided differences *between* the static and dynamic clusters appear, so repeated
eigenvalues inside a cluster (e.g. several zero eigenvalues from rank-deficient features, or a
constant video) never enter a denominator (autograd through ``torch.linalg.eig`` divides by
``lambda_i - lambda_j`` for every pair). Checked with ``gradcheck``, including a constant video.

Degenerate cases (documented behaviour):

* **no static eigenvalue**: ``Z_A = 0`` and ``Z_M`` carries everything (``n_static == 0``);
* **all eigenvalues static**: ``Z_M = 0`` (``eigenvalue`` mode) / ``Z_M = z - Z_A`` (projector);
* **rank-deficient frames** (e.g. repeated frames): singular values of ``F_b`` below
  ``rtol * s_max`` are treated as zero by the pseudo-inverse; the lost directions get eigenvalue 0
  (dynamic, contributing nothing in ``eigenvalue`` mode);
* **constant video**: ``K = z z^T / |z|^2`` has the single non-zero eigenvalue 1, so
  ``Z_A = z`` and ``Z_M = 0`` exactly;
* **defective K~** (a Jordan block, e.g. features drifting linearly in time give a double
  eigenvalue 1 with one eigenvector): ``Phi^-1`` does not exist and Eq. 21 is undefined. ``W^-1``
  is then replaced by the pseudo-inverse (relative cut-off ``1e-6``, eig runs in float64), which keeps
  ``Z_A`` / ``Z_M`` finite and drops the generalised-eigenvector direction from both; such videos
  are flagged in :attr:`KoopmanSplit.defective` (condition number of ``W`` above ``1e6``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from videorep.errors import VideorepError

SpectralMode = Literal["eigenvalue", "projector"]

#: relative singular-value cut-off of ``F_b^+`` (Eq. 18) in float32 training
DEFAULT_RTOL = 1e-4
#: eigenvector matrices with a condition number above this are flagged as defective
DEFECTIVE_COND = 1e6
_WINV_RTOL = 1.0 / DEFECTIVE_COND


def _check_features(features: Tensor) -> None:
    if not isinstance(features, Tensor) or features.ndim != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features)
        raise VideorepError(f"Koopman features must be a [B, T, M] tensor, got shape {shape}")
    if features.shape[1] < 2:
        raise VideorepError(
            f"the Koopman operator needs at least 2 frames per video, got T={features.shape[1]}"
        )
    if not features.is_floating_point():
        raise VideorepError(f"Koopman features must be floating point, got {features.dtype}")


def snapshot_matrices(features: Tensor) -> tuple[Tensor, Tensor]:
    """``(F_b, F_f)`` of Eq. 18, each ``[B, M, T-1]`` (frames as columns), from ``[B, T, M]``."""
    _check_features(features)
    cols = features.transpose(1, 2)
    return cols[..., :-1], cols[..., 1:]


def koopman_operator(features: Tensor, rtol: float = DEFAULT_RTOL) -> Tensor:
    """Closed-form least-squares Koopman operator ``K = F_f F_b^+`` (Eq. 18), batched.

    Args:
        features: per-frame features ``[B, T, M]``.
        rtol: singular values of ``F_b`` below ``rtol * s_max`` are treated as zero, which keeps
            the estimate finite for ``T - 1 < M`` and for rank-deficient (repeated) frames.

    Returns:
        ``K`` of shape ``[B, M, M]`` with ``F_f ~= K F_b``. Differentiable (pinv derivative).
    """
    f_b, f_f = snapshot_matrices(features)
    return f_f @ torch.linalg.pinv(f_b, rtol=rtol)


def prediction_loss(
    features: Tensor,
    nu: float = 1e-4,
    rtol: float = DEFAULT_RTOL,
    koopman: Tensor | None = None,
) -> Tensor:
    """``L_pred`` of Eq. 19: ``MSE(F_f, K F_b) + nu * ||K^T K - I||_F^2``, averaged over videos.

    Note that ``K`` has rank at most ``T - 1``, so for ``T - 1 < M`` the orthogonality term is at
    least ``nu * (M - T + 1)``: it cannot vanish and acts on the non-zero singular values of ``K``.

    Args:
        features: per-frame features ``[B, T, M]``.
        nu: weight of the orthogonality regulariser (the paper's Lagrange multiplier, 1e-4).
        koopman: a precomputed ``K`` ``[B, M, M]`` (else computed with :func:`koopman_operator`).

    Returns:
        A scalar tensor.
    """
    mse, ortho = prediction_loss_terms(features, rtol=rtol, koopman=koopman)
    return mse + nu * ortho


def prediction_loss_terms(
    features: Tensor, rtol: float = DEFAULT_RTOL, koopman: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The two terms of ``L_pred`` (Eq. 19), unweighted: ``(MSE(F_f, K F_b),
    ||K^T K - I||_F^2)``, each averaged over videos; ``L_pred = mse + nu * ortho``.

    Args:
        features: per-frame features ``[B, T, M]``.
        koopman: a precomputed ``K`` ``[B, M, M]`` (else computed with :func:`koopman_operator`).
    """
    f_b, f_f = snapshot_matrices(features)
    k = koopman if koopman is not None else f_f @ torch.linalg.pinv(f_b, rtol=rtol)
    mse = (f_f - k @ f_b).pow(2).mean()
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    ortho = (k.transpose(-1, -2) @ k - eye).pow(2).sum(dim=(-1, -2)).mean()
    return mse, ortho


def _divided_differences(lam: Tensor, static: Tensor, mode: SpectralMode) -> Tensor:
    """``D_ij = (h_i - h_j) / (lam_i - lam_j)`` (``D_ii = h'(lam_i)``) for the spectral function
    ``h = 1_A`` (eigenvalue mode) or ``h = 1_A / lam`` (projector mode); ``[B, r, r]`` complex.

    Within a cluster the ratio is evaluated analytically (0, or ``-1/(lam_i lam_j)`` for two
    static eigenvalues in projector mode), so ties inside a cluster never divide by zero.
    """
    si, sj = static.unsqueeze(-1), static.unsqueeze(-2)
    li, lj = lam.unsqueeze(-1), lam.unsqueeze(-2)
    if mode == "eigenvalue":
        h = static.to(lam.dtype)
        same = torch.zeros_like(li * lj)
    else:
        h = torch.where(static, 1.0 / lam, torch.zeros_like(lam))
        same = torch.where(si & sj, -1.0 / (li * lj), torch.zeros_like(li * lj))
    gap = li - lj
    tiny = gap.abs() < 1e-12
    cross = (h.unsqueeze(-1) - h.unsqueeze(-2)) / torch.where(tiny, torch.ones_like(gap), gap)
    cross = torch.where(tiny, torch.zeros_like(cross), cross)
    return torch.where(si == sj, same, cross)


class _SpectralFilter(torch.autograd.Function):
    """``S(K~) = W diag(h(lambda)) W^-1`` for a real ``[B, r, r]`` matrix, with a stable backward.

    Forward: complex eigen-decomposition in float64 (``torch.linalg.eig``). Backward
    (Daleckii-Krein): ``dS = W (D o (W^-1 dK W)) W^-1``, hence
    ``grad_K = Re(W^-T (D o (W^T G W^-T)) W^T)`` with the divided differences ``D`` above.
    """

    @staticmethod
    def forward(ctx, kt: Tensor, xi: float, mode: str):  # type: ignore[override]
        k64 = kt.detach().to(torch.float64)
        lam, w = torch.linalg.eig(k64)
        winv, info = torch.linalg.inv_ex(w)
        svals = torch.linalg.svdvals(w)
        cond = svals[..., 0] / svals[..., -1].clamp_min(1e-300)
        defective = (info != 0) | (cond > DEFECTIVE_COND) | ~torch.isfinite(cond)
        if bool(defective.any()):
            winv = torch.where(
                defective[..., None, None], torch.linalg.pinv(w, rtol=_WINV_RTOL), winv
            )
        static = (lam - 1).abs() < xi
        if mode == "eigenvalue":
            h = static.to(lam.dtype)
        else:
            h = torch.where(static, 1.0 / lam, torch.zeros_like(lam))
        s = ((w * h.unsqueeze(-2)) @ winv).real.to(kt.dtype)
        ctx.save_for_backward(w, winv, lam, static)
        ctx.mark_non_differentiable(lam, static, defective)
        ctx.mode = mode
        ctx.out_dtype = kt.dtype
        return s, lam, static, defective

    @staticmethod
    def backward(ctx, grad_s, _g_lam, _g_static, _g_def):  # type: ignore[override]
        w, winv, lam, static = ctx.saved_tensors
        if grad_s is None:
            return None, None, None
        d = _divided_differences(lam, static, ctx.mode)
        g = grad_s.to(torch.float64).to(w.dtype)
        h = w.transpose(-1, -2) @ g @ winv.transpose(-1, -2)
        grad_k = winv.transpose(-1, -2) @ (h * d) @ w.transpose(-1, -2)
        return grad_k.real.to(ctx.out_dtype), None, None


@dataclass
class KoopmanSplit:
    """Result of :func:`koopman_split` for a batch of ``B`` videos.

    Attributes:
        z_static: ``Z_A`` of Eq. 21, ``[B, M]``.
        z_dynamic: ``Z_M`` of Eq. 21, ``[B, M]``.
        eigenvalues: the ``r = min(M, T-1)`` eigenvalues of ``K~`` (complex, ``[B, r]``); these
            are all the non-zero eigenvalues of ``K``, its other ``M - r`` eigenvalues are 0.
        static_mask: ``|lambda - 1| < xi`` for each of them, ``[B, r]`` bool.
        defective: ``[B]`` bool, the eigenvector matrix was (numerically) singular.
    """

    z_static: Tensor
    z_dynamic: Tensor
    eigenvalues: Tensor
    static_mask: Tensor
    defective: Tensor

    @property
    def n_static(self) -> Tensor:
        """Number of static eigenvalues per video, ``[B]``."""
        return self.static_mask.sum(-1)


def _factors(features: Tensor, rtol: float) -> tuple[Tensor | None, Tensor, Tensor]:
    """``K = A B^T`` with inner dimension ``min(M, T-1)``; returns ``(A or None for I, B^T, K~)``."""
    f_b, f_f = snapshot_matrices(features)
    pinv = torch.linalg.pinv(f_b, rtol=rtol)  # [B, T-1, M]
    if f_b.shape[-1] <= f_b.shape[-2]:  # T - 1 <= M: K = F_f (F_b^+)
        return f_f, pinv, pinv @ f_f
    k = f_f @ pinv  # T - 1 > M: K = I K
    return None, k, k


def koopman_split(
    features: Tensor,
    xi: float = 0.1,
    mode: SpectralMode = "eigenvalue",
    rtol: float = DEFAULT_RTOL,
) -> KoopmanSplit:
    """Static/dynamic decomposition ``(Z_A, Z_M)`` of Eq. 21 for per-frame features ``[B, T, M]``.

    Args:
        features: per-frame features ``[B, T, M]`` (``T >= 2``).
        xi: an eigenvalue is static when ``|lambda - 1| < xi`` (0.1 in the paper); must lie in
            ``(0, 1)`` so that the zero eigenvalues of a rank-deficient ``K`` stay dynamic.
        mode: ``"eigenvalue"`` (Eq. 21 as written) or ``"projector"`` (App. F, ``Z = Z_A + Z_M``).
        rtol: pseudo-inverse cut-off of Eq. 18 (see :func:`koopman_operator`).

    Returns:
        A :class:`KoopmanSplit`; ``z_static`` / ``z_dynamic`` are real ``[B, M]`` tensors,
        differentiable w.r.t. ``features``.
    """
    if not 0.0 < float(xi) < 1.0:
        raise VideorepError(f"xi must lie in (0, 1), got {xi}")
    if mode not in ("eigenvalue", "projector"):
        raise VideorepError(f"unknown spectral mode {mode!r}; use 'eigenvalue' or 'projector'")
    a, b_t, kt = _factors(features, rtol)
    s, lam, static, defective = _SpectralFilter.apply(kt, float(xi), mode)
    z = features.mean(dim=1)  # mean over t commutes with the linear maps (Eq. 36)
    y = (b_t @ z.unsqueeze(-1)).squeeze(-1)  # B^T z, [B, r]
    sy = (s @ y.unsqueeze(-1)).squeeze(-1)
    if a is None:
        z_a = sy
        rest = y - sy
    else:
        z_a = (a @ sy.unsqueeze(-1)).squeeze(-1)
        rest = (a @ (y - sy).unsqueeze(-1)).squeeze(-1)
    z_m = rest if mode == "eigenvalue" else z - z_a
    return KoopmanSplit(z_a, z_m, lam, static, defective)


def decompose_literal(features: Tensor, xi: float = 0.1, rtol: float = DEFAULT_RTOL):
    """Reference: Eq. 18 + full ``[M, M]`` eigen-decomposition + Eq. 21 for ONE video ``[T, M]``.

    Forms ``K`` (``[M, M]``), ``Phi, Lambda = eig(K)`` in float64 and
    ``Z_A = mean_t Phi Lambda_inv Phi^-1 f(x_t)``, ``Z_M`` likewise, literally as in the paper.
    Used by the benchmark and tests; not differentiable and ill-conditioned when ``T - 1 < M``.

    Returns:
        ``(z_static [M], z_dynamic [M], eigenvalues [M] complex)``.
    """
    feats = features.to(torch.float64)
    k = koopman_operator(feats.unsqueeze(0), rtol=rtol)[0]
    lam, phi = torch.linalg.eig(k)
    phi_inv = torch.linalg.inv(phi)
    static = (lam - 1).abs() < xi
    lam_inv = torch.where(static, lam, torch.zeros_like(lam))
    lam_var = torch.where(static, torch.zeros_like(lam), lam)
    frames = feats.to(phi.dtype).T  # [M, T]
    z_a = ((phi * lam_inv) @ (phi_inv @ frames)).mean(dim=1).real
    z_m = ((phi * lam_var) @ (phi_inv @ frames)).mean(dim=1).real
    return z_a.to(features.dtype), z_m.to(features.dtype), lam
