"""Co-Settle: a trainable projection on a frozen image encoder (Co-Settle supplementary, Alg. 1).

One training sample is ``T`` frames of a video (``T = 2`` in the paper) sharing one crop and
flip. The frozen encoder ``f`` gives ``z_1 .. z_T`` with the normal positional embedding and
``z_1~`` for frame 1 with the PEA-augmented embedding; all ``T + 1`` passes run as one batched
encoder call. The head ``g`` projects every token set; the cycle loss walks
``p_1 -> ... -> p_T -> ... -> p_1~`` and the regulariser keeps ``softmax(p)`` close to
``softmax(z)`` over the feature dimension.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F

from videorep.backbones.encoder import ImageEncoder
from videorep.backbones.pos import pea
from videorep.errors import VideorepError
from videorep.methods.cosettle.config import CoSettleConfig
from videorep.methods.cosettle.heads import ProjectionHead, resolve_init
from videorep.methods.cosettle.losses import REGULARIZERS, cycle_loss
from videorep.train.distributed import rank as dist_rank
from videorep.train.distributed import world_size as dist_world_size
from videorep.train.method import Method
from videorep.utils.device import autocast_device_type
from videorep.utils.encoder_dtype import apply_encoder_dtype


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when autocast left it in bf16/fp16; float32/float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class CoSettle(Method):
    """Frozen encoder + trainable :class:`ProjectionHead`.

    Batches are either ``{"frames": [B, T, 3, H, W]}`` (ImageNet-normalised, ``H, W`` multiples
    of the patch size) or, from a view bank, ``{"tokens": [B, T + 1, N, D], "grid": (h, w)}``
    holding the encoder outputs ``z_1 .. z_T, z_1~`` already.
    """

    method_name = "cosettle"
    progress_metrics = ("loss", "cycle_acc")

    def __init__(self, encoder: ImageEncoder, config: CoSettleConfig, seed: int = 0) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        # --encoder-dtype auto: decided for the device the encoder is on (move it there first)
        self.encoder_dtype = apply_encoder_dtype(encoder, config.encoder_dtype)
        # CLIP / BLIP: the authors feed ImageNet-normalised frames as they are ("authors")
        self.encoder.family_norm = config.input_norm == "family"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the head's initialisation is a function of the seed
            init = resolve_init(config.head_init, _family(encoder))
            self.head = ProjectionHead(encoder.embed_dim, config.head, init)
        self.pea_generator = torch.Generator().manual_seed(seed)
        self.seed = seed

    def frozen_prefixes(self) -> tuple[str, ...]:
        return ("encoder.",)

    def encoder_module(self) -> ImageEncoder:
        """The frozen encoder (what ``--compile`` compiles)."""
        return self.encoder

    def set_seed(self, seed: int) -> None:
        """The run's seed, from which :meth:`before_optimizer_step` seeds each step's PEA."""
        self.seed = seed

    def before_optimizer_step(self, step: int) -> None:
        """Seed PEA from (seed, step) so a resumed run draws the same crops."""
        self.pea_generator.manual_seed(self.seed * 1_000_003 + step)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Frozen-encoder tokens ``[B, T + 1, N, D]`` for ``frames`` ``[B, T, 3, H, W]``.

        Index ``T`` holds frame 1 encoded with the PEA positional embedding (without PEA it is
        ``z_1`` itself: the walk then returns to the very same tokens).
        """
        if frames.dim() != 5:
            raise VideorepError(f"expected frames [B, T, 3, H, W], got {list(frames.shape)}")
        # the trainer's batches arrive on the device already; the view bank's come from the CPU
        frames = frames.to(next(self.encoder.parameters()).device, non_blocking=True)
        b, t = frames.shape[:2]
        grid = self.encoder.grid(frames.shape[-2], frames.shape[-1])
        flat = frames.reshape(b * t, *frames.shape[2:])
        cfg = self.config
        if not cfg.pea:
            z = self.encoder(flat).reshape(b, t, grid[0] * grid[1], -1)
            return torch.cat([z, z[:, :1]], dim=1), grid
        images = torch.cat([flat, frames[:, 0]], dim=0)

        def pos_fn(base: torch.Tensor) -> torch.Tensor:
            # Every rank draws the crops of the whole global micro-batch (W * b) from the same
            # step-seeded generator and keeps its own slice, so a distributed step uses the
            # crops of the single-process step ("random"/"center"/"edge" draw one crop per call).
            rank, world = dist_rank(), dist_world_size()
            crops = pea(base, cfg.pea_alpha, cfg.pea_mode, self.pea_generator, batch=b * world)
            if crops.shape[0] > 1:
                crops = crops[rank * b : (rank + 1) * b]
            return torch.cat([base.expand(b * t, -1, -1, -1), crops.expand(b, -1, -1, -1)])

        z = self.encoder(images, pos_embed_fn=pos_fn)
        z_frames = z[: b * t].reshape(b, t, z.shape[1], -1)
        z_pea = z[b * t :].reshape(b, 1, z.shape[1], -1)
        return torch.cat([z_frames, z_pea], dim=1), grid

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised projected tokens ``[..., N, D]``."""
        return F.normalize(self.head(tokens), dim=-1)

    def losses(self, z: torch.Tensor, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
        """All loss terms from encoder tokens ``z`` ``[B, T + 1, N, D]``."""
        cfg = self.config
        p = self.project(z)  # under --precision bf16/fp16: the head's matmul in that precision
        # The walk divides similarities by tau = 0.03; in bf16 its logits would carry errors of
        # ~0.1, so the losses run in float32 (as the authors' fp16 autocast keeps softmax and
        # losses in float32).
        with torch.autocast(autocast_device_type(z), enabled=False):
            p, z = _full_precision(p), _full_precision(z)
            l_cyc, acc = cycle_loss(p, grid, tau=cfg.tau, pool=cfg.pool)
            reg_fn = REGULARIZERS[cfg.reg]
            if reg_fn is None or cfg.lambda_reg == 0:
                l_reg = torch.zeros((), device=z.device)
            else:
                l_reg = reg_fn(F.normalize(z, dim=-1), p)
            loss = l_cyc + cfg.lambda_reg * l_reg
        return {"loss": loss, "cycle_loss": l_cyc, "reg_loss": l_reg, "cycle_acc": acc}

    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        if "tokens" in batch:  # precomputed (view bank): [B, T + 1, N, D]
            z = batch["tokens"].float()
            grid = tuple(int(g) for g in torch.as_tensor(batch["grid"]).reshape(-1, 2)[0])
            if not self.config.pea:  # without PEA the walk returns to z_1 itself (see encode)
                z = torch.cat([z[:, :-1], z[:, :1]], dim=1)
        else:
            z, grid = self.encode(batch["frames"])
        return self.losses(z, grid)

    def export_config(self) -> dict:
        return {"method": "cosettle", "backbone": self.config.backbone, **asdict(self.config)}

    def export(self, out_dir) -> None:  # noqa: ANN001
        """Write the trained projection to ``out_dir/projection`` (safetensors + JSON)."""
        from pathlib import Path

        from videorep.methods.cosettle.heads import save_projection

        save_projection(self.head, Path(out_dir) / "projection", extra=self.export_config())


def _family(encoder: ImageEncoder) -> str | None:
    """The registry family of ``encoder`` (``None`` for an unregistered one)."""
    from videorep.backbones.registry import BACKBONES

    spec = BACKBONES.get(getattr(encoder, "name", ""))
    return spec.family if spec is not None else None
