"""BOD-VCL as a trainable :class:`~videorep.train.method.Method` (BOD-VCL paper, Sec. 4.3-4.4).

Data flow of one step, for a batch ``{"clips": [B, V, T, 3, S, S]}`` (``V = rho`` clips of ``T``
frames per video):

1. ``f_theta``: encoder (:mod:`.encoders`, per-frame features ``[B*V, T, C]``) followed by the
   projection MLP applied to every frame -> ``[B*V, T, M]`` with ``M = koopman_dim`` (128). The
   Koopman dimension is the projection output, as in the paper (Sec. 5.1, Table 12).
2. ``L_pred`` (Eq. 18-19) on these per-frame features.
3. decoupled: ``Z_A, Z_M`` per clip (Eq. 20-21, :func:`.koopman.koopman_split`), and the
   framework's loss on each, ``L_A + L_M`` (Eq. 22), with one loss head per component.
   coupled (``decoupled=False``): ``Z = mean_t f(x_t)`` and one framework loss (Eq. 1-4).
4. the update, by ``bilevel``:

   * ``"fd"`` (default; AID-FD, the paper's choice, Sec. 5.7): inner step(s)
     ``theta* = theta - gamma grad L_pred(theta)`` (Eq. 24), outer gradient
     ``d/dtheta [L_A + L_M](theta*(theta))`` (Eq. 23, 25) by the chain rule
     ``(I - gamma H_pred) g*`` with ``g* = grad (L_A + L_M)(theta*)`` and the Hessian-vector
     product by central finite differences of ``grad L_pred`` at ``theta +- eps g*``,
     ``eps = fd_radius / ||g*||`` (DARTS' second-order approximation). For ``K`` inner steps the
     product ``prod_k (I - gamma H(theta_k))`` is applied right to left.
   * ``"unrolled"``: the same hypergradient by differentiating through the inner step(s)
     (``create_graph=True``, reverse-mode; ITD).
   * ``"single"``: the single-level ablation of Table 8, ``L_pred + L_A + L_M`` summed.
   * ``"none"``: no ``L_pred`` at all (the plain V-CL baseline when ``decoupled=False``).

   The inner step is plain gradient descent on ``L_pred`` with its own constant step size
   ``inner_lr`` (default :data:`INNER_LR`), and it is kept (``persist_inner``, default): the outer
   optimiser steps from ``theta*``, ``theta <- theta* - lr * hypergrad`` (Algorithm 1 read as two
   successive updates of the same weights; BETTY and the authors' code, whose inner and outer
   problems share one module). ``--no-persist-inner`` discards it (Eq. 25 read literally).
   What is inner and outer, and the hypergradient: :mod:`.bilevel`.

   Only the encoder and projector enter ``L_pred``, so the inner step moves only them; the loss
   heads (predictor, prototypes) get their plain outer gradient. The outer loss is evaluated at
   ``theta*`` with :func:`torch.func.functional_call`. Auxiliary passes (inner step, finite
   differences) run on copies of the BatchNorm buffers, so running statistics move once per step.

Momentum networks (V-MoCo, V-BYOL) are EMA copies of encoder + projector (Eq. 3), updated in
:meth:`BODVCL.after_optimizer_step` with :func:`lightly.models.utils.update_momentum` (constant
``momentum`` for MoCo, cosine-increased to 1 for BYOL with :func:`lightly.utils.scheduler.cosine_schedule`);
their clip embeddings go through the same Koopman split, without gradient.

Distributed (``torchrun``): the bi-level modes compute their gradients with
``torch.autograd.grad`` and write ``.grad`` themselves, so DDP's backward hooks never fire; the
global-batch quantities are formed explicitly instead. ``fd``: every ``grad L_pred`` (inner step
and finite differences) and the outer gradient ``g*`` are averaged over the ranks, so ``theta*``,
the finite-difference radius and the Hessian-vector product are those of the global batch and
the final hypergradient is identical on every rank. ``unrolled``: the inner gradient is averaged
with a differentiable all-reduce (its backward sums the ranks' adjoints), and the parameter
gradients are averaged after the backward. ``single``/``none`` go through DDP as usual.

Precision (``--precision``): ``single``/``none`` train under autocast as every method does
(bf16, or fp16 with a GradScaler on CUDA). The bi-level modes accept bf16 (the whole step,
inner step and finite differences included, under autocast) and refuse fp16: their gradients
come from ``torch.autograd.grad`` and a finite-difference Hessian-vector product, which a loss
scaler does not cover. The Koopman algebra (eigen-decomposition, pseudo-inverse) always runs in
the weights' dtype, outside autocast. ``dtype=float64`` trains in fp32 precision only.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from videorep.errors import VideorepError
from videorep.methods.bodvcl.bilevel import (
    INNER_RULES,
    fd_hypergradient,
    inner_descent,
    relative_change,
    step_sizes,
)
from videorep.methods.bodvcl.encoders import ENCODERS, build_encoder
from videorep.methods.bodvcl.frameworks import FRAMEWORKS, build_head, uses_target_network
from videorep.methods.bodvcl.koopman import DEFAULT_RTOL, koopman_split, prediction_loss_terms
from videorep.train import distributed as dist
from videorep.train.method import Method
from videorep.utils.config import add_arguments, setting
from videorep.utils.device import autocast_device_type

BILEVEL_MODES = ("fd", "unrolled", "single", "none")
OPTIMIZERS = ("lars", "adamw")
#: default gamma of Eq. 24 (measured in docs/results/2026-12-03-bodvcl-paper-recipe.md)
INNER_LR = 0.1


DTYPES = ("float32", "float64")


@dataclass
class BODVCLConfig:
    """Hyper-parameters of BOD-VCL (defaults: BOD-VCL paper, Sec. 5.1 and 5.7); they define the flags."""

    framework: str = setting("simclr", choices=FRAMEWORKS, help="base V-CL method")
    encoder: str = setting(
        "slow_r50", choices=ENCODERS, help="video encoder (the paper's default: slow_r50)"
    )
    clip_len: int = setting(8, help="frames per clip (L)")  # read by the data pipeline
    stride: int = setting(8, help="frame stride in a clip (delta)")  # read by the data pipeline
    views: int = setting(2, help="clips per video (rho)")
    decoupled: bool = setting(
        True,
        help="decoupled loss L_A + L_M on the Koopman split (Eq. 22); --no-decoupled: plain V-CL",
    )
    bilevel: str = setting(
        "fd",
        choices=BILEVEL_MODES,
        help="fd: AID-FD hypergradient (default); unrolled: differentiate through the inner "
        "step; single: L_pred + L_A + L_M summed; none: no L_pred",
    )
    inner_steps: int = setting(1, help="inner L_pred steps (K; Table 9)")
    inner_lr: float = setting(
        INNER_LR,
        help="gamma of the inner gradient step on L_pred (Eq. 24): its own constant learning "
        "rate, not the outer schedule (lars: each tensor moves by inner-lr x 0.001 of its norm)",
    )
    inner_optimizer: str = setting(
        "lars",
        choices=INNER_RULES,
        help="inner step rule: lars = layer-wise trust ratio (as the authors' LARS), sgd = "
        "gamma x grad (Eq. 24 as written)",
    )
    xi: float = setting(0.1, help="static if |lambda - 1| < xi")
    nu: float = setting(1e-4, help="orthogonality weight in L_pred")
    koopman_dim: int = setting(128, help="projection output M")
    temperature: float = setting(0.1, help="InfoNCE/SwAV tau")
    queue_size: int = setting(16384, help="V-MoCo queue length")
    momentum: float = setting(
        0.99, help="EMA of the MoCo/BYOL target network (BYOL: start value of a cosine ramp to 1)"
    )
    proj_hidden_dim: int | None = setting(
        None, help="projection MLP width (default: 2048, 4096 for BYOL; Sec. 5.1)"
    )
    proj_layers: int | None = setting(
        None, help="projection MLP depth (default: 3, 2 for BYOL; Sec. 5.1)"
    )
    n_prototypes: int = setting(1000, help="V-SwAV prototypes")
    spectral_mode: str = setting(
        "eigenvalue",
        choices=("eigenvalue", "projector"),
        help="Eq. 21 as written (eigenvalue) or with spectral projectors (App. F)",
    )
    fd_radius: float = setting(0.01, help="finite-difference radius of the AID-FD product")
    persist_inner: bool = setting(
        True,
        help="keep the inner L_pred step: the outer step starts from theta* (as BETTY and the "
        "authors' code do); --no-persist-inner: discard it (outer step from theta)",
    )
    optimizer: str = setting(
        "lars",
        choices=OPTIMIZERS,
        help="outer optimiser: lars = SGD + LARS (the paper, Sec. 5.1; timm's Lars adapting every "
        "tensor, momentum --lars-momentum, trust 0.001, decay on weight matrices); adamw = the "
        "earlier CPU recipe (use with --blr 1e-4 --weight-decay 0.05)",
    )
    lars_momentum: float = setting(0.9, help="SGD momentum of LARS")
    sync_batchnorm: str = setting(
        "auto",
        choices=("auto", "on", "off"),
        help="global-batch BatchNorm under torchrun: auto = every framework but moco (Sec. 5.1)",
    )
    color_jitter: bool = setting(
        True,
        help="colour distortion per clip, shared by its frames (the paper's augmentation; "
        "jitter 0.4/0.4/0.4/0.1 with p 0.8, grey p 0.2)",
    )
    keep_time: bool = setting(True, help="keep the encoder's time axis (per-frame features)")
    image_size: int = setting(112, help="frame size (ViT)")
    pinv_rtol: float = setting(DEFAULT_RTOL, help="relative cut-off of the Koopman pseudo-inverse")
    dtype: str = setting(
        "float32",
        choices=DTYPES,
        help="precision of weights and activations; float64 (slower) for numerical checks, "
        "e.g. torchrun vs one process: in float32 a gradient entry within rounding of zero "
        "can flip sign, and Adam's first step (lr * sign(g)) turns that into a difference of 2 lr",
    )

    def validate(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise VideorepError(
                f"unknown framework {self.framework!r}; choose one of {', '.join(FRAMEWORKS)}"
            )
        if self.encoder not in ENCODERS:
            raise VideorepError(
                f"unknown encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}"
            )
        if self.bilevel not in BILEVEL_MODES:
            raise VideorepError(
                f"unknown bilevel mode {self.bilevel!r}; choose one of {', '.join(BILEVEL_MODES)}"
            )
        if self.clip_len < 2:
            raise VideorepError(f"clip length must be at least 2 frames, got {self.clip_len}")
        for name in ("stride", "inner_steps", "koopman_dim", "queue_size", "n_prototypes"):
            if getattr(self, name) < 1:
                raise VideorepError(f"{name} must be positive, got {getattr(self, name)}")
        if self.views < 2:
            raise VideorepError(f"contrastive learning needs at least 2 views, got {self.views}")
        if not 0.0 < self.xi < 1.0:
            raise VideorepError(f"xi must lie in (0, 1), got {self.xi}")
        if self.nu < 0:
            raise VideorepError(f"nu must be non-negative, got {self.nu}")
        if self.temperature <= 0:
            raise VideorepError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.momentum <= 1.0:
            raise VideorepError(f"momentum must lie in [0, 1], got {self.momentum}")
        if not self.inner_lr > 0:
            raise VideorepError(f"inner learning rate must be positive, got {self.inner_lr}")
        if self.inner_optimizer not in INNER_RULES:
            raise VideorepError(
                f"unknown inner optimizer {self.inner_optimizer!r}; choose one of "
                f"{', '.join(INNER_RULES)}"
            )
        if self.sync_batchnorm not in ("auto", "on", "off"):
            raise VideorepError(
                f"sync_batchnorm must be auto, on or off, got {self.sync_batchnorm!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise VideorepError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if not 0.0 <= self.lars_momentum < 1.0:
            raise VideorepError(f"LARS momentum must lie in [0, 1), got {self.lars_momentum}")
        if self.dtype not in DTYPES:
            raise VideorepError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.spectral_mode not in ("eigenvalue", "projector"):
            raise VideorepError(
                f"spectral mode must be 'eigenvalue' or 'projector', got {self.spectral_mode!r}"
            )


def _projection_head(framework: str, in_dim: int, hidden: int, out_dim: int, layers: int):
    """Projection MLP of Sec. 5.1, from lightly's heads."""
    from lightly.models.modules import (
        BYOLProjectionHead,
        MoCoProjectionHead,
        SimCLRProjectionHead,
    )
    from lightly.models.modules.heads import ProjectionHead

    if framework == "byol" and layers == 2:
        return BYOLProjectionHead(in_dim, hidden, out_dim)
    if framework == "moco":
        return MoCoProjectionHead(in_dim, hidden, out_dim, num_layers=layers, batch_norm=True)
    if framework == "byol":  # BYOL-style (BN + ReLU, no output BN) with a custom depth
        blocks = [(in_dim, hidden, nn.BatchNorm1d(hidden), nn.ReLU())]
        for _ in range(layers - 2):
            blocks.append((hidden, hidden, nn.BatchNorm1d(hidden), nn.ReLU()))
        blocks.append((hidden, out_dim, None, None))
        return ProjectionHead(blocks)
    return SimCLRProjectionHead(in_dim, hidden, out_dim, num_layers=layers, batch_norm=True)


