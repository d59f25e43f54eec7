"""The one training loop shared by every method.

It owns what is common to Co-Settle and BOD-VCL: the deterministic data order, the global batch,
AdamW with warm-up + cosine, gradient accumulation, atomic checkpoints with exact resume, the
logs (quiet progress bar, JSONL, TensorBoard) and clean stops (NaN/inf loss, Ctrl-C). Methods
plug in through :class:`videorep.train.method.Method`.

Determinism: the sample order is a pure function of ``(seed, epoch)``, a dataset with
``set_epoch`` draws its augmentations from ``(seed, epoch, index)``, and methods seed per-step
randomness in ``before_optimizer_step``; together with the restored optimiser state a resumed run
reproduces the uninterrupted one bit for bit on CPU.

Device and precision (``--device``, ``--precision``, docs/gpu.md): :func:`setup_device` resolves
the device once; the method is moved there before DDP wraps it and before the optimiser is built
(so its state is created there), and every micro-batch is moved there (``non_blocking`` from
pinned memory). Forward passes run under the method's autocast (:meth:`Method.autocast`); fp16
scales the loss with a ``torch.amp.GradScaler`` whose state is checkpointed.

Distributed (``torchrun``, see :mod:`videorep.train.distributed`): ``rank`` and ``world_size``
come from ``torch.distributed`` when it is initialised (:mod:`videorep.utils.distributed`). The same loop runs on every rank: each
rank takes its slice of every micro-batch, BatchNorms become global-batch ones, the method is
wrapped in DistributedDataParallel (only its trainable parameters are reduced; frozen sub-modules
are ignored), the logged metrics and the Ctrl-C request are averaged / shared across ranks, and
only rank 0 logs, writes checkpoints and exports. A run on ``W`` processes with ``--batch-size
b`` computes the same steps as one process with ``--batch-size W*b`` (same ``--accum``).

Ctrl-C under ``torchrun``: the agent forwards SIGINT to every worker; the stop request travels in
each step's metric all-reduce, so all ranks stop after the same step (none is left waiting in a
collective), rank 0 saves, the others wait for it at a barrier, and rank 0 alone prints the
``interrupted at step k/N`` line (exit 130). The agent SIGKILLs workers still running
``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` (30) seconds later, and plain ``torchrun`` ends with its own
``SignalException`` traceback; ``python -m videorep.train.launch`` (same arguments) does not.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from videorep.errors import Interrupted, VideorepError
from videorep.train.checkpoint import (
    FORMAT,
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from videorep.train.config import PRECISIONS, TrainConfig
from videorep.train.method import Method
from videorep.train.schedule import lr_at
from videorep.utils.config import write_json_atomic
from videorep.utils.device import (
    ddp_device_ids,
    pin_memory_for,
    resolve_device,
    set_matmul_tf32,
    to_device,
)
from videorep.utils.distributed import rank_and_world_size
from videorep.utils.progress import progress_bar, set_postfix
from videorep.utils.provenance import provenance

#: Settings that control how a run is carried out, not what it computes: :func:`check_resume`
#: does not compare them. ``out`` / ``resume`` (where and whether), ``progress``, ``workers``,
#: ``persistent_workers``, ``prefetch_factor`` and ``save_every`` (display, loading and
#: checkpoint frequency: same steps either way), ``deterministic``, ``tf32`` and ``compile``
#: (kernel choice and thread count), ``device`` (a run may continue on another device, e.g. a
#: CPU run resumed on a GPU), ``provenance``. Everything else is compared, the precision, the run
#: length (``epochs``, ``max_steps``: the learning-rate schedule depends on it) and the global
#: batch (so the number of processes) included: a resumed run computes what the uninterrupted
#: one would have.
RUN_CONTROL_KEYS = frozenset(
    f"train.{k}"
    for k in (
        "out",
        "resume",
        "progress",
        "workers",
        "persistent_workers",
        "prefetch_factor",
        "save_every",
        "deterministic",
        "device",
        "tf32",
        "compile",
    )
) | {"provenance", "method"}

#: Compared settings that checkpoints of older versions do not record, with the value those runs
#: used (a checkpoint without ``train.precision`` was trained in float32).
IMPLIED_SETTINGS = {"train.precision": "fp32"}

#: ``--precision`` -> autocast dtype (``None``: float32, no autocast)
PRECISION_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def setup_device(config: TrainConfig) -> torch.device:
    """The device of this process for ``config`` (``--device``), checked against ``--precision``.

    Resolves ``--device`` (:func:`videorep.utils.device.resolve_device`: under ``torchrun``
    ``cuda`` is the GPU ``LOCAL_RANK``), makes that GPU the current one and applies ``--tf32``
    there. fp16 is refused on the CPU (it needs CUDA and a GradScaler; use bf16). Idempotent: the
    plug-ins call it before building data that already uses the encoder (the view bank), the
    :class:`Trainer` again.
    """
    if config.precision not in PRECISIONS:
        raise VideorepError(
            f"--precision {config.precision!r}: choose one of {', '.join(PRECISIONS)}"
        )
    dev = resolve_device(config.device)
    if config.precision == "fp16" and dev.type != "cuda":
        raise VideorepError(
            f"--precision fp16 on {dev}: float16 training runs on CUDA only (autocast with a "
            "GradScaler, as the authors' engine_pretrain.py); use --precision bf16 or fp32 on "
            "the CPU"
        )
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        set_matmul_tf32(config.tf32)
    return dev


def _flat_settings(config: dict) -> dict:
    """``{"data.fps": 2.0, "backbone": ...}``: the run config as one level of dotted keys.

    The method's settings (section ``method_config``) keep their bare names; every other section
    is prefixed with its name. Values are JSON-normalised (tuples become lists). A checkpoint of
    an older version, with BOD-VCL's ``dtype`` at the top level, is read as the current layout.
    """
    config = json.loads(json.dumps(config, default=str))
    method = config.get("method_config")
    if isinstance(method, dict) and "dtype" in config and "dtype" not in method:
        method["dtype"] = config.pop("dtype")
    flat = {}
    for section, values in config.items():
        if isinstance(values, dict):
            prefix = "" if section == "method_config" else f"{section}."
            flat.update({f"{prefix}{k}": v for k, v in values.items()})
        else:
            flat[section] = values
    return {k: v for k, v in flat.items() if k not in RUN_CONTROL_KEYS}


def config_diff(old: dict, new: dict) -> dict[str, tuple]:
    """``{key: (old value, new value)}`` over the settings that determine a run's result.

    A section one of the two configs does not record (a hand-made or older checkpoint) is not
    compared; the model's shapes are still checked when the state is loaded.
    """
    shared = set(old) & set(new)
    if "method_config" in shared and "dtype" in old:  # older BOD-VCL layout, see _flat_settings
        shared.add("dtype")
    a = _flat_settings({k: v for k, v in old.items() if k in shared})
    b = _flat_settings({k: v for k, v in new.items() if k in shared})
    for key, implied in IMPLIED_SETTINGS.items():
        if key in b and key not in a:
            a[key] = implied
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume(path: Path, ckpt: dict, method_name: str, config: dict) -> None:
    """Refuse to resume the checkpoint ``ckpt`` (read from ``path``) with another run config.

    Every setting of the saved config (method, data, trainer, precision, dtype) must equal the
    new one, except :data:`RUN_CONTROL_KEYS` (the device among them); the error names each
    differing key with both values.
    """
    if ckpt.get("method") != method_name:
        raise VideorepError(
            f"{path}: a {ckpt.get('method')} checkpoint cannot resume a {method_name} run"
        )
    diff = config_diff(ckpt.get("config", {}), config)
    if diff:
        raise VideorepError(
            f"{path}: was written by a run with different settings {diff}; "
            "resume with the same settings or use a new --out"
        )


#: ``(rank, world_size)``; ``(0, 1)`` without an initialised process group.
dist_info = rank_and_world_size


class MicroBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches of one epoch, from ``start_step`` on.

    The epoch's order is ``randperm(n)`` from a generator seeded with ``(seed, epoch)``, so
    every epoch is reshuffled and every rank computes the same order. Global step ``s``
    consumes ``perm[s*G : (s+1)*G]`` with ``G = batch * accum * world``, split into ``accum``
    micro-batches of ``batch * world`` samples; rank ``r`` takes the ``r``-th ``batch`` slice of
    each. The union over ranks of micro-batch ``a`` is thus the single-process micro-batch ``a``
    of a run with ``batch * world`` per process, whatever the world size.
    """

    def __init__(
        self,
        n: int,
        batch: int,
        accum: int,
        rank: int,
        world: int,
        seed: int,
        epoch: int,
        start_step: int = 0,
    ) -> None:
        self.n, self.batch, self.accum, self.rank, self.world = n, batch, accum, rank, world
        self.seed, self.epoch, self.start_step = seed, epoch, start_step
        self.global_batch = batch * accum * world
        self.steps = n // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        micro = self.batch * self.world
        for step in range(self.start_step, self.steps):
            chunk = perm[step * self.global_batch : (step + 1) * self.global_batch]
            for a in range(self.accum):
                group = chunk[a * micro : (a + 1) * micro]
                yield group[self.rank * self.batch : (self.rank + 1) * self.batch]

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.accum


