"""The fuzz harness: seeded byte mutations, a per-case time limit and the outcome rule.

Each case writes one mutated copy of a valid seed file, calls a reader in-process under a time
limit and classifies what happened:

- ``"ok"``: the reader returned, and the target's ``validate`` accepted the result (a mutation
  that the format cannot detect, e.g. a flipped bit inside JPEG entropy-coded data or inside a
  tensor's raw bytes, may legitimately load);
- ``"error"``: a :class:`~videorep.errors.VideorepError` whose message names the file;
- ``"skipped"``: a :class:`~videorep.data.sources.DataWarning` naming the file (training data is
  skipped with one warning each).

Anything else (another exception type, a message not naming the file, a hang past the limit, a
result that ``validate`` rejects, success on a mutation the target declares detectable) fails
the case.
"""

from __future__ import annotations

import os
import signal
import struct
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from videorep.data.sources import DataWarning
from videorep.errors import VideorepError

#: wall-clock limit for one in-process case (the machine is shared and slow)
CASE_SECONDS = 20.0

#: mutation kinds; a target may add its own
GENERIC = ("truncate", "empty", "bitflip", "overwrite", "wrong_type")


class CaseTimeout(Exception):
    """A case ran past :data:`CASE_SECONDS`."""


@contextmanager
def time_limit(seconds: float):
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (``SIGALRM`` timer)."""

    def handler(signum, frame):  # noqa: ANN001
        raise CaseTimeout(f"case ran past {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- mutations --------------------------------------------------------------------------------


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    """Cut the file at a random point (never the full length, never zero)."""
    if len(data) < 2:
        return b""
    return data[: int(rng.integers(1, len(data)))]


def bitflip(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip 1 to 8 random bits; half the time inside the first 512 bytes (headers)."""
    buf = bytearray(data)
    head = rng.random() < 0.5
    for _ in range(int(rng.integers(1, 9))):
        limit = min(len(buf), 512) if head else len(buf)
        pos = int(rng.integers(0, limit))
        buf[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def overwrite(data: bytes, rng: np.random.Generator) -> bytes:
    """Overwrite a random run of 1 to 64 bytes with random bytes (or 0x00 / 0xFF)."""
    buf = bytearray(data)
    n = int(rng.integers(1, 65))
    pos = int(rng.integers(0, max(1, len(buf) - n)))
    fill = rng.choice(3)
    if fill == 0:
        chunk = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    else:
        chunk = (b"\x00" if fill == 1 else b"\xff") * n
    buf[pos : pos + n] = chunk[: len(buf) - pos]
    return bytes(buf)


def mutate(
    kind: str, data: bytes, rng: np.random.Generator, others: list[bytes], extra: dict
) -> bytes:
    """Apply mutation ``kind``; ``others`` are seeds of other file types (for ``wrong_type``)."""
    if kind == "truncate":
        return truncate(data, rng)
    if kind == "empty":
        return b""
    if kind == "bitflip":
        return bitflip(data, rng)
    if kind == "overwrite":
        return overwrite(data, rng)
    if kind == "wrong_type":
        return others[int(rng.integers(0, len(others)))]
    if kind in extra:
        return extra[kind](data, rng)
    raise ValueError(f"unknown mutation {kind!r}")


# --- format-specific "huge declared dimensions" ------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_with_size(width: int, height: int, mode: str = "rgb") -> bytes:
    """A PNG whose IHDR declares ``width x height`` (valid CRC) but holds one row of data."""
    colour, channels = {"rgb": (2, 3), "gray": (0, 1), "palette": (3, 1)}[mode]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    row = b"\x00" + b"\x00" * min(width * channels, 1 << 16)
    parts = [b"\x89PNG\r\n\x1a\n", png_chunk(b"IHDR", ihdr)]
    if mode == "palette":
        parts.append(png_chunk(b"PLTE", bytes(range(3)) * 1))
    parts += [png_chunk(b"IDAT", zlib.compress(row)), png_chunk(b"IEND", b"")]
    return b"".join(parts)


def png_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """Rewrite the IHDR of a PNG to declare a huge size (CRC fixed so PIL trusts it)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return png_with_size(100_000, 100_000)
    sizes = [(100_000, 100_000), (50_000, 2_000), (1 << 30, 1), (65_535, 65_535), (20_000, 6_000)]
    w, h = sizes[int(rng.integers(0, len(sizes)))]
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", w, h)
    return data[:8] + png_chunk(b"IHDR", bytes(ihdr)) + data[33:]


def jpeg_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """Rewrite the SOF0/SOF2 marker of a JPEG to declare up to 65535 x 65535 pixels."""
    buf = bytearray(data)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        i = buf.find(marker)
        if i >= 0:
            h, w = [(65_535, 65_535), (60_000, 3_000), (20_000, 5_000)][int(rng.integers(0, 3))]
            buf[i + 5 : i + 9] = struct.pack(">HH", h, w)
            return bytes(buf)
    return bytes(buf)


def mp4_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """Declare 65535 x 65535 in the mp4 sample entry (``avc1``) and the track header."""
    buf = bytearray(data)
    i = buf.find(b"avc1")
    if i >= 0:
        buf[i + 28 : i + 32] = struct.pack(">HH", 65_535, 65_535)
    j = buf.find(b"tkhd")
    if j >= 0:  # version 0 tkhd: width/height are 16.16 fixed point at the end (84 bytes)
        buf[j + 80 : j + 88] = struct.pack(">II", 65_535 << 16, 65_535 << 16)
    return bytes(buf)


def safetensors_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """Rewrite the header to declare a huge shape (and data offsets) for the first tensor."""
    import json

    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    entry = header[name]
    if rng.random() < 0.5:
        entry["shape"] = [1 << 20, 1 << 20]
        entry["data_offsets"] = [entry["data_offsets"][0], entry["data_offsets"][0] + (1 << 42)]
    else:  # a header length field far past the end of the file
        return struct.pack("<Q", 1 << 40) + data[8:]
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n :]


def npy_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """Rewrite the ``shape`` in an ``.npy`` header to something huge (same header length)."""
    end = data.index(b"\n", 10)
    header = data[10:end].decode("latin1")
    start, stop = header.index("(") + 1, header.index(")")
    huge = ", ".join(["99999999"] * len(header[start:stop].split(",")[:-1] or ["x"]))
    new = header[:start] + huge.rstrip(", ") + header[stop:]
    new = new.ljust(len(header))[: max(len(header), len(new))]
    length = len(new) + 1
    return data[:8] + struct.pack("<H", length) + new.encode("latin1") + b"\n" + data[end + 1 :]


def json_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """Replace every integer in a JSON file with a huge or negative one."""
    import json

    obj = json.loads(data)
    value = [10**12, 1 << 31, -7, 0][int(rng.integers(0, 4))]

    def walk(x):  # noqa: ANN001, ANN202
        if isinstance(x, bool):
            return x
        if isinstance(x, int):
            return value
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x

    return json.dumps(walk(obj)).encode()


def json_wrong_shape(data: bytes, rng: np.random.Generator) -> bytes:
    """Valid JSON of the wrong structure: a list, a string, a number, null, or keys removed."""
    import json

    obj = json.loads(data)
    choice = int(rng.integers(0, 5))
    if choice == 0:
        return b"[1, 2, 3]"
    if choice == 1:
        return b'"config"'
    if choice == 2:
        return b"42"
    if choice == 3:
        return b"null"
    keys = list(obj)
    drop = keys[int(rng.integers(0, len(keys)))]
    return json.dumps({k: v for k, v in obj.items() if k != drop}).encode()


def non_utf8(data: bytes, rng: np.random.Generator) -> bytes:
    """Insert invalid UTF-8 bytes (Latin-1 accents, a lone continuation byte, 0xFF)."""
    pos = int(rng.integers(0, max(1, len(data))))
    junk = [b"\xe9t\xe9", b"\x80", b"\xff\xfe", b"caf\xe9\n"][int(rng.integers(0, 4))]
    return data[:pos] + junk + data[pos:]


def text_junk(data: bytes, rng: np.random.Generator) -> bytes:
    """Text-level damage: NUL bytes, control characters, a very long line, a BOM, CRLF endings."""
    choice = int(rng.integers(0, 5))
    if choice == 0:
        return data.replace(b"\n", b"\x00\n", 1)
    if choice == 1:
        return b"\x01\x02\x1b[31m" + data
    if choice == 2:
        return data + b"x" * 100_000 + b"\n"
    if choice == 3:
        return b"\xef\xbb\xbf" + data
    return data.replace(b"\n", b"\r\n")


# --- the outcome rule -------------------------------------------------------------------------


@dataclass
class Target:
    """One reader of one file type.

    Attributes:
        file_type: the row of the docs table (``"mp4"``, ``"config.json"``...).
        reader: what is called, for the docs table.
        seed: a valid file (its bytes are mutated).
        call: ``call(path)`` runs the reader on a mutated copy at ``path``; returns a value for
            ``validate``.
        names: ``names(path)`` -> strings one of which the error / warning message must contain.
        mutations: mutation kinds tried (``GENERIC`` plus keys of ``extra``).
        extra: format-specific mutations.
        validate: checks a returned value (raise ``AssertionError`` on a wrong result).
        detectable: mutations that must not load silently (the format can tell).
        mode: ``"raise"`` or ``"skip"`` (warning + skip, then ``VideorepError`` if nothing left).
        filename: the name the mutated copy gets inside a fresh case folder.
        prepare: ``prepare(case_dir)`` lays out a case (copies of the other files a reader
            needs) and returns where the mutated file goes.
        compatible: keys of the ``wrong_type`` pool that are legitimately readable here (a webm
            behind ``.mp4`` is still a video); they are not used as wrong types.
    """

    file_type: str
    reader: str
    seed: Path
    call: Callable[[Path], object]
    filename: str
    names: Callable[[Path], list[str]] = lambda p: [str(p)]
    mutations: tuple[str, ...] = GENERIC
    extra: dict = field(default_factory=dict)
    validate: Callable[[object], None] = lambda value: None
    detectable: tuple[str, ...] = ("empty", "wrong_type")
    mode: str = "raise"
    prepare: Callable[[Path], Path] | None = None
    compatible: tuple[str, ...] = ()


@dataclass
class CaseResult:
    kind: str
    outcome: str
    seconds: float
    detail: str = ""


def run_case(
    target: Target, kind: str, index: int, rng: np.random.Generator, others, folder: Path
) -> CaseResult:
    """Write one mutated copy under ``folder`` and classify the reader's outcome."""
    data = target.seed.read_bytes()
    mutated = mutate(kind, data, rng, others, target.extra)
    case_dir = folder / f"{target.file_type.replace('/', '_')}-{kind}-{index}"
    path = target.prepare(case_dir) if target.prepare else case_dir / target.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mutated)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with time_limit(CASE_SECONDS):
                value = target.call(path)
            target.validate(value)
            outcome, detail = "ok", ""
        except CaseTimeout as exc:
            outcome, detail = "FAIL", f"hang: {exc}"
        except VideorepError as exc:
            outcome, detail = "error", str(exc)
        except AssertionError as exc:
            outcome, detail = "FAIL", f"wrong result: {exc}"
        except Exception as exc:  # noqa: BLE001 - the point of the harness
            outcome, detail = "FAIL", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    data_warnings = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    names = target.names(path)
    if outcome == "error":
        if not any(n in detail for n in names):
            outcome, detail = "FAIL", f"message does not name {names[0]}: {detail}"
        elif "\n" in detail:
            outcome, detail = "FAIL", f"message is not one line: {detail!r}"
        elif data_warnings:
            if not any(any(n in w for n in names) for w in data_warnings):
                outcome, detail = "FAIL", f"warnings do not name the file: {data_warnings}"
            else:
                outcome = "skipped"
    elif outcome == "ok":
        if kind in target.detectable:
            outcome, detail = "FAIL", f"mutation {kind!r} loaded silently"
        elif data_warnings and target.mode != "skip":
            outcome, detail = "FAIL", f"unexpected warnings {data_warnings}"
        elif data_warnings:
            if not any(any(n in w for n in names) for w in data_warnings):
                outcome, detail = "FAIL", f"warnings do not name the file: {data_warnings}"
            else:
                outcome = "skipped"
    return CaseResult(kind, outcome, seconds, detail)


def schedule(target: Target, cases: int, seed: int) -> list[tuple[str, int]]:
    """``cases`` (mutation kind, index) pairs cycling through the target's mutations."""
    kinds = list(target.mutations)
    rng = np.random.default_rng(seed)
    order = [kinds[i % len(kinds)] for i in range(cases)]
    rng.shuffle(order)
    return [(k, i) for i, k in enumerate(order)]


def run_target(target: Target, cases: int, seed: int, pool: dict[str, bytes], folder: Path):
    """Run ``cases`` mutations of ``target``; returns ``(Counter of outcomes, failures)``."""
    own = target.seed.read_bytes()
    others = [b for k, b in pool.items() if k not in target.compatible and not own.startswith(b)]
    counts: Counter = Counter()
    failures = []
    for kind, index in schedule(target, cases, seed):
        rng = np.random.default_rng([seed, index])
        result = run_case(target, kind, index, rng, others, folder)
        counts[result.outcome] += 1
        if result.outcome == "FAIL":
            failures.append(f"case {index} ({kind}): {result.detail}")
    return counts, failures


def env_without_threads() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}