class FrameNet(nn.Module):
    """``f_theta``: encoder + per-frame projection; ``[N, T, 3, H, W] -> [N, T', M]``."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, clips: Tensor) -> Tensor:
        h = self.encoder(clips)  # [N, T', C]
        n, t, c = h.shape
        return self.projector(h.reshape(n * t, c)).view(n, t, -1)


class BODVCL(Method):
    """BOD-VCL on top of V-SimCLR / V-MoCo / V-BYOL / V-SwAV (see the module docstring).

    Args:
        config: the hyper-parameters.
        encoder: optional prebuilt per-frame encoder with an ``out_dim`` attribute (default:
            :func:`.encoders.build_encoder` from ``config.encoder``).
    """

    method_name = "bodvcl"

    def __init__(self, config: BODVCLConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        if encoder is None:
            encoder = build_encoder(
                config.encoder, keep_time=config.keep_time, img_size=config.image_size
            )
        byol = config.framework == "byol"
        hidden = config.proj_hidden_dim or (4096 if byol else 2048)
        layers = config.proj_layers or (2 if byol else 3)
        projector = _projection_head(
            config.framework, int(encoder.out_dim), hidden, config.koopman_dim, layers
        )
        self.online = FrameNet(encoder, projector)
        components = ("static", "dynamic") if config.decoupled else ("clip",)
        self.heads = nn.ModuleDict(
            {
                name: build_head(
                    config.framework,
                    config.koopman_dim,
                    temperature=config.temperature,
                    queue_size=config.queue_size,
                    predictor_hidden=hidden,
                    n_prototypes=config.n_prototypes,
                )
                for name in components
            }
        )
        self._theta_star: dict[str, Tensor] | None = None
        self._seed = 0
        self._aug_gen: torch.Generator | None = None
        self.target: FrameNet | None = None
        if uses_target_network(config.framework):
            from lightly.models.utils import deactivate_requires_grad

            self.target = copy.deepcopy(self.online)
            deactivate_requires_grad(self.target)

    @property
    def global_batchnorm(self) -> bool:
        """Synchronised BatchNorm for every framework but V-MoCo (Sec. 5.1)."""
        if self.config.sync_batchnorm != "auto":
            return self.config.sync_batchnorm == "on"
        return self.config.framework != "moco"

    def build_optimizer(
        self, named: list[tuple[str, nn.Parameter]], lr: float, train_config: Any
    ) -> torch.optim.Optimizer:
        """The outer optimiser: SGD + LARS (Sec. 5.1; :func:`.optim.build_lars`) or AdamW
        (``config.optimizer``); weight decay ``train_config.weight_decay`` on weight matrices."""
        from videorep.methods.bodvcl.optim import build_lars
        from videorep.train.schedule import build_adamw

        if self.config.optimizer == "adamw":
            return build_adamw(named, lr, train_config.weight_decay, train_config.betas)
        return build_lars(named, lr, train_config.weight_decay, self.config.lars_momentum)

    def set_seed(self, seed: int) -> None:
        self._seed = int(seed)

    def before_optimizer_step(self, step: int) -> None:
        """Seed the colour distortion of this step (per rank), so a resumed run draws the same."""
        self._aug_gen = torch.Generator().manual_seed(
            (self._seed * 1_000_003 + step) * 64 + dist.rank()
        )

    # ------------------------------------------------------------------ forward pieces
    def _clips(self, batch: Any) -> tuple[Tensor, int, int]:
        if isinstance(batch, dict):  # "frames" is the key of videorep.data.pairs.ClipDataset
            clips = batch["clips"] if "clips" in batch else batch.get("frames")
        else:
            clips = batch
        if not isinstance(clips, Tensor) or clips.ndim != 6 or clips.shape[3] != 3:
            shape = tuple(clips.shape) if isinstance(clips, Tensor) else type(clips)
            raise VideorepError(f"BOD-VCL expects clips [B, V, T, 3, S, S], got {shape}")
        dtype = next(self.online.parameters()).dtype
        if clips.is_floating_point() and clips.dtype != dtype:  # e.g. float32 data, --dtype float64
            clips = clips.to(dtype)
        b, v = clips.shape[:2]
        if v < 2:
            raise VideorepError(f"BOD-VCL needs at least 2 views per video, got {v}")
        if b < 2 and self.config.framework in ("simclr",):
            raise VideorepError("V-SimCLR needs at least 2 videos per batch (negatives)")
        clips = clips.flatten(0, 1)
        if self.config.color_jitter and self.training:
            from videorep.methods.bodvcl.augment import color_distort

            if self._aug_gen is None:  # outside the trainer: seed from the run seed
                self.before_optimizer_step(0)
            clips = color_distort(clips, self._aug_gen)
        return clips, b, v

    def _koopman_input(self, frames: Tensor) -> Tensor:
        """``frames`` in the weights' dtype (an autocast forward gives bf16/fp16 features; the
        eigen-decomposition and pseudo-inverse need full precision)."""
        return frames.to(next(self.online.parameters()).dtype)

    def embed(self, frames: Tensor) -> dict[str, Tensor]:
        """Clip embeddings from per-frame features ``[N, T, M]``: ``{"static": Z_A,
        "dynamic": Z_M}`` (Eq. 21) when decoupled, else ``{"clip": mean_t f(x_t)}``;
        each ``[N, M]``."""
        if not self.config.decoupled:
            return {"clip": frames.mean(dim=1)}
        with torch.autocast(autocast_device_type(frames), enabled=False):
            split = koopman_split(
                self._koopman_input(frames),
                xi=self.config.xi,
                mode=self.config.spectral_mode,
                rtol=self.config.pinv_rtol,
            )
        self._last_split = split
        return {"static": split.z_static, "dynamic": split.z_dynamic}

    @torch.no_grad()
    def _targets(self, clips: Tensor) -> dict[str, Tensor] | None:
        if self.target is None:
            return None
        return {k: v.detach() for k, v in self.embed(self.target(clips)).items()}

    def _outer_loss(
        self, frames: Tensor, targets: dict[str, Tensor] | None, b: int, v: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_A + L_M`` (Eq. 22) or the coupled V-CL loss, with per-part metrics."""
        comps = self.embed(frames)
        metrics: dict[str, Tensor] = {}
        total = frames.new_zeros(())
        for name, z in comps.items():
            tgt = targets[name].view(b, v, -1) if targets is not None else None
            part = self.heads[name](z.view(b, v, -1), tgt)
            metrics[f"loss_{name}"] = part.detach()
            total = total + part.reshape(())
        if self.config.decoupled:
            split = self._last_split
            metrics["static_eigs"] = split.n_static.float().mean()
            metrics["defective"] = split.defective.float().mean()
        return total, metrics

    def _pred_loss(self, frames: Tensor) -> Tensor:
        with torch.autocast(autocast_device_type(frames), enabled=False):
            mse, ortho = prediction_loss_terms(
                self._koopman_input(frames), rtol=self.config.pinv_rtol
            )
        self._pred_terms = {
            "l_pred_mse": mse.detach(),
            "l_pred_ortho": self.config.nu * ortho.detach(),
        }
        return mse + self.config.nu * ortho

    # ------------------------------------------------------------------ trainer contract
    def encoder_module(self) -> nn.Module:
        """The online video encoder (what ``--compile`` compiles)."""
        return self.online.encoder

    def configure_precision(self, dtype: torch.dtype | None, scaler: Any = None) -> None:
        """See the module docstring: fp16 only for ``single``/``none``; float64 only in fp32."""
        if dtype is not None and self.config.dtype == "float64":
            raise VideorepError(
                "--dtype float64 trains in full precision: use --precision fp32 with it"
            )
        if dtype == torch.float16 and self.config.bilevel in ("fd", "unrolled"):
            raise VideorepError(
                f"--precision fp16 with --bilevel {self.config.bilevel}: the hypergradient "
                "(autograd.grad, finite differences) is not covered by a loss scaler; use "
                "--precision bf16 or fp32, or --bilevel single/none"
            )
        super().configure_precision(dtype, scaler)

    def training_step(self, batch: Any) -> dict[str, Tensor]:
        """Single-level objective: ``L_A + L_M (+ L_pred unless bilevel == "none")``.

        Used by the trainer for ``bilevel in {"single", "none"}`` (and for evaluation); the
        bi-level modes go through :meth:`optimizer_step`.
        """
        clips, b, v = self._clips(batch)
        targets = self._targets(clips)
        frames = self.online(clips)
        outer, metrics = self._outer_loss(frames, targets, b, v)
        l_pred = self._pred_loss(frames)
        loss = outer if self.config.bilevel == "none" else outer + l_pred
        metrics.update(loss=loss, loss_outer=outer.detach(), l_pred=l_pred.detach())
        metrics.update(self._pred_terms)
        return metrics

    def optimizer_step(
        self, batches: list[Any], optimizer: torch.optim.Optimizer, loss_scale: float
    ) -> dict[str, Tensor]:
        """One step over the micro-batches; bi-level (Eq. 23-25) for ``fd`` / ``unrolled``."""
        if self.config.bilevel in ("single", "none"):
            return super().optimizer_step(batches, optimizer, loss_scale)
        gamma = float(self.config.inner_lr)
        optimizer.zero_grad(set_to_none=True)
        totals: dict[str, Tensor] = {}
        for batch in batches:
            with self.autocast(batch):  # bf16 only (configure_precision refuses fp16 here)
                if self.config.bilevel == "unrolled":
                    metrics = self._unrolled_backward(batch, gamma, loss_scale)
                else:
                    metrics = self._fd_backward(batch, gamma, loss_scale)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value.detach().float() * loss_scale
        if self.config.bilevel == "unrolled" and dist.is_distributed():
            dist.all_reduce_mean_([p.grad for p in self.parameters() if p.grad is not None])
        if self.config.persist_inner and self._theta_star is not None:
            with torch.no_grad():  # Algorithm 1 read as theta <- theta* - lr * hypergradient
                for n, p in self._inner_params().items():
                    p.copy_(self._theta_star[n])
        self._theta_star = None
        self.step_optimizer(optimizer)
        return totals

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """MoCo: enqueue the step's keys; MoCo/BYOL: EMA update of the target (Eq. 3);
        SwAV: re-normalise the prototypes."""
        for head in self.heads.values():
            if hasattr(head, "enqueue"):
                head.enqueue()
            if hasattr(head, "normalize_prototypes"):
                head.normalize_prototypes()
        if self.target is not None:
            from lightly.models.utils import update_momentum
            from lightly.utils.scheduler import cosine_schedule

            m = self.config.momentum
            if self.config.framework == "byol":
                m = cosine_schedule(step, max(total_steps, 1), m, 1.0)
            update_momentum(self.online, self.target, m)

    def checkpoint_state(self) -> dict[str, Tensor]:
        """Everything, including the momentum network (its weights are not rebuilt from config)."""
        return dict(self.state_dict())

    # ------------------------------------------------------------------ bi-level internals
    def _inner_params(self) -> dict[str, Tensor]:
        return {n: p for n, p in self.online.named_parameters() if p.requires_grad}

    def _frames_at(self, theta: dict[str, Tensor], clips: Tensor, aux: bool) -> Tensor:
        """``f_theta(clips)`` with parameters ``theta``; ``aux`` passes use copied BN buffers."""
        buffers = {n: (b.clone() if aux else b) for n, b in self.online.named_buffers()}
        return functional_call(self.online, {**theta, **buffers}, (clips,))

    def _pred_grad(
        self, theta: dict[str, Tensor], clips: Tensor, create_graph: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        if not create_graph:
            theta = {n: t.detach().requires_grad_(True) for n, t in theta.items()}
        l_pred = self._pred_loss(self._frames_at(theta, clips, aux=True))
        grads = torch.autograd.grad(
            l_pred, list(theta.values()), create_graph=create_graph, allow_unused=True
        )
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(theta.values(), grads)]
        if dist.is_distributed():  # gradient of the global-batch L_pred (see module docstring)
            if create_graph:
                w = dist.world_size()
                grads = [dist.all_reduce_sum_with_grad(g) / w for g in grads]
            else:
                dist.all_reduce_mean_(grads)
        return l_pred, grads

    def _unrolled_backward(self, batch: Any, gamma: float, scale: float) -> dict[str, Tensor]:
        clips, b, v = self._clips(batch)
        targets = self._targets(clips)
        theta = self._inner_params()
        l_pred0, terms = None, {}
        for _ in range(self.config.inner_steps):  # Eq. 24, kept in the graph
            l_pred, grads = self._pred_grad(theta, clips, create_graph=True)
            if l_pred0 is None:
                l_pred0, terms = l_pred.detach(), dict(self._pred_terms)
            sizes = step_sizes(list(theta.values()), grads, gamma, self.config.inner_optimizer)
            theta = {n: t - a * g for (n, t), a, g in zip(theta.items(), sizes, grads)}
        outer, metrics = self._outer_loss(self._frames_at(theta, clips, aux=False), targets, b, v)
        (outer * scale).backward()  # Eq. 25 through theta*(theta)
        self._theta_star = {n: t.detach() for n, t in theta.items()}
        metrics.update(loss=outer.detach(), loss_outer=outer.detach(), l_pred=l_pred0, **terms)
        return metrics

    def _fd_backward(self, batch: Any, gamma: float, scale: float) -> dict[str, Tensor]:
        """AID-FD (:func:`.bilevel.fd_hypergradient`); also logs ``inner_rel`` =
        ``||theta* - theta|| / ||theta||`` and ``hyper_rel`` = ``||hypergrad - g*|| / ||g*||``."""
        clips, b, v = self._clips(batch)
        targets = self._targets(clips)
        params = self._inner_params()
        names = list(params)
        terms: dict[str, Tensor] = {}
        l_pred0: list[Tensor] = []

        def grad_fn(theta: list[Tensor]) -> list[Tensor]:
            l_pred, grads = self._pred_grad(dict(zip(names, theta)), clips)
            if not l_pred0:
                l_pred0.append(l_pred.detach())
                terms.update(self._pred_terms)
            return grads

        thetas, sizes = inner_descent(
            list(params.values()),
            grad_fn,
            gamma,
            self.config.inner_steps,
            self.config.inner_optimizer,
        )
        theta_star = {n: t.detach().requires_grad_(True) for n, t in zip(names, thetas[-1])}
        self._theta_star = {n: t.detach() for n, t in theta_star.items()}
        outer, metrics = self._outer_loss(
            self._frames_at(theta_star, clips, aux=False), targets, b, v
        )
        head_params = [p for p in self.heads.parameters() if p.requires_grad]
        grads = torch.autograd.grad(
            outer, list(theta_star.values()) + head_params, allow_unused=True
        )
        g_star = [
            torch.zeros_like(t) if g is None else g
            for t, g in zip(theta_star.values(), grads[: len(names)])
        ]
        head_grads = list(grads[len(names) :])
        if dist.is_distributed():  # g* of the global batch: the same FD radius on every rank
            head_grads = [
                torch.zeros_like(p) if g is None else g for p, g in zip(head_params, head_grads)
            ]
            dist.all_reduce_mean_(g_star + head_grads)
        for p, g in zip(head_params, head_grads):
            if g is not None:
                p.grad = g * scale if p.grad is None else p.grad + g * scale
        hyper = fd_hypergradient(thetas, sizes, g_star, grad_fn, self.config.fd_radius)
        for n, g in zip(names, hyper):
            p = params[n]
            p.grad = g * scale if p.grad is None else p.grad + g * scale
        metrics.update(loss=outer.detach(), loss_outer=outer.detach(), l_pred=l_pred0[0], **terms)
        metrics["hyper_rel"] = relative_change(hyper, g_star)
        metrics["inner_rel"] = relative_change(thetas[-1], thetas[0])
        return metrics


