"""Learning-rate schedule and optimiser construction shared by the methods."""

from __future__ import annotations

import math

import torch
from torch import nn


def lr_at(
    step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> float:
    """Per-iteration linear warm-up to ``base_lr``, then half-cosine decay to ``min_lr``.

    ``step`` counts optimiser steps from 0; warm-up reaches ``base_lr`` at ``step = warmup - 1``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(named: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Two groups: weight decay on matrices, none on biases and norm weights (1-D tensors)."""
    decay = [p for n, p in named if p.ndim >= 2 and not n.endswith(".bias")]
    no_decay = [p for n, p in named if p.ndim < 2 or n.endswith(".bias")]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_adamw(
    named: list[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
) -> torch.optim.AdamW:
    """AdamW over ``named`` parameters with the no-decay rule of :func:`param_groups`."""
    return torch.optim.AdamW(param_groups(named, weight_decay), lr=lr, betas=betas)
