"""One CSM's list files, read so that a CSM can only ever receive their own accounts.

Every channel reads a CSM's CSV and HTML through `read_csm_list`, which is where the ownership
guarantees live: the paths must stay inside the as-of directory (no `..`, no absolute paths, no
symlinks out), the files must be UTF-8, a CSV with a `csm_id` column must hold only that CSM's
rows, and the row count must agree with the manifest.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.core.errors import DeliveryError
from pipeline.lists.manifest import CsmEntry


@dataclass(frozen=True)
class CsmListFiles:
    """The content of one CSM's list: the CSV as written, the HTML page, the ranked names."""

    csv_bytes: bytes
    html: str
    account_names: list[str]


def list_file(lists_dir: Path, relative: str, *, csm_id: str, kind: str) -> Path:
    """Resolve one of a CSM's files, refusing anything outside the as-of directory."""
    owner = f"CSM {csm_id!r}"
    pure = PurePosixPath(relative)
    if not relative or "\\" in relative or pure.is_absolute() or ".." in pure.parts:
        raise DeliveryError(f"{owner}: {kind} path {relative!r} must be relative, inside the lists")
    root = Path(lists_dir).resolve()
    path = (root / pure).resolve()
    if not path.is_relative_to(root):
        raise DeliveryError(f"{owner}: {kind} path {relative!r} leads outside {root}")
    if not path.is_file():
        raise DeliveryError(f"{owner}: {kind} list {path} not found")
    return path


def csv_rows(csv_text: str) -> list[dict[str, str]]:
    """The rows of a list CSV (leading '#' comment lines skipped), for the ownership check."""
    lines = csv_text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return list(csv.DictReader(io.StringIO("".join(lines))))


def check_list_rows(rows: list[dict[str, str]], entry: CsmEntry) -> None:
    """Refuse a CSV that holds another CSM's accounts or disagrees with the manifest's count."""
    if rows and "csm_id" in rows[0]:
        foreign = sorted({row["csm_id"] for row in rows} - {entry.csm_id})
        if foreign:
            raise DeliveryError(
                f"CSM {entry.csm_id!r}: list CSV holds rows of other CSMs {foreign[:5]}"
            )
    # Watch rows (section "watch", below the action floor) are not among the n_accounts.
    action = [row for row in rows if row.get("section", "action") != "watch"]
    if rows and "account_id" in rows[0] and len(action) != entry.n_accounts:
        raise DeliveryError(
            f"CSM {entry.csm_id!r}: manifest says {entry.n_accounts} accounts, the list CSV holds "
            f"{len(action)}"
        )


def plain_cell(value: str) -> str:
    """A CSV cell for plain text: drop the apostrophe that defuses a spreadsheet formula."""
    if len(value) > 1 and value[0] == "'" and value[1] in "=+-@\t\r":
        return value[1:]
    return value


def read_csm_list(lists_dir: Path, entry: CsmEntry) -> CsmListFiles:
    """Read one CSM's CSV and HTML (only theirs) and check that they hold only their accounts."""
    csv_path = list_file(lists_dir, entry.csv, csm_id=entry.csm_id, kind="csv")
    html_path = list_file(lists_dir, entry.html, csm_id=entry.csm_id, kind="html")
    csv_bytes = csv_path.read_bytes()
    try:
        html = html_path.read_text(encoding="utf-8")
        rows = csv_rows(csv_bytes.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise DeliveryError(f"CSM {entry.csm_id!r}: list file is not UTF-8: {err}") from err
    check_list_rows(rows, entry)
    action = [row for row in rows if row.get("section", "action") != "watch"]
    names = [plain_cell(row.get("account_name") or row.get("account_id") or "") for row in action]
    return CsmListFiles(csv_bytes=csv_bytes, html=html, account_names=[n for n in names if n])
