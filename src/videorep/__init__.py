"""videorep: self-supervised video representation learning (Co-Settle, BOD-VCL) and evaluation."""

from videorep.errors import VideorepError

__version__ = "0.1.0"
__all__ = ["VideorepError", "__version__"]
