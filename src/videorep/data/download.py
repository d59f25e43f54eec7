"""Fetching evaluation data: resumable HTTP download, SHA-256 check, safe unpacking.

:func:`fetch_davis` gets the official DAVIS-2017 trainval 480p archive (:data:`DAVIS_2017_URL`)
into a folder and unpacks it to ``<folder>/DAVIS`` (``JPEGImages``, ``Annotations``,
``ImageSets``; the 2016 sequences are a subset of it). :func:`download` writes to
``<file>.part`` and, when a transfer breaks (connection closed early, timeout), continues from
the bytes it has with an HTTP ``Range`` request, within the same call (``retries``) or in a
later one; a server that ignores ``Range`` makes it start over. The finished file is moved into
place only after its size and, when one is given, its SHA-256 check out; a mismatch deletes the
download and is one :class:`~videorep.errors.VideorepError` naming the URL and both digests.

The DAVIS site publishes no checksum, so none is built in: ``sha256=None`` records the digest of
what arrived in ``<archive>.sha256`` (compare it between machines, or pass it back as
``--sha256``), and every archive member's CRC is checked while unpacking. Members that would land
outside the target folder (``..``, absolute paths, links) are refused.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from videorep.errors import VideorepError

DAVIS_2017_URL = "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip"
#: environment variable naming the folder where evaluation data lives (and is downloaded to)
DATA_ENV = "VIDEOREP_DATA"
CHUNK = 1 << 20


def data_home() -> Path:
    """``$VIDEOREP_DATA``, or ``~/.cache/videorep/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path.home() / ".cache" / "videorep" / "data"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _say(message: str) -> None:
    print(f"videorep: {message}", file=sys.stderr, flush=True)


