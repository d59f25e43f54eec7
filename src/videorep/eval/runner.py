"""One runner for every label-propagation benchmark, and the registry ``videorep eval`` reads.

A benchmark is one file: a :class:`Benchmark` subclass (exported as ``BENCHMARK``) that lists its
items (sequences / videos), evaluates one item, formats its table row and summarises the
per-item results; its module path goes into :data:`BENCHMARKS`. :func:`run_benchmark` owns the
rest, the same for all of them:

* **sharding** - items are split across ``torchrun`` ranks and merged in item order
  (:mod:`videorep.eval.sharding`); a single process is world size 1 of the same path;
* **progress** - rank 0 prints the table header and one row per item;
* **results** - ``OUT/results.json`` (summary, ``per_sequence``, ``settings``, ``timing`` and
  ``provenance``: versions, git commit, device), ``OUT/command.txt`` (the command line, shell
  quoted), the benchmark's own reports (:meth:`Benchmark.write_reports`: DAVIS writes the
  official toolkit's CSVs), with ``visualize`` ``OUT/index.html``, and with ``tensorboard`` the
  summary's numbers as TensorBoard scalars ``eval/<benchmark>/<metric>`` in ``OUT/tensorboard``
  (or the folder given);
* **resume and locking** - the run's state lives in ``OUT/.eval/``: ``lock`` (one run per
  folder), ``run.json`` (benchmark, settings, provenance) and ``done/<item>.json``, one record
  per finished item, written atomically *after* its files, with the size and hash of every file
  it wrote. ``resume=True`` keeps the items whose record and files check out and evaluates the
  rest; a fresh run forgets the records (files are overwritten as they are produced, and the
  previous ``results.json`` stays until the new one replaces it).

Every JSON file and PNG is written to a temporary file and moved into place, so an interruption
or a full disk leaves the previous complete version; an ``OSError`` (ENOSPC, ...) becomes one
:class:`~videorep.errors.VideorepError` naming the file.

Test hook: with ``VIDEOREP_EVAL_KILL_AFTER=N`` in the environment a process SIGKILLs itself
right after writing its ``N``-th item record (the resume tests use it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from videorep.errors import VideorepError
from videorep.utils.provenance import provenance

if TYPE_CHECKING:
    from videorep.eval.propagation import PropagationConfig
    from videorep.utils.distributed import DistContext

# name -> module defining ``BENCHMARK`` (imported only when that benchmark is asked for)
BENCHMARKS: dict[str, str] = {
    "davis": "videorep.eval.davis",
    "vip": "videorep.eval.vip",
    "jhmdb": "videorep.eval.jhmdb",
}

STATE_DIR = ".eval"
STALE_LOCK_SECONDS = 6 * 3600  # a lock of another host not refreshed for this long is stale
KILL_HOOK = "VIDEOREP_EVAL_KILL_AFTER"
RECORD_FORMAT = 1

Visualizer = Callable[[str], Any]  # item name -> SequenceVisualizer-like (add(), close())


def load_benchmark(name: str) -> type[Benchmark]:
    """The :class:`Benchmark` class registered as ``name`` (imports its module)."""
    if name not in BENCHMARKS:
        raise VideorepError(f"benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}")
    cls = getattr(importlib.import_module(BENCHMARKS[name]), "BENCHMARK", None)
    if not (isinstance(cls, type) and issubclass(cls, Benchmark)):
        raise VideorepError(f"{BENCHMARKS[name]}: defines no BENCHMARK (a Benchmark subclass)")
    return cls


def split_names(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]`` (``None`` stays ``None``; an empty list is an error)."""
    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise VideorepError(f"{text!r}: empty name list")
    return names


# ----------------------------------------------------------------------------- the interface


