"""Co-Settle: cycle-consistency + separability regulariser on a frozen image encoder."""

from videorep.backbones.pos import pea
from videorep.methods.cosettle.config import CoSettleConfig, CoSettleDataConfig
from videorep.methods.cosettle.heads import ProjectionHead, load_projection, save_projection
from videorep.methods.cosettle.losses import cycle_loss, kl_regularizer, mse_regularizer
from videorep.methods.cosettle.method import CoSettle

__all__ = [
    "CoSettle",
    "CoSettleConfig",
    "CoSettleDataConfig",
    "ProjectionHead",
    "cycle_loss",
    "kl_regularizer",
    "load_projection",
    "mse_regularizer",
    "pea",
    "save_projection",
]