def _open(url: str, start: int, timeout: float):  # noqa: ANN202
    request = urllib.request.Request(url, headers={"User-Agent": "videorep"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # range past the end: the .part is complete or bad
            return None
        raise VideorepError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise VideorepError(f"{url}: cannot connect ({reason})") from None


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> int | None:
    """One request appending to ``part``; returns the expected total size (``None``: unknown).

    Raises ``OSError``/``urllib`` errors on a broken transfer (the bytes received stay in
    ``part``).
    """
    start = part.stat().st_size if part.exists() else 0
    response = _open(url, start, timeout)
    if response is None:
        return start
    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        if start and status == 206:
            total = start + int(length) if length is not None else None
            mode = "ab"
        else:  # a full response (no Range support, or a fresh start)
            if start:
                _say(f"{url}: the server does not resume; starting over")
            start = 0
            total = int(length) if length is not None else None
            mode = "wb"
        bar = None
        if progress:
            from videorep.utils.progress import progress_bar

            bar = progress_bar(total, initial=start, desc=part.name[:-5], unit="B", unit_scale=True)
        try:
            with open(part, mode) as fh:
                received = start
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received < total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")
    return total


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
    log: Callable[[str], None] = _say,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); returns ``dest``.

    An existing ``dest`` is kept when it matches ``sha256`` (or when no digest is given). A
    broken transfer is resumed up to ``retries`` times (``backoff`` seconds apart, doubling);
    after that the error says how much is in ``dest.part`` and that rerunning resumes it.
    ``sha256``: expected hex digest; on mismatch the download is deleted and an error raised.
    Without it the digest is written to ``dest.sha256``.
    """
    dest = Path(dest)
    expected = sha256.lower().strip() if sha256 else None
    if expected is not None and (len(expected) != 64 or not _is_hex(expected)):
        raise VideorepError(f"--sha256 {sha256!r}: expected 64 hexadecimal digits")
    if dest.is_file():
        if expected is None or sha256_of(dest) == expected:
            log(f"{dest}: already downloaded")
            return dest
        log(f"{dest}: checksum differs from --sha256; downloading again")
        dest.unlink()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VideorepError(f"{dest.parent}: cannot create ({exc.strerror or exc})") from None
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            total = _transfer(url, part, timeout, progress)
            break
        except VideorepError:
            raise
        except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            have = part.stat().st_size if part.exists() else 0
            if attempt >= retries:
                raise VideorepError(
                    f"{url}: transfer broken ({exc}); {have} bytes kept in {part}, "
                    f"run the same command again to resume"
                ) from None
            attempt += 1
            wait = backoff * 2 ** (attempt - 1)
            log(f"{url}: transfer broken ({exc}) at {have} bytes; resuming in {wait:g} s")
            time.sleep(wait)
    size = part.stat().st_size
    if total is not None and size != total:
        part.unlink()
        raise VideorepError(f"{url}: got {size} bytes, expected {total}; deleted, run again")
    got = sha256_of(part)
    if expected is not None and got != expected:
        part.unlink()
        raise VideorepError(
            f"{url}: checksum mismatch (sha256 {got}, expected {expected}); the download was "
            f"deleted"
        )
    os.replace(part, dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{got}  {dest.name}\n")
    log(f"{dest}: {size} bytes, sha256 {got}" + (" (verified)" if expected else ""))
    return dest


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def unpack_zip(archive: str | Path, into: str | Path) -> list[str]:
    """Unpack ``archive`` into ``into`` safely; returns its top-level names.

    Every member's CRC is checked (a damaged archive is one error naming it); members with
    absolute paths, ``..`` or symlinks are refused. Unpacks into a temporary folder first and
    moves the top-level entries into place, so an interruption leaves no half-unpacked tree.
    """
    archive, into = Path(archive), Path(into)
    tmp = into / f".unpack.{os.getpid()}"
    try:
        with zipfile.ZipFile(archive) as zf:
            root = tmp.resolve()
            for info in zf.infolist():
                target = (tmp / info.filename).resolve()
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                if is_link or not (target == root or root in target.parents):
                    raise VideorepError(f"{archive}: unsafe member {info.filename!r}; not unpacked")
            bad = zf.testzip()
            if bad is not None:
                raise VideorepError(f"{archive}: member {bad!r} is damaged (CRC mismatch)")
            zf.extractall(tmp)
        tops = sorted(p.name for p in tmp.iterdir())
        for name in tops:
            final = into / name
            if final.exists():
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            os.replace(tmp / name, final)
        return tops
    except zipfile.BadZipFile as exc:
        raise VideorepError(f"{archive}: not a valid zip archive ({exc})") from None
    except OSError as exc:
        raise VideorepError(f"{into}: unpacking {archive.name} failed ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_davis_root(path: Path) -> bool:
    """Whether ``path`` holds a DAVIS layout (``ImageSets``, ``JPEGImages``, ``Annotations``)."""
    return all((path / sub).is_dir() for sub in ("ImageSets", "JPEGImages", "Annotations"))


def find_davis_root(folder: str | Path) -> Path | None:
    """``folder`` itself or ``folder/DAVIS`` when it holds a DAVIS layout, else ``None``."""
    folder = Path(folder)
    for candidate in (folder, folder / "DAVIS"):
        if is_davis_root(candidate):
            return candidate
    return None


def fetch_davis(
    out: str | Path,
    url: str = DAVIS_2017_URL,
    sha256: str | None = None,
    **download_kwargs,  # noqa: ANN003
) -> Path:
    """Download (resumably), check and unpack the DAVIS-2017 archive into ``out``; its root.

    Already unpacked: returns ``out/DAVIS`` at once. The archive stays next to it (delete it to
    save 0.8 GB; a rerun then finds the unpacked root and downloads nothing).
    """
    out = Path(out)
    found = find_davis_root(out)
    if found is not None:
        return found
    name = url.rstrip("/").rsplit("/", 1)[-1] or "davis.zip"
    archive = download(url, out / name, sha256, **download_kwargs)
    unpack_zip(archive, out)
    found = find_davis_root(out)
    if found is None:
        raise VideorepError(
            f"{archive}: unpacked into {out}, but found no DAVIS layout (ImageSets, JPEGImages, "
            f"Annotations) there or in {out / 'DAVIS'}"
        )
    return found
