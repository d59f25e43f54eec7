"""Sharded evaluation: sequences split across ``torchrun`` ranks, results merged in order.

Every evaluator (DAVIS, VIP, JHMDB) runs its per-sequence work through :func:`run_sharded`. A
single process is world size 1 of the same code path: it evaluates every item itself and the
gather is skipped. Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the
environment) :func:`distributed_context` starts a process group (gloo on CPU, nccl when CUDA is
available; Python objects always travel over a gloo group), each rank evaluates the items
:func:`assign_items` gives it, and the per-item results are all-gathered and put back in the
original item order. Because each item's result is a pure function of the item (plus the model
and the settings), the merged list - and everything summarised from it - equals the
single-process one exactly, as long as the arithmetic itself is reproducible (same thread count:
see ``--deterministic``, which uses ``videorep.train.distributed.set_deterministic``).

If any rank fails (a bad frame, a missing file), it stops, reports the error through the same
gather, and every rank raises a :class:`~videorep.errors.VideorepError` naming the failing rank
and item, instead of the others waiting forever.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from videorep.errors import VideorepError

T = TypeVar("T")

_OBJECT_GROUP: Any = None  # gloo group for object collectives when the default backend is not gloo


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly trivial) group of evaluation processes.

    Attributes:
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of processes sharing the evaluation (1: no sharding).
        group: the process group used for the object gather (``None``: the default group).
    """

    rank: int = 0
    world_size: int = 1
    group: Any = None

    @property
    def is_main(self) -> bool:
        """Rank 0 prints the table and writes ``results.json``."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise VideorepError(f"environment variable {name}={raw!r}: expected an integer") from None


def current_context() -> DistContext:
    """The context of an already initialised default process group, else world size 1.

    Library callers (a training loop evaluating under ``torchrun``) get sharding for free when
    they have set up ``torch.distributed``; nothing is initialised here. Must be called on every
    rank (it may create the gloo group for objects, a collective call).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(), _object_group())


def _object_group() -> Any:
    """``None`` (the default group) if it is gloo, else a cached gloo group over all ranks."""
    global _OBJECT_GROUP
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        return None
    if _OBJECT_GROUP is None:
        _OBJECT_GROUP = dist.new_group(backend="gloo")
    return _OBJECT_GROUP