@dataclass
class Item:
    """One unit of work: a sequence / video, loaded and validated.

    Attributes:
        name: unique within the benchmark; the ``sequence`` of its result and its record's key.
        cost: relative work (frames) for balancing shards.
        data: whatever :meth:`Benchmark.evaluate` needs (e.g. a ``DavisSequence``).
    """

    name: str
    cost: float
    data: Any


class Benchmark(ABC):
    """What a benchmark defines; :func:`run_benchmark` does the rest.

    Class attributes: ``name`` (registry key, subcommand and propagation-preset task), ``help``
    (one line for ``videorep eval --help``), ``default_size`` (``--size`` default), ``header``
    (table header) and ``index_columns`` (columns of ``index.html``). Instances have
    ``extractor`` (frame ``[H, W, 3]`` uint8 -> features ``[h, w, D]``, with ``input_size`` and
    ``grid``) and ``config`` (the propagation settings); the benchmarks here are dataclasses
    whose fields are these two plus the dataset's (root, split, ...).

    Per-item work must be a pure function of the item (plus model and settings), so that any
    split across ranks, or a resumed run, merges to the single-process results.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    default_size: ClassVar[str]
    header: ClassVar[str]
    index_columns: ClassVar[tuple[str, ...]] = ("frames",)

    extractor: Any
    config: PropagationConfig

    # --- command line
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this benchmark's own flags (the common ones come from ``videorep.eval.commands``)."""
        return None

    @classmethod
    @abstractmethod
    def from_args(
        cls, args: argparse.Namespace, extractor: Any, config: PropagationConfig
    ) -> Benchmark:
        """The benchmark configured by the parsed command line."""

    # --- the work
    @abstractmethod
    def items(self) -> list[Item]:
        """Every item, loaded and validated up front (identical on every rank)."""

    @abstractmethod
    def evaluate(self, item: Item, out: Path, visualizer: Visualizer | None) -> dict:
        """Evaluate one item, writing its files under ``out``.

        Returns a JSON-serialisable dict with ``"sequence"`` (the item name), its metrics,
        ``"seconds"`` (wall clock, moved to ``timing``) and, with a visualizer, ``"vis"`` (what
        ``close()`` returned).
        """

    def outputs(self, item: Item) -> list[str]:
        """Files (relative to ``out``) :meth:`evaluate` writes for ``item``, checked on resume."""
        return []

    # --- reporting
    @abstractmethod
    def row(self, result: dict) -> str:
        """One table row for a per-item result."""

    @abstractmethod
    def summarize(self, results: Sequence[dict]) -> dict:
        """Dataset metrics over the per-item results in item order (``{}`` when none)."""

    def summary_row(self, summary: dict) -> str | None:
        """The table's last line (``None``: none)."""
        return None

    def write_reports(self, out: Path, results: Sequence[dict], summary: dict) -> list[str]:
        """Write extra report files into ``out`` (rank 0, after ``results.json``); their names."""
        return []

    @abstractmethod
    def settings(self, names: list[str]) -> dict:
        """This benchmark's part of ``results.json``'s ``settings`` (item names included)."""

    def model_settings(self) -> dict:
        """Propagation, input size and feature grid, recorded by every benchmark."""
        return {
            "propagation": self.config.to_dict(),
            "input_size": list(self.extractor.input_size),
            "grid": list(self.extractor.grid),
        }

    def per_sequence(self, result: dict) -> dict:
        """The ``per_sequence`` entry of ``results.json`` (default: the result without vis)."""
        return {k: v for k, v in result.items() if k != "vis"}

    def title(self) -> str:
        """Title of ``index.html``."""
        return self.name.upper()

    def index_row(self, result: dict) -> dict:
        """Row of ``index.html``: ``sequence``, the ``index_columns`` values and ``vis``."""
        row = {"sequence": result["sequence"], "frames": result.get("n_frames")}
        row |= {c: result[c] for c in self.index_columns if c in result}
        return row | {"vis": result.get("vis")}

    def device(self) -> str:
        """Where the encoder runs (for provenance)."""
        encoder = getattr(self.extractor, "encoder", None)
        params = getattr(encoder, "parameters", None)
        first = next(iter(params()), None) if callable(params) else None
        return str(first.device) if first is not None else "cpu"


