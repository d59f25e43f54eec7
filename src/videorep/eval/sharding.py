"""Sharded evaluation: items split across ``torchrun`` ranks, results merged in order.

The runner (:func:`videorep.eval.runner.run_benchmark`) evaluates every benchmark's items
through :func:`run_sharded`. A single process is world size 1 of the same code path: it evaluates
every item itself and the gather is skipped. Under ``torchrun`` the process group comes from
:func:`videorep.utils.distributed.distributed_context` (gloo on CPU, nccl when CUDA is
available; Python objects always travel over a gloo group), each rank evaluates the items
:func:`assign_items` gives it, and the per-item results are all-gathered and put back in the
original item order. Because each item's result is a pure function of the item (plus the model
and the settings), the merged list - and everything summarised from it - equals the
single-process one exactly, as long as the arithmetic itself is reproducible (same thread count:
see ``--deterministic``, which uses ``videorep.utils.distributed.set_deterministic``).

If any rank fails (a bad frame, a missing file), it stops, reports the error through the same
gather, and every rank raises a :class:`~videorep.errors.VideorepError` naming the failing rank
and item, instead of the others waiting forever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from videorep.errors import VideorepError
from videorep.utils.distributed import DistContext

__all__ = ["DistContext", "assign_items", "run_sharded", "split_timing"]

T = TypeVar("T")


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