@contextmanager
def distributed_context() -> Iterator[DistContext]:
    """Context of this process for a command-line run; initialises ``torch.distributed``.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by ``torchrun``). With ``WORLD_SIZE``
    unset or 1 nothing is initialised and the context is world size 1. Otherwise a process group
    is started (``nccl`` with CUDA, device ``LOCAL_RANK``; ``gloo`` without) from the
    ``MASTER_ADDR``/``MASTER_PORT`` rendezvous torchrun provides, and destroyed on exit unless it
    already existed.
    """
    import torch
    import torch.distributed as dist

    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise VideorepError(f"RANK={rank}, WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    if world == 1:
        yield DistContext()
        return
    if dist.is_initialized():  # somebody else owns it
        yield current_context()
        return
    if not dist.is_available():
        raise VideorepError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise VideorepError(
                f"WORLD_SIZE={world} but {var} is not set: launch sharded runs with torchrun "
                f"(e.g. torchrun --standalone --nproc_per_node {world} -m videorep.cli eval ...)"
            )
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        backend = "nccl"
    else:
        backend = "gloo"
    global _OBJECT_GROUP
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        yield DistContext(rank, world, _object_group())
    finally:
        _OBJECT_GROUP = None
        dist.destroy_process_group()


def assign_items(costs: Sequence[float], world_size: int) -> list[int]:
    """Owner rank of each item: a deterministic longest-first balance of the total cost.

    Items are taken in order of decreasing cost (ties: original order) and each goes to the rank
    with the least cost so far (ties: lowest rank). Equal costs reduce to round-robin. Returns
    ``[len(costs)]`` ranks.
    """
    if world_size < 1:
        raise VideorepError(f"world size {world_size}: must be at least 1")
    load = [0.0] * world_size
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += float(costs[i])
    return owner


def run_sharded(
    items: Sequence[T],
    work: Callable[[T], dict],
    ctx: DistContext,
    costs: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    on_result: Callable[[int, dict], None] | None = None,
) -> tuple[list[dict], list[int]]:
    """Evaluate this rank's share of ``items`` and return all results in item order.

    Args:
        items: the sequences / videos (identical list on every rank).
        work: item -> result dict (picklable); a pure function of the item.
        ctx: this process's :class:`DistContext`.
        costs: per-item cost for the balance (default: all equal, i.e. round-robin).
        names: per-item names for error messages (default: the item index).
        on_result: called as ``on_result(i, result)`` right after each local item is done.

    Returns:
        ``(results, owners)``: ``len(items)`` result dicts in the original order (on every rank)
        and the rank that computed each.
    """
    n = len(items)
    owners = assign_items(costs if costs is not None else [1.0] * n, ctx.world_size)
    local: list[tuple[int, dict]] = []
    error: str | None = None
    for i, item in enumerate(items):
        if owners[i] != ctx.rank:
            continue
        if ctx.world_size == 1:  # no peers to tell: fail directly, with the original traceback
            res = work(item)
        else:
            try:
                res = work(item)
            except Exception as exc:
                label = names[i] if names is not None else f"item {i}"
                error = (
                    f"{label}: {exc}"
                    if isinstance(exc, VideorepError)
                    else (f"{label}: {type(exc).__name__}: {exc}")
                )
                break
        local.append((i, res))
        if on_result is not None:
            on_result(i, res)
    if ctx.world_size == 1:
        return [r for _, r in local], owners
    import torch.distributed as dist

    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, {"results": local, "error": error}, group=ctx.group)
    errors = [(r, g["error"]) for r, g in enumerate(gathered) if g["error"] is not None]
    if errors:
        if ctx.is_main:
            raise VideorepError("; ".join(f"rank {r}: {msg}" for r, msg in errors))
        if error is not None:
            raise VideorepError(f"rank {ctx.rank}: {error}")
        raise VideorepError(f"rank {ctx.rank}: stopping, rank {errors[0][0]} failed (see rank 0)")
    merged: list[dict | None] = [None] * n
    for g in gathered:
        for i, res in g["results"]:
            merged[i] = res
    missing = [i for i, r in enumerate(merged) if r is None]
    if missing:  # would mean ranks disagree about the item list
        raise VideorepError(
            f"sharded run lost items {missing}: every rank must list the same sequences"
        )
    return merged, owners  # type: ignore[return-value]


def split_timing(
    results: list[dict], owners: Sequence[int], ctx: DistContext
) -> tuple[list[dict], dict]:
    """Move each result's wall-clock ``seconds`` out of it into a separate timing record.

    Returns ``(results without "seconds", {"world_size", "per_sequence": [{"sequence", "rank",
    "seconds"}]})``: what stays in the results depends only on the data, the model and the
    settings, so sharded and single-process ``results.json`` agree everywhere but ``timing``.
    """
    clean, per = [], []
    for res, rank in zip(results, owners, strict=True):
        per.append({"sequence": res["sequence"], "rank": rank, "seconds": res.get("seconds")})
        clean.append({k: v for k, v in res.items() if k != "seconds"})
    return clean, {"world_size": ctx.world_size, "per_sequence": per}


def quiet(_: str) -> None:
    """The log of ranks other than 0."""


def run_table(
    items: Sequence[T],
    work: Callable[[T], dict],
    dist: DistContext,
    log: Callable[[str], None],
    header: str,
    row: Callable[[dict], str],
    names: Sequence[str],
    costs: Sequence[float] | None = None,
) -> tuple[list[dict], dict]:
    """The per-item loop every evaluator shares: run, print one table row per item, merge.

    Prints ``header`` and then ``row(result)`` for each item on rank 0 only: as each finishes in
    a single process, in item order after the merge when sharded. Returns
    ``(results in item order without "seconds", timing)`` (see :func:`split_timing`).
    """
    say = log if dist.is_main else quiet
    if dist.world_size > 1:
        say(f"sharded over {dist.world_size} processes")
    say(header)
    streaming = dist.world_size == 1  # rows as they finish; sharded: after the merge, in order
    results, owners = run_sharded(
        items,
        work,
        dist,
        costs=costs,
        names=names,
        on_result=(lambda i, r: say(row(r))) if streaming else None,
    )
    if not streaming:
        for r in results:
            say(row(r))
    return split_timing(results, owners, dist)