class _StopRequest:
    """First Ctrl-C asks the loop to save and stop after the current step; a second one aborts.

    ``announce``: print the "stopping" line (rank 0 only under ``torchrun``, which forwards the
    Ctrl-C to every worker).
    """

    def __init__(self, announce: bool = True) -> None:
        self.requested = False
        self.announce = announce
        self._previous = None

    def __enter__(self) -> _StopRequest:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ANN001
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\nvideorep: stopping after this step (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class TrainingInterrupted(Interrupted):
    """Raised after a clean Ctrl-C stop; the checkpoint holds the last finished step.

    ``announce`` is False on the ranks other than 0, so a ``torchrun`` job reports it once.
    """


class Trainer:
    """Runs ``method`` on ``dataset`` with ``config``; see the module docstring.

    Args:
        method: the :class:`Method` (frozen parts already frozen).
        dataset: map-style dataset; ``set_epoch(e)`` is called if it exists.
        config: optimisation settings.
        run_config: the full, JSON-serialisable configuration of the run (method, data, train);
            stored in every checkpoint and checked on resume.
        collate_fn: passed to the DataLoader.
        worker_init_fn: passed to the DataLoader (e.g. to make decoders fork-safe).
        sampler_factory: ``(n, batch, accum, rank, world, seed, epoch, start_step) -> Sampler``
            yielding this rank's micro-batches; defaults to :class:`MicroBatchSampler`.
        on_checkpoint: called with the trainer after each checkpoint is written (rank 0), e.g.
            to evaluate it (``train cosettle --eval-every``).
    """

    def __init__(
        self,
        method: Method,
        dataset: Dataset,
        config: TrainConfig,
        run_config: dict | None = None,
        collate_fn: Callable | None = None,
        worker_init_fn: Callable | None = None,
        sampler_factory: Callable[..., Sampler] | None = None,
        on_checkpoint: Callable[[Trainer], None] | None = None,
    ) -> None:
        self.method = method
        self.dataset = dataset
        self.config = config
        self.run_config = run_config or {}
        self.collate_fn = collate_fn
        self.worker_init_fn = worker_init_fn
        self.sampler_factory = sampler_factory or MicroBatchSampler
        self.on_checkpoint = on_checkpoint
        self.rank, self.world = rank_and_world_size()
        self.out = Path(config.out)
        self.global_batch = config.batch_size * config.accum * self.world
        n = len(dataset)  # type: ignore[arg-type]
        self.steps_per_epoch = n // self.global_batch
        if self.steps_per_epoch == 0:
            raise VideorepError(
                f"the training set has {n} samples, fewer than one global batch of "
                f"{self.global_batch} (batch {config.batch_size} x accum {config.accum} x "
                f"{self.world} processes); lower --batch-size or add data"
            )
        planned = math.ceil(config.epochs * self.steps_per_epoch)
        # --max-steps sets the run length (it overrides --epochs, as in common trainers).
        self.total_steps = max(1, config.max_steps if config.max_steps else planned)
        # Warm-up: --warmup-epochs of data, but never more than its share of the run (1 of 5
        # epochs in the paper) when --max-steps sets a different length.
        frac = min(1.0, config.warmup_epochs / config.epochs) if config.epochs > 0 else 0.0
        self.warmup_steps = min(
            round(config.warmup_epochs * self.steps_per_epoch), round(frac * self.total_steps)
        )
        self.base_lr = config.lr if config.lr is not None else config.blr * self.global_batch / 256
        # Device: everything (parameters, buffers, queues, the optimiser's state, the batches)
        # lives on self.device; the module is moved before DDP wraps it and before the
        # optimiser is built, so its state is created there.
        self.device = setup_device(config)
        method.to(self.device)
        dtype = PRECISION_DTYPES[config.precision]
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
        method.configure_precision(dtype, self.scaler)
        if config.compile:
            method.compile_encoder()
        self.ddp = self._wrap_distributed(method) if self.world > 1 else None
        self.optimizer = method.build_optimizer(method.trainable_parameters(), self.base_lr, config)
        self.step = 0
        self.history: list[dict] = []
        self._stop_agreed = False  # distributed: a stop every rank has seen (see _reduce_metrics)

    def _wrap_distributed(self, method: Method):  # noqa: ANN202
        """Global-batch BatchNorm and DDP over the trainable parameters (world size > 1)."""
        from torch.nn.parallel import DistributedDataParallel

        from videorep.train.distributed import convert_batchnorm

        if method.global_batchnorm:
            convert_batchnorm(method)
        prefixes = method.frozen_prefixes()
        ignored = [n for n, _ in method.named_parameters() if n.startswith(prefixes)] + [
            n for n, _ in method.named_buffers() if n.startswith(prefixes)
        ]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(method, ignored)
        ddp = DistributedDataParallel(
            method,  # already on self.device (see __init__): DDP refuses a CPU module with ids
            device_ids=ddp_device_ids(self.device),
            broadcast_buffers=False,  # queues and BN statistics are kept equal by the method
        )
        method.attach_ddp(ddp)
        return ddp

    # ----------------------------------------------------------------------------- state
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def _full_config(self) -> dict:
        train = asdict(self.config)
        return {
            "method": self.method.method_name,
            **self.run_config,
            "train": train,
            "global_batch": self.global_batch,
        }

    def save_checkpoint(self) -> None:
        if not self.is_main:
            return
        state = {
            "format": FORMAT,
            "method": self.method.method_name,
            "method_state": self.method.checkpoint_state(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "total_steps": self.total_steps,
            "precision": self.config.precision,
            "config": self._full_config(),
            "rng": rng_state(),
        }
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        atomic_save(state, self.checkpoint_path)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self)

    def resume_from(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        check_resume(path, ckpt, self.method.method_name, self._full_config())
        mine = self.method.state_dict()
        wrong = [
            f"{k} {list(v.shape)} vs {list(mine[k].shape)}"
            for k, v in ckpt["method_state"].items()
            if k in mine and hasattr(v, "shape") and v.shape != mine[k].shape
        ]
        if wrong:
            raise VideorepError(
                f"{path}: does not fit this model: shapes (checkpoint vs model) differ: "
                f"{'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''} - a checkpoint of "
                "another encoder or head width? Resume with its settings or use a new --out"
            )
        try:
            self.method.load_checkpoint_state(ckpt["method_state"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scaler is not None and "grad_scaler" in ckpt:
                self.scaler.load_state_dict(ckpt["grad_scaler"])
        except (RuntimeError, ValueError) as exc:
            detail = " ".join(str(exc).split())
            raise VideorepError(f"{path}: does not fit this model ({detail})") from None
        self.step = int(ckpt["step"])
        rng = ckpt.get("rng", {})
        if "torch" in rng:
            set_rng_state(rng)
        if self.is_main:
            self._trim_log(self.step)

    # ----------------------------------------------------------------------------- logging
    def _trim_log(self, step: int) -> None:
        log = self.out / "log.jsonl"
        if not log.is_file():
            return
        kept = []
        for line in log.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue
        log.write_text("".join(line + "\n" for line in kept))

    def _open_logs(self):  # noqa: ANN202
        if not self.is_main:
            return None, None
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            {**self._full_config(), "provenance": provenance()}, self.out / "config.json"
        )
        jsonl = open(self.out / "log.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step + 1)
        except Exception:  # tensorboard missing or broken: JSONL still has everything
            writer = None
        return jsonl, writer

    # ----------------------------------------------------------------------------- loop
    def _loader(self, epoch: int, start: int) -> DataLoader:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        sampler = self.sampler_factory(
            len(self.dataset),
            self.config.batch_size,
            self.config.accum,
            self.rank,
            self.world,
            self.config.seed,
            epoch,
            start,
        )
        extra = {}
        if self.config.workers > 0:  # DataLoader refuses these without workers
            extra["persistent_workers"] = self.config.persistent_workers
            if self.config.prefetch_factor is not None:
                extra["prefetch_factor"] = self.config.prefetch_factor
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.config.workers,
            collate_fn=self.collate_fn,
            worker_init_fn=self.worker_init_fn,
            pin_memory=pin_memory_for(self.device),  # then to_device is asynchronous
            **extra,
        )

    def fit(self) -> list[dict]:
        """Train to ``total_steps`` (resuming if asked); returns the logged records."""
        cfg = self.config
        if cfg.resume and self.checkpoint_path.is_file():
            self.resume_from(self.checkpoint_path)
        elif cfg.resume and self.is_main:
            print(f"videorep: no checkpoint in {self.out}; starting a new run", file=sys.stderr)
        self.method.set_seed(cfg.seed)
        self.method.train()
        jsonl, writer = self._open_logs()
        bar = None
        if self.is_main and cfg.progress:
            bar = progress_bar(self.total_steps, initial=self.step, desc="train")
        last_save = self.step
        self._stop_agreed = False
        try:
            with _StopRequest(announce=self.is_main) as stop:
                while self.step < self.total_steps and not self._stopping(stop):
                    epoch, start = divmod(self.step, self.steps_per_epoch)
                    iterator = iter(self._loader(epoch, start))
                    for _ in range(start, self.steps_per_epoch):
                        if self.step >= self.total_steps or self._stopping(stop):
                            break
                        record = self._one_step(iterator, stop)
                        self.history.append(record)
                        if self.is_main:
                            jsonl.write(json.dumps(record) + "\n")
                            jsonl.flush()
                            if writer is not None:
                                for key, value in record.items():
                                    if key not in ("step", "epoch", "time"):
                                        writer.add_scalar(f"train/{key}", value, record["step"])
                            if bar is not None:
                                bar.update(1)
                                shown = {
                                    k: f"{record.get(k, float('nan')):.4f}"
                                    for k in self.method.progress_metrics
                                }
                                set_postfix(bar, **shown, lr=f"{record['lr']:.2e}")
                        if self.step % cfg.save_every == 0:
                            self.save_checkpoint()
                            last_save = self.step
                if self.step != last_save or not self.checkpoint_path.is_file():
                    self.save_checkpoint()
                if self._stopping(stop) and self.step < self.total_steps:
                    if self.world > 1:  # no rank exits (torchrun would kill the rest) before the
                        torch.distributed.barrier()  # checkpoint of rank 0 is written
                    raise TrainingInterrupted(
                        f"interrupted at step {self.step}/{self.total_steps}; checkpoint saved to "
                        f"{self.checkpoint_path} (continue with --resume)",
                        announce=self.is_main,
                    )
        finally:
            if bar is not None:
                bar.close()
            if jsonl is not None:
                jsonl.close()
            if writer is not None:
                writer.close()
        if self.is_main:
            self.method.export(self.out)
        return self.history

    def _stopping(self, stop: _StopRequest) -> bool:
        """Whether to stop now. One process: a Ctrl-C was seen. Distributed: a Ctrl-C seen by
        any rank up to the last step's metric all-reduce, so every rank stops after the same
        step (a rank acting on its own signal could leave the others waiting in a collective)."""
        return stop.requested if self.world == 1 else self._stop_agreed

    def _one_step(self, iterator: Iterator, stop: _StopRequest | None = None) -> dict:
        cfg = self.config
        lr = lr_at(self.step, self.base_lr, self.warmup_steps, self.total_steps, cfg.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        micro = [to_device(next(iterator), self.device) for _ in range(cfg.accum)]
        t0 = time.perf_counter()
        self.method.before_optimizer_step(self.step)
        metrics = self.method.optimizer_step(micro, self.optimizer, 1.0 / cfg.accum)
        values = self._reduce_metrics(metrics, stop)
        if not all(math.isfinite(v) for v in values.values()):
            bad = {k: v for k, v in values.items() if not math.isfinite(v)}
            raise VideorepError(
                f"training stopped: non-finite values {bad} at step {self.step + 1}; "
                f"the last good checkpoint ({self.checkpoint_path}) was kept. Lower the learning "
                "rate or check the data"
            )
        self.method.after_optimizer_step(self.step, self.total_steps)
        self.step += 1
        epoch = (self.step - 1) // self.steps_per_epoch
        return {
            "step": self.step,
            "epoch": epoch,
            "lr": lr,
            **values,
            "time": time.perf_counter() - t0,
        }

    def _reduce_metrics(self, metrics: dict, stop: _StopRequest | None) -> dict[str, float]:
        """Metrics as floats, averaged over ranks; a Ctrl-C on any rank stops every rank."""
        values = {k: float(v) for k, v in metrics.items()}
        if self.world == 1:
            return values
        from videorep.utils.distributed import device

        keys = sorted(values)
        flag = 1.0 if stop is not None and stop.requested else 0.0
        packed = torch.tensor([values[k] for k in keys] + [flag], dtype=torch.float64)
        packed = packed.to(device())
        torch.distributed.all_reduce(packed)
        packed = (packed / self.world).cpu().tolist()
        if packed[-1] > 0:
            self._stop_agreed = True
        return dict(zip(keys, packed[:-1]))
