"""The bi-level step of BOD-VCL (Eq. 23-25) as pure functions on parameter lists.

Which parameters are inner and which outer. Eq. 23 writes both levels over the *same* ``theta``:
``min_theta L_A(theta*(theta)) + L_M(theta*(theta))`` s.t. ``theta*(theta) = argmin L_pred``.
The Koopman operator ``K`` is not a parameter: it is the closed-form least-squares fit of Eq. 18,
recomputed from the features in every forward pass. So the inner problem (Eq. 24) moves the
parameters that ``L_pred`` depends on, i.e. all of ``f_theta`` = encoder + projection MLP; the
loss heads (BYOL predictor, SwAV prototypes) do not enter ``L_pred`` and get only the outer
gradient. This is also what the authors' code does: its BETTY ``Inner`` and ``Outer`` problems
wrap the same module (``models/BLO.py``), each with its own optimiser, and the inner update is
applied to the shared weights (kept), the outer step following from ``theta*``.

Inner optimiser (``--inner-optimizer``, its own learning rate ``--inner-lr``, constant): ``K``
gradient steps on ``L_pred``, ``theta_{k+1} = theta_k - Gamma_k grad L_pred(theta_k)``, with
``Gamma_k`` one step size per tensor: ``gamma`` everywhere for ``sgd`` (Eq. 24 as written), the
layer-wise LARS trust ratio for ``lars`` (default; the authors' code gives the inner problem
the same optimiser class as the outer one, LARS). See :func:`step_sizes` for why plain SGD is
unsafe here.

Hypergradient of ``Phi(theta) = L_out(theta_K(theta))`` by the chain rule:
``grad Phi = prod_{k=K-1..0} (I - Gamma_k H(theta_k)) g*`` with ``g* = grad L_out(theta_K)`` and ``H``
the Hessian of ``L_pred`` (applied right to left: ``theta_{K-1}`` first). AID-FD (DARTS' second-order
approximation, BETTY's ``darts``) forms each Hessian-vector product by central finite differences
``H v ~ (grad L_pred(theta + eps v) - grad L_pred(theta - eps v)) / (2 eps)``, ``eps = radius /
||v||``. So the hypergradient differs from the plain outer gradient ``g*`` by
``-Gamma H g* + O(Gamma^2)`` for one step; :func:`fd_hypergradient` is exact for a quadratic
``L_pred`` (linear gradient), which ``tests/methods/bodvcl/test_bodvcl_bilevel.py`` checks against
the closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

GradFn = Callable[[list[Tensor]], list[Tensor]]
INNER_RULES = ("lars", "sgd")


def step_sizes(
    theta: Sequence[Tensor], grads: Sequence[Tensor], gamma: float, rule: str, trust: float = 1e-3
) -> list[float]:
    """Per-tensor step sizes of one inner step.

    ``sgd``: ``gamma`` for every tensor (Eq. 24 as written). ``lars``: the layer-wise trust ratio
    of the authors' LARS (``models/optim.py``, adaptation on every tensor):
    ``gamma * trust * ||theta_l|| / ||g_l||``, so each tensor moves by ``gamma * trust`` of its
    norm whatever the scale of ``grad L_pred`` (which grows without bound when the snapshot
    matrix ``F_b`` is ill-conditioned, since ``K = F_f pinv(F_b)``). A tensor with zero norm or
    zero gradient does not move (the authors' LARS would take a plain step of ``gamma`` there).
    The step sizes are held constant in the hypergradient (as BETTY's ``darts`` does).
    """
    if rule == "sgd":
        return [float(gamma)] * len(theta)
    sizes = []
    for t, g in zip(theta, grads):
        pn, gn = float(t.detach().norm()), float(g.detach().norm())
        sizes.append(gamma * trust * pn / gn if pn > 0 and gn > 0 else 0.0)
    return sizes


def inner_descent(
    theta: Sequence[Tensor], grad_fn: GradFn, gamma: float, steps: int, rule: str = "sgd"
) -> tuple[list[list[Tensor]], list[list[float]]]:
    """Eq. 24 applied ``steps`` times with the step sizes of :func:`step_sizes`.

    Args:
        theta: the parameters (detached tensors of any shapes).
        grad_fn: ``theta -> grad L_pred(theta)`` (same shapes).
        gamma: inner learning rate.
        steps: ``K >= 1``.
        rule: ``"sgd"`` or ``"lars"``.

    Returns:
        The trajectory ``[theta_0, ..., theta_K]`` and the per-tensor step sizes of each step.
    """
    traj = [[t.detach() for t in theta]]
    sizes = []
    for _ in range(steps):
        grads = grad_fn(traj[-1])
        sizes.append(step_sizes(traj[-1], grads, gamma, rule))
        traj.append([t - a * g for t, a, g in zip(traj[-1], sizes[-1], grads)])
    return traj, sizes


def fd_hypergradient(
    trajectory: Sequence[Sequence[Tensor]],
    sizes: Sequence[Sequence[float]],
    g_star: Sequence[Tensor],
    grad_fn: GradFn,
    radius: float = 0.01,
) -> list[Tensor]:
    """AID-FD hypergradient ``prod_k (I - Gamma_k H(theta_k)) g*`` (see the module docstring).

    Args:
        trajectory: ``[theta_0, ..., theta_K]`` from :func:`inner_descent` (``theta_K`` unused).
        sizes: the per-tensor step sizes ``Gamma_k`` of each step (from :func:`inner_descent`).
        g_star: ``grad L_out(theta_K)``, one tensor per parameter.
        grad_fn: ``theta -> grad L_pred(theta)``.
        radius: finite-difference radius; ``eps = radius / ||v||``.

    Returns:
        The hypergradient, one tensor per parameter.
    """
    vec = list(g_star)
    for theta_k, gam in zip(reversed(trajectory[:-1]), reversed(sizes)):  # right to left
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in vec)).item()
        if norm == 0.0 or not math.isfinite(norm):
            break
        eps = radius / norm
        g_plus = grad_fn([t + eps * g for t, g in zip(theta_k, vec)])
        g_minus = grad_fn([t - eps * g for t, g in zip(theta_k, vec)])
        vec = [g - a * (gp - gm) / (2 * eps) for g, a, gp, gm in zip(vec, gam, g_plus, g_minus)]
    return vec


def relative_change(new: Sequence[Tensor], old: Sequence[Tensor]) -> Tensor:
    """``||new - old|| / ||old||`` over all tensors (a diagnostic: how much the bi-level
    correction or the inner step moves something)."""
    num = sum(((a.double() - b.double()) ** 2).sum() for a, b in zip(new, old))
    den = sum((b.double() ** 2).sum() for b in old)
    return torch.sqrt(num / den.clamp_min(1e-300)).float()