# ----------------------------------------------------------------------------- atomic files


def quiet(_: str) -> None:
    """The log of ranks other than 0."""


def warn(message: str) -> None:
    print(f"videorep: warning: {message}", file=sys.stderr, flush=True)


def write_json(path: Path, obj: Any) -> None:
    """``json.dumps(obj, indent=1)`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    from videorep.eval.core import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj, indent=1).encode(), fsync=True)


def _digest(path: Path) -> dict:
    data = path.read_bytes()
    return {"size": len(data), "blake2b": hashlib.blake2b(data, digest_size=16).hexdigest()}


def _os_error(exc: OSError, doing: str) -> VideorepError:
    """One line naming the file (when the OSError knows it) and what was being done."""
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return VideorepError(f"{where}{exc.strerror or exc} (while {doing})")


# ----------------------------------------------------------------------------- the output folder


class RunFolder:
    """The state of a run in ``OUT/.eval/``: lock, ``run.json`` and per-item records."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.dir = self.out / STATE_DIR
        self.lock_path = self.dir / "lock"
        self.run_path = self.dir / "run.json"
        self.done_dir = self.dir / "done"

    # --- lock
    def lock(self) -> None:
        """Take ``OUT/.eval/lock``; refuse while another live run holds it, take over a stale one."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideorepError(f"{self.dir}: cannot create ({exc.strerror or exc})") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        me["command"] = list(sys.argv)
        for _ in range(5):
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as exc:
                raise VideorepError(f"{self.lock_path}: {exc.strerror or exc}") from None
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except OSError as exc:
                self.lock_path.unlink(missing_ok=True)
                raise VideorepError(f"{self.lock_path}: {exc.strerror or exc}") from None
            return
        raise VideorepError(f"{self.lock_path}: could not take the lock (contended)")

    def _take_over_if_stale(self) -> None:
        holder = _read_json(self.lock_path)
        try:
            age = time.time() - self.lock_path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        reason = _stale_reason(holder, age)
        if reason is None:
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))}"
                if holder
                else "a process that is starting"
            )
            raise VideorepError(
                f"{self.out}: another evaluation is writing to this folder ({who}); wait for it "
                f"to finish or use another --out (if that process is gone, delete "
                f"{self.lock_path})"
            )
        warn(f"{self.lock_path}: taking over a stale lock ({reason})")
        aside = self.lock_path.with_name(f"lock.stale.{os.getpid()}")
        try:
            os.rename(self.lock_path, aside)  # only one of several contenders succeeds
            os.unlink(aside)
        except FileNotFoundError:
            pass

    def heartbeat(self) -> None:
        """Refresh the lock's time stamp (a lock of another host goes stale without it)."""
        try:
            os.utime(self.lock_path)
        except OSError:
            pass

    def unlock(self) -> None:
        """Remove the lock if this process holds it."""
        holder = _read_json(self.lock_path)
        if (
            holder
            and holder.get("pid") == os.getpid()
            and holder.get("host") == socket.gethostname()
        ):
            try:
                self.lock_path.unlink()
            except OSError:
                pass

    # --- records
    def record_path(self, name: str) -> Path:
        return self.done_dir / f"{quote(name, safe='')}.json"

    def prepare(
        self,
        benchmark: str,
        settings: dict,
        visualize: bool,
        prov: dict,
        resume: bool,
        items: Sequence[Item],
        say: Callable[[str], None],
    ) -> dict[int, dict]:
        """Write ``run.json``; with ``resume`` return ``{index: record}`` of the finished items.

        Resuming with other settings than the recorded ones is an error (the kept items would
        not match the rest); records that do not check out are deleted and their items redone.
        Without ``resume`` earlier records are forgotten.
        """
        settings = json.loads(json.dumps(settings))  # as it reads back from run.json
        done: dict[int, dict] = {}
        if resume:
            old = _read_json(self.run_path)
            if old is None:
                say(f"--resume: no earlier run recorded in {self.out}, starting from scratch")
                shutil.rmtree(self.done_dir, ignore_errors=True)
            else:
                _check_same_run(self.run_path, old, benchmark, settings)
                for i, item in enumerate(items):
                    record, why = self.check_record(item.name, visualize)
                    if record is not None:
                        done[i] = record
                    elif why is not None:
                        say(f"{item.name}: {why}; evaluating it again")
                        self.record_path(item.name).unlink(missing_ok=True)
                say(f"resuming: {len(done)} of {len(items)} kept from {self.done_dir}")
        else:
            shutil.rmtree(self.done_dir, ignore_errors=True)
        self.done_dir.mkdir(parents=True, exist_ok=True)
        run = {"benchmark": benchmark, "settings": settings, "visualize": visualize}
        write_json(self.run_path, run | {"provenance": prov})
        return done

    def check_record(self, name: str, visualize: bool) -> tuple[dict | None, str | None]:
        """``(record, None)`` if ``name`` finished with all its files intact, else
        ``(None, why)`` (``why`` is ``None`` when there is no record at all)."""
        path = self.record_path(name)
        if not path.exists():
            return None, None
        record = _read_json(path)
        if (
            not isinstance(record, dict)
            or record.get("format") != RECORD_FORMAT
            or record.get("sequence") != name
            or not isinstance(record.get("result"), dict)
        ):
            return None, f"unreadable record {path}"
        if bool(record.get("visualize")) != visualize:
            was = "with" if record.get("visualize") else "without"
            return None, f"was evaluated {was} --visualize"
        for rel, want in record.get("files", {}).items():
            f = self.out / rel
            if not f.is_file():
                return None, f"{f} is missing"
            if _digest(f) != want:
                return None, f"{f} differs from the recorded file"
        return record, None

    def write_record(
        self, item: Item, rank: int, visualize: bool, result: dict, files: list[str]
    ) -> None:
        """Record ``item`` as finished (after its files, which are checked and hashed here)."""
        digests = {}
        for rel in files:
            path = self.out / rel
            if not path.is_file():
                raise VideorepError(f"{path}: {item.name} finished but this file was not written")
            digests[rel] = _digest(path)
        record = {
            "format": RECORD_FORMAT,
            "sequence": item.name,
            "rank": rank,
            "visualize": visualize,
            "files": digests,
            "result": result,
        }
        write_json(self.record_path(item.name), record)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_reason(holder: Any, age: float) -> str | None:
    """Why a lock is stale, or ``None`` if its holder may still be running."""
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return f"unreadable lock file, {age:.0f} s old" if age > 60 else None
    pid, host = holder["pid"], holder.get("host")
    if host == socket.gethostname():
        if pid != os.getpid() and not _pid_alive(pid):
            return f"pid {pid} on this host is no longer running"
        return None
    if age > STALE_LOCK_SECONDS:
        return f"pid {pid} on {host}, not refreshed for {age / 3600:.1f} h"
    return None


