"""Co-Settle: cycle-consistency + separability regulariser on a frozen image encoder."""

from videorep.backbones.pos import pea
from videorep.methods.cosettle.heads import ProjectionHead, load_projection, save_projection
from videorep.methods.cosettle.losses import cycle_loss, kl_regularizer, mse_regularizer
from videorep.methods.cosettle.method import CoSettle, CoSettleConfig

__all__ = [
    "CoSettle",
    "CoSettleConfig",
    "ProjectionHead",
    "cycle_loss",
    "kl_regularizer",
    "load_projection",
    "mse_regularizer",
    "pea",
    "save_projection",
]
