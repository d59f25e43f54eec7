"""SGD + LARS as BOD-VCL trains (the paper, Sec. 5.1: "SGD with LARS").

:func:`build_lars` is timm's ``Lars`` (``timm.optim.Lars``) with ``always_adapt=True``: the
layer-wise trust ratio ``trust * ||w|| / (||g|| + wd ||w||)`` scales the step of *every* tensor,
as the authors' LARS (``models/optim.py``, ``lars_adaptation_filter=False``) does; a tensor with
zero norm takes a plain step. Weight decay only on weight matrices (the groups of
:func:`videorep.train.schedule.param_groups`). lightly's LARS (``lightly.utils.lars.LARS``) was
the first choice but skips the adaptation on tensors without weight decay (biases, norm
weights), which then take plain SGD steps of the (LARS-sized) learning rate; with the bi-level
hypergradient that blew the biases up within two steps (see docs/bodvcl.md).
"""

from __future__ import annotations

import torch
from torch import nn

TRUST = 1e-3


def build_lars(
    named: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD + LARS over ``named`` (see the module docstring)."""
    from timm.optim import Lars

    from videorep.train.schedule import param_groups

    return Lars(
        param_groups(named, weight_decay),
        lr=lr,
        momentum=momentum,
        trust_coeff=TRUST,
        always_adapt=True,
    )