def _check_same_run(path: Path, old: Any, benchmark: str, settings: dict) -> None:
    if not isinstance(old, dict) or old.get("benchmark") != benchmark:
        was = old.get("benchmark") if isinstance(old, dict) else None
        raise VideorepError(
            f"{path}: --resume of a {was!r} run as {benchmark!r}; use another --out"
        )
    before = old.get("settings") or {}
    diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
    if diff:
        shown = "; ".join(f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in diff[:4])
        raise VideorepError(
            f"{path}: --resume with other settings than the recorded run ({shown}); "
            f"rerun with the same settings, or without --resume to start over"
        )


# ----------------------------------------------------------------------------- the runner


def run_benchmark(
    bench: Benchmark,
    out: str | Path,
    *,
    settings: dict | None = None,
    visualize: bool = False,
    resume: bool = False,
    log: Callable[[str], None] = print,
    dist: DistContext | None = None,
    tensorboard: str | Path | bool | None = None,
) -> dict:
    """Evaluate ``bench`` into ``out``; returns the ``results.json`` content (on every rank).

    Items are split across the ranks of ``dist`` (default: the initialised ``torch.distributed``
    group, else one process): each rank evaluates its items and records each as it finishes,
    rank 0 merges the results in item order, prints the table, writes ``results.json`` (and
    ``index.html`` with ``visualize``). ``settings``: the caller's part of ``settings`` (model,
    command-line flags), followed by the benchmark's. With ``resume`` the items finished by an
    earlier run into ``out`` with the same settings are kept (see the module docstring).

    ``results.json`` holds the benchmark's summary, ``per_sequence``, ``settings``, ``timing``
    (wall-clock seconds and rank per item; resumed items keep their original ones and are listed
    under ``resumed``) and ``provenance``; only ``timing`` and ``provenance`` vary between runs.
    ``OUT/command.txt`` records the command line. ``tensorboard``: ``True`` logs the summary to
    ``OUT/tensorboard``, a path to that folder (see :func:`log_summary_to_tensorboard`).
    """
    from videorep.utils.distributed import broadcast_object, current_context

    out = Path(out)
    dist = dist if dist is not None else current_context()
    say = log if dist.is_main else quiet
    items = bench.items()
    names = [it.name for it in items]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise VideorepError(f"{n}: listed twice for {bench.name}")
        seen.add(n)
    run_settings = dict(settings or {}) | bench.settings(names)
    prov = provenance(bench.device())
    folder = RunFolder(out)

    # rank 0 takes the lock and finds what is finished; the others wait for its answer
    state: dict = {}
    failure: BaseException | None = None
    if dist.is_main:
        try:
            folder.lock()
        except BaseException as exc:
            failure = exc
            state = {"error": str(exc)}
        else:
            try:
                try:
                    done = folder.prepare(
                        bench.name, run_settings, visualize, prov, resume, items, say
                    )
                except OSError as exc:
                    raise _os_error(exc, f"preparing {folder.dir}") from None
                state = {"done": done}
            except BaseException as exc:
                folder.unlock()
                failure = exc
                state = {"error": str(exc)}
    state = broadcast_object(state, dist)
    if "error" in state:
        if failure is not None:
            raise failure
        raise VideorepError(f"rank {dist.rank}: stopping, rank 0 failed: {state['error']}")
    try:
        report = _run(bench, items, state["done"], folder, run_settings, prov, visualize, dist, say)
    finally:
        if dist.is_main:
            folder.unlock()
    if dist.is_main and tensorboard:
        tb_dir = out / "tensorboard" if tensorboard is True else Path(tensorboard)
        log_summary_to_tensorboard(tb_dir, bench.name, report)
    return report


