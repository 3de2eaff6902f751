"""Atomic writes: an interrupted run never leaves a half-written table behind.

Everything is written to a temporary sibling path first and renamed into place, which is atomic
on one file system. A directory cannot be replaced by one rename, so the old one is renamed
aside first, the new one renamed in, and only then is the old one deleted: at every instant
either the old or the new output exists under the target's name (or, after a crash between the
two renames, the old one exists aside and the next write puts it back).

A process killed mid-write (SIGKILL, OOM killer, a full disk) cannot clean up after itself, and
its temporary sibling holds customer data. So every write first removes the stale temporary
siblings of its target: those of processes that no longer run, and those of this process id
(in a container every run may get the same pid).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import StorageError

log = logging.getLogger(__name__)

# `.gitignore` ignores this pattern (`.*.tmp-*`); keep the two in step.
_TMP_INFIX = ".tmp-"
_ASIDE_SUFFIX = ".old"
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_SPACE_TEXT = ("no space left on device", "disk quota exceeded")


def is_no_space(err: OSError) -> bool:
    """Whether an error means the disk (or quota) is full; pyarrow reports it only in text."""
    return err.errno in _NO_SPACE_ERRNOS or any(t in str(err).lower() for t in _NO_SPACE_TEXT)


@contextmanager
def no_space_as_error(path: Path, what: str) -> Iterator[None]:
    """Turn a full disk while writing `what` to `path` into a `StorageError` naming both.

    A full disk is the user's to fix (free space, move the output) and deserves one clear
    line, not a pyarrow traceback.
    """
    try:
        yield
    except OSError as err:
        if not is_no_space(err):
            raise
        raise StorageError(
            f"could not write {what} to {path}: no space left on device ({err}); the previous "
            "output is unchanged. Free disk space (or move the output) and run again"
        ) from err


def _temporary_sibling(target: Path) -> Path:
    return target.with_name(f".{target.name}{_TMP_INFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _sibling_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(
        rf"^\.{re.escape(target.name)}{re.escape(_TMP_INFIX)}(\d+)-[0-9a-f]{{8}}"
        rf"({re.escape(_ASIDE_SUFFIX)})?$"
    )


def _process_is_running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, from an earlier process that had the same id (containers)
    if os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def clean_stale_siblings(target: Path) -> list[Path]:
    """Remove the temporary siblings of `target` left by killed writers; return them.

    If the target itself is missing and an old copy was renamed aside (a crash between the two
    renames of a directory swap), that copy is put back instead of removed.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = _sibling_pattern(target)
    stale: list[tuple[Path, bool]] = []
    with os.scandir(target.parent) as entries:
        for entry in entries:
            match = pattern.match(entry.name)
            if match and not _process_is_running(int(match.group(1))):
                stale.append((Path(entry.path), match.group(2) is not None))
    asides = sorted((p for p, aside in stale if aside), key=lambda p: p.lstat().st_mtime)
    if asides and not os.path.lexists(target):
        asides[-1].rename(target)
        log.warning("restored %s from %s (an earlier write was interrupted)", target, asides[-1])
    removed = []
    for path, _ in stale:
        if not os.path.lexists(path):
            continue
        try:
            _remove(path)
        except OSError as err:  # not worth failing the run; the next write tries again
            log.warning("could not remove stale temporary %s: %s", path, err)
            continue
        removed.append(path)
    if removed:
        log.warning("removed %d stale temporary copies of %s", len(removed), target)
    return removed


def _swap_in(tmp: Path, target: Path) -> None:
    """Put `tmp` in place of `target`, never leaving neither of them under `target`'s name."""
    replaces_dir = target.is_dir() and not target.is_symlink()
    if not (replaces_dir or (tmp.is_dir() and os.path.lexists(target))):
        os.replace(tmp, target)  # a file (or a new directory): one atomic rename
        return
    aside = target.with_name(_temporary_sibling(target).name + _ASIDE_SUFFIX)
    target.rename(aside)
    try:
        tmp.rename(target)
    except BaseException:
        aside.rename(target)
        raise
    try:
        _remove(aside)
    except OSError as err:  # the new output is in place; the next write removes the old one
        log.warning("could not remove the previous %s: %s", aside, err)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write a file or directory to; on success it replaces `target`.

    On an exception the temporary path is removed and `target` is left as it was; a full disk
    becomes a `StorageError` naming the target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_siblings(target)
    tmp = _temporary_sibling(target)
    try:
        with no_space_as_error(target, "the output"):
            yield tmp
            _swap_in(tmp, target)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            tmp.unlink()


def write_table(
    frame: pd.DataFrame,
    path: Path,
    schema: pa.Schema | None = None,
    *,
    metadata: dict[bytes, bytes] | None = None,
) -> None:
    """Write a frame as Parquet (typed by `schema` when given) atomically; `metadata` joins the
    file's key-value metadata (what the table was built with travels with it)."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=False)


def write_json(payload: object, path: Path) -> None:
    """Write JSON atomically, with sorted keys so the file is stable for DVC and diffs."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
