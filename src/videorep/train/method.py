"""The contract between a method and the shared trainer.

A method is an ``nn.Module`` that owns everything it needs (a frozen encoder, trainable heads,
momentum copies, queues). The trainer optimises the parameters with ``requires_grad=True``,
checkpoints :meth:`Method.checkpoint_state` and logs the scalars returned by
:meth:`Method.training_step`.

Methods with an ordinary single objective implement only ``training_step``. Methods that need
control over the optimiser (bi-level optimisation) override :meth:`Method.optimizer_step`.

Precision (``--precision``): the trainer calls :meth:`Method.configure_precision` with the
autocast dtype (``None`` for float32) and, for float16, a ``torch.amp.GradScaler``. The default
:meth:`Method.optimizer_step` runs each forward under :meth:`Method.autocast` (on the device of
the batch), scales the loss with :meth:`Method.backward` and steps with
:meth:`Method.step_optimizer` (``scaler.step`` + ``update``: steps with inf/NaN gradients are
skipped), as the authors' ``engine_pretrain.py`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from videorep.train.config import TrainConfig


def _first_tensor(batch: Any) -> torch.Tensor | None:
    if isinstance(batch, torch.Tensor):
        return batch
    values = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(values, (list, tuple)) or isinstance(batch, Mapping):
        for value in values:
            found = _first_tensor(value)
            if found is not None:
                return found
    return None


def batch_device(batch: Any) -> torch.device:
    """The device of the first tensor in ``batch`` (a tensor, or dicts / lists / tuples of
    them); the CPU when it holds none."""
    found = _first_tensor(batch)
    return found.device if found is not None else torch.device("cpu")


class Method(nn.Module):
    """Base class of trainable methods.

    Subclasses mark frozen sub-modules with ``requires_grad_(False)``; those parameters are not
    optimised and not written to checkpoints (they are rebuilt from the config on resume).
    """

    #: name used in checkpoints and configs, e.g. ``"cosettle"``
    method_name: str = "method"
    #: logged scalars shown on the progress bar (besides the learning rate)
    progress_metrics: tuple[str, ...] = ("loss",)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """``training_step``; the entry point DistributedDataParallel calls."""
        return self.training_step(batch)

    def attach_ddp(self, ddp: nn.Module | None) -> None:
        """Route :meth:`step_forward` through ``ddp`` (a DistributedDataParallel of ``self``).

        Stored outside the module tree (no recursion in ``state_dict``/``modules``).
        """
        self.__dict__["_ddp_wrapper"] = ddp

    @property
    def ddp(self) -> nn.Module | None:
        """The DistributedDataParallel wrapper of this method, if the trainer attached one."""
        return self.__dict__.get("_ddp_wrapper")

    def step_forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """``training_step(batch)``, through DDP when distributed (its backward all-reduces)."""
        if self.ddp is None:
            return self.training_step(batch)
        return self.ddp(batch)

    # ------------------------------------------------------------------ precision and compile
    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The training autocast dtype (``None``: float32), set by :meth:`configure_precision`."""
        return self.__dict__.get("_autocast_dtype")

    @property
    def grad_scaler(self) -> Any:
        """The ``torch.amp.GradScaler`` of a float16 run, else ``None``."""
        return self.__dict__.get("_grad_scaler")

    def configure_precision(self, dtype: torch.dtype | None, scaler: Any = None) -> None:
        """Train under autocast to ``dtype`` (``None``: float32), scaling losses with ``scaler``.

        Methods that cannot train in a precision raise :class:`~videorep.errors.VideorepError`
        here, before the first step. Stored outside the module tree (not in ``state_dict``).
        """
        self.__dict__["_autocast_dtype"] = dtype
        self.__dict__["_grad_scaler"] = scaler

    def autocast(self, batch: Any) -> Any:
        """The autocast context of this run's precision, on the device of ``batch``."""
        from videorep.utils.device import autocast

        return autocast(batch_device(batch), self.autocast_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, through the GradScaler in a float16 run."""
        scaler = self.grad_scaler
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; float16: ``scaler.step`` (skips non-finite steps) + ``update``."""
        scaler = self.grad_scaler
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()

    def compile_encoder(self) -> None:
        """``--compile``: ``torch.compile`` the encoder in place (``nn.Module.compile``: the
        state-dict keys stay the same). Methods name their encoder in :meth:`encoder_module`."""
        module = self.encoder_module()
        if module is None:
            from videorep.errors import VideorepError

            raise VideorepError(f"--compile: {self.method_name} has no encoder to compile")
        module.compile()

    def encoder_module(self) -> nn.Module | None:
        """The module ``--compile`` compiles (the encoder); ``None``: nothing to compile."""
        return None

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """Compute the loss of one (micro-)batch.

        Returns a dict with a differentiable scalar ``"loss"`` and any other scalars to log
        (detached or not; the trainer detaches them).
        """
        raise NotImplementedError

    def optimizer_step(
        self,
        batches: list[Any],
        optimizer: torch.optim.Optimizer,
        loss_scale: float,
    ) -> dict[str, torch.Tensor]:
        """One optimiser step over ``batches`` (gradient accumulation micro-batches).

        The default accumulates ``training_step(b)["loss"] * loss_scale`` over the micro-batches
        and steps once. ``loss_scale`` is ``1 / len(batches)``. Distributed, the forward goes
        through DDP, whose all-reduce averages the gradients over the ``W`` ranks: each rank's
        loss is the mean over its ``b`` samples, so the average equals the gradient of the mean
        over the ``W * b`` samples of the global micro-batch, as in one process. Only the last
        micro-batch synchronises (DDP ``no_sync`` for the others; the accumulated sum is reduced).
        Returns the micro-batch-averaged metrics (of this rank; the trainer averages them).
        """
        optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            ctx = nullcontext() if last or self.ddp is None else self.ddp.no_sync()
            with ctx:
                with self.autocast(batch):
                    metrics = self.step_forward(batch)
                self.backward(metrics["loss"].float() * loss_scale)
            for key, value in metrics.items():
                value = value.detach().float()
                totals[key] = totals.get(key, 0.0) + value * loss_scale
        self.step_optimizer(optimizer)
        return totals

    #: the trainer converts BatchNorm to global-batch BatchNorm when distributed if True
    global_batchnorm: bool = True

    def build_optimizer(
        self, named: list[tuple[str, nn.Parameter]], lr: float, config: TrainConfig
    ) -> torch.optim.Optimizer:
        """The optimiser over ``named``; AdamW (:func:`~videorep.train.schedule.build_adamw`)
        unless a method overrides it. The trainer sets each group's ``lr`` every step."""
        from videorep.train.schedule import build_adamw

        return build_adamw(named, lr, config.weight_decay, config.betas)

    def set_seed(self, seed: int) -> None:
        """Called by the trainer before the first step with the run's seed (``--seed``).

        Methods whose per-step randomness is seeded in :meth:`before_optimizer_step` keep it.
        """

    def export(self, out_dir: str | Path) -> None:
        """Write the trained artefact to ``out_dir`` after training (rank 0); none by default."""

    def before_optimizer_step(self, step: int) -> None:
        """Hook before each optimiser step (e.g. seed per-step randomness for exact resume)."""

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step (momentum updates, queue maintenance)."""

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Named parameters the optimiser updates."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """State to checkpoint: every tensor except frozen parameters."""
        frozen = {n for n, p in self.named_parameters() if not p.requires_grad}
        frozen |= {n for n in self.state_dict() if n.startswith(self.frozen_prefixes())}
        return {k: v for k, v in self.state_dict().items() if k not in frozen}

    def frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of frozen sub-modules whose buffers are not checkpointed either."""
        return ()

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`checkpoint_state`; every key must match."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        expected = set(self.checkpoint_state())
        missing = [k for k in missing if k in expected]
        if missing or unexpected:
            from videorep.errors import VideorepError

            raise VideorepError(
                f"checkpoint does not fit this {self.method_name} model: "
                f"missing {missing[:5]}, unexpected {list(unexpected)[:5]}"
            )


@dataclass(frozen=True)
class MethodPlugin:
    """What ``videorep train NAME`` needs from a method package (its module's ``PLUGIN``).

    The trainer flags come from :class:`~videorep.train.trainer.TrainConfig`, the method's and
    its data's from the two dataclasses below (their fields define the flags, see
    :mod:`videorep.utils.config`); the command merges defaults, ``--config`` and the command line
    into one instance of each and calls ``train(method_config, data_config, train_config)``.

    Attributes:
        name: the subcommand and :attr:`Method.method_name`.
        help: one line for ``videorep train --help``.
        method_config: dataclass of the method's settings (config section ``method_config``).
        data_config: dataclass of the data settings (config section ``data``).
        train: builds data and method and runs the trainer; returns ``(method, history)``.
        train_defaults: this method's defaults for ``TrainConfig`` fields (e.g. ``epochs``).
        prepare: validates the two configs and links them (e.g. a data setting that follows a
            method setting); called before anything is built or resumed.
        summary: the JSON line printed at the end from the history and the run folder.
    """

    name: str
    help: str
    method_config: type
    data_config: type
    train: Callable[[Any, Any, TrainConfig], tuple[Method, list[dict]]]
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    prepare: Callable[[Any, Any], None] | None = None
    summary: Callable[[list[dict], Path], dict | None] | None = None
