"""Content hashes as DVC computes them, so an output can name the exact data it came from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def file_md5(path: Path) -> str:
    """MD5 of a file, the hash DVC records for it in dvc.lock."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dvc_dir_hash(directory: Path) -> str:
    """The hash DVC records for a directory output (`<md5>.dir` in dvc.lock).

    DVC hashes the JSON list of {md5, relpath} of every file, sorted by path; computing it the
    same way lets a list name the exact validated data it was scored on.
    """
    directory = Path(directory)
    entries = sorted(
        (
            {"md5": file_md5(p), "relpath": p.relative_to(directory).as_posix()}
            for p in directory.rglob("*")
            if p.is_file()
        ),
        key=lambda e: e["relpath"],
    )
    payload = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(payload).hexdigest() + ".dir"