def summary_scalars(report: dict) -> dict[str, float]:
    """The summary's numbers of a ``results.json`` report, nested keys joined by ``/``."""
    skip = {"per_sequence", "settings", "timing", "provenance"}
    scalars: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            scalars[prefix] = float(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)

    for key, value in report.items():
        if key not in skip:
            walk(str(key), value)
    return scalars


def log_summary_to_tensorboard(folder: str | Path, benchmark: str, report: dict) -> Path:
    """Write the summary's numbers as scalars ``eval/<benchmark>/<metric>`` (step 0) to ``folder``.

    A missing ``tensorboard`` package is one clear error (the results are written already).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise VideorepError(
            f"--tensorboard: {exc} (pip install tensorboard); results.json is written"
        ) from None
    folder = Path(folder)
    try:
        writer = SummaryWriter(str(folder))
        try:
            for key, value in summary_scalars(report).items():
                writer.add_scalar(f"eval/{benchmark}/{key}", value, 0)
        finally:
            writer.close()
    except OSError as exc:
        raise _os_error(exc, f"writing TensorBoard events to {folder}") from None
    return folder


def command_line() -> str:
    """This process's command line, shell-quoted (the entry point's path shortened to
    ``videorep``), e.g. ``videorep eval davis --root DAVIS --out OUT``."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "videorep":
        argv[0] = "videorep"
    return shlex.join(argv)