# ---------------------------------------------------------------------- construction and CLI
def build_bodvcl(config: dict[str, Any], encoder: nn.Module | None = None) -> BODVCL:
    """Build BOD-VCL from a config dict (keys of :class:`BODVCLConfig`; others are ignored, so
    the trainer can pass its whole argument namespace). Invalid values raise ``VideorepError``."""
    known = {f.name for f in fields(BODVCLConfig)}
    values = {k: v for k, v in dict(config).items() if k in known and v is not None}
    return BODVCL(BODVCLConfig(**values), encoder=encoder)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The BOD-VCL part of parsed arguments, as a :func:`build_bodvcl` config."""
    known = {f.name for f in fields(BODVCLConfig)}
    return {k: v for k, v in vars(args).items() if k in known}


def default_config() -> dict[str, Any]:
    return asdict(BODVCLConfig())


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the :class:`BODVCLConfig` flags with plain dests (``args.framework``), for scripts.

    ``videorep train bodvcl`` generates the same flags (see :mod:`videorep.methods.commands`).
    """
    g = parser.add_argument_group("BOD-VCL")
    add_arguments(g, BODVCLConfig, section="")
    parser.set_defaults(**{f.name: getattr(BODVCLConfig(), f.name) for f in fields(BODVCLConfig)})