def _run(
    bench: Benchmark,
    items: list[Item],
    done: dict[int, dict],
    folder: RunFolder,
    run_settings: dict,
    prov: dict,
    visualize: bool,
    dist: DistContext,
    say: Callable[[str], None],
) -> dict:
    """The per-item loop and the report of :func:`run_benchmark` (lock held, state prepared)."""
    from videorep.eval.sharding import run_sharded, split_timing

    out = folder.out
    names = [it.name for it in items]
    factory: Visualizer | None = None
    if visualize:
        from videorep.eval.visualize import SequenceVisualizer

        def factory(name: str):  # noqa: ANN202
            return SequenceVisualizer(out, name)

    kill_after = int(os.environ.get(KILL_HOOK, "0") or 0)
    written = [0]

    def work(pair: tuple[int, Item]) -> dict:
        _, item = pair
        try:
            result = bench.evaluate(item, out, factory)
            files = list(bench.outputs(item))
            vis = result.get("vis") or {}
            files += list(vis.get("strips", [])) + ([vis["video"]] if vis.get("video") else [])
            folder.write_record(item, dist.rank, visualize, result, files)
        except OSError as exc:
            raise _os_error(exc, f"evaluating {item.name}") from None
        if dist.is_main:
            folder.heartbeat()
        written[0] += 1
        if kill_after and written[0] >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    # rows in item order: as items finish in a single process, after the merge when sharded
    streaming = dist.world_size == 1
    ready: dict[int, dict] = {i: rec["result"] for i, rec in done.items()}
    cursor = [0]

    def flush() -> None:
        while cursor[0] in ready:
            say(bench.row(ready[cursor[0]]))
            cursor[0] += 1

    pending = [i for i in range(len(items)) if i not in done]
    if dist.world_size > 1:
        say(f"sharded over {dist.world_size} processes")
    say(bench.header)

    def on_result(j: int, res: dict) -> None:
        ready[pending[j]] = res
        flush()

    if streaming:
        flush()
    new, new_owners = run_sharded(
        [(i, items[i]) for i in pending],
        work,
        dist,
        costs=[items[i].cost for i in pending],
        names=[names[i] for i in pending],
        on_result=on_result if streaming else None,
    )
    results: list[dict] = [{}] * len(items)
    owners = [0] * len(items)
    for i, rec in done.items():
        results[i], owners[i] = rec["result"], int(rec.get("rank", 0))
    for j, i in enumerate(pending):
        results[i], owners[i] = new[j], new_owners[j]
    if streaming:
        flush()
    else:
        for r in results:
            say(bench.row(r))
    results, timing = split_timing(results, owners, dist)
    if done:
        timing["resumed"] = [names[i] for i in sorted(done)]
    summary = bench.summarize(results)
    line = bench.summary_row(summary) if summary else None
    if line is not None:
        say(line)
    report = dict(summary)
    report["per_sequence"] = [bench.per_sequence(r) for r in results]
    report["settings"] = run_settings
    report["timing"] = timing
    report["provenance"] = prov
    if not dist.is_main:
        return report
    write_json(out / "results.json", report)
    from videorep.eval.core import atomic_write_bytes

    atomic_write_bytes(out / "command.txt", (command_line() + "\n").encode(), fsync=True)
    bench.write_reports(out, results, summary)
    if visualize:
        from videorep.eval.visualize import write_index_html

        rows = [bench.index_row(r) for r in results]
        write_index_html(out, bench.title(), list(bench.index_columns), rows)
    return report
