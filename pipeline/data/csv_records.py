"""Reading CSV exports record by record, counting every physical line.

`pd.read_csv` lets one unbalanced quote swallow the rows after it into a single field, and the
rows vanish before anyone counts them. This reader decodes lines in the configured encoding,
parses records with the csv module, and when a record spans lines suspiciously (wrong width, a
field over `max_text_chars`, a continuation line that holds a whole record) it splits it back
into one flagged row per line (`_parse_error`), so validation quarantines them and rows read
still equals the lines in the file. Clean batches of one-line records take a fast path.
"""

from __future__ import annotations

import codecs
import csv
import gc
import gzip
import itertools
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from pipeline.core.errors import DataContractError, SourceError
from pipeline.data.contract import PARSE_ERROR

_BLOCK_BYTES = 1 << 20
UNBALANCED_QUOTE = "unbalanced_quote"
RAGGED_ROW = "ragged_row"
FIELD_TOO_LONG = "field_too_long"


class _Lines:
    """The decoded physical lines of a CSV file, in blocks, for `csv.reader`.

    Decoding here, block by block, rather than in `open()`, lets a bad byte be reported by its
    offset and line. The blocks stay available (`between`) until `release`, so the caller can
    look at exactly the physical lines behind the records it parsed; the csv module itself
    pulls lines through C (`itertools.chain`), which keeps the common case fast.
    """

    def __init__(self, raw: BinaryIO, encoding: str, table: str, path: Path) -> None:
        self._raw = raw
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._table = table
        self._path = path
        self._bytes = 0
        self._lines_decoded = 0
        # (index of the block's first line, its lines, its longest line), oldest first
        self._kept: list[tuple[int, list[str], int]] = []

    def stream(self) -> Iterator[str]:
        """Every physical line, each ending in its newline (the last one may not)."""
        return itertools.chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[list[str]]:
        tail = ""
        while True:
            try:
                block = self._raw.read(_BLOCK_BYTES)
            except (OSError, EOFError, zlib.error) as err:  # a truncated or corrupt .gz
                raise SourceError(
                    f"table '{self._table}': file {self._path} cannot be read after byte "
                    f"{self._bytes} ({err}); export it again"
                ) from err
            buffered = self._decoder.getstate()[0]
            try:
                text = tail + self._decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                raise self._decode_error(buffered + block, len(buffered), err) from err
            self._bytes += len(block)
            if block:
                pieces = text.split("\n")
                tail = pieces.pop()
                lines = [piece + "\n" for piece in pieces]
            else:
                lines = [text] if text else []
            if lines:
                longest = max(map(len, lines))
                self._kept.append((self._lines_decoded, lines, longest))
                self._lines_decoded += len(lines)
                yield lines
            if not block:
                return

    def between(self, start: int, end: int) -> list[str]:
        """Physical lines `start` (0-based) up to `end`, from the blocks still kept."""
        out: list[str] = []
        for first, lines, _ in self._kept:
            if first + len(lines) > start and first < end:
                out.extend(lines[max(0, start - first) : end - first])
        return out

    def longest_between(self, start: int, end: int) -> int:
        """An upper bound on the length of lines `start` to `end` (their blocks' longest)."""
        return max(
            (n for first, lines, n in self._kept if first + len(lines) > start and first < end),
            default=0,
        )

    def release(self, end: int) -> None:
        """Forget the blocks that hold only lines before `end`."""
        self._kept = [k for k in self._kept if k[0] + len(k[1]) > end]

    def _decode_error(self, data: bytes, buffered: int, err: UnicodeDecodeError) -> SourceError:
        # `data` is the decoder's carried-over bytes (already counted) plus the new block.
        offset = self._bytes - buffered + err.start
        before = data[: err.start].decode(self._encoding, errors="replace")
        line = self._lines_decoded + 1 + before.count("\n")
        snippet = data[max(0, err.start - 30) : err.end + 10]
        return SourceError(
            f"table '{self._table}': file {self._path} is not valid {self._encoding} text at "
            f"byte {offset} (line {line}, near {snippet!r}); set ingest.encoding in params.yaml "
            "to the encoding the export was written in, e.g. cp1252 (Excel on Windows) or "
            "latin-1"
        )


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def read_csv_records(
    path: Path,
    table: str,
    *,
    encoding: str,
    max_text_chars: int,
    batch_rows: int | None,
) -> Iterator[pd.DataFrame]:
    """A CSV file as text frames of at most `batch_rows` rows, one row per record of the file.

    Records are parsed in batches by the csv module (fast path); a batch is re-parsed record by
    record (`_exact_records`) only when its records did not map one to one onto physical lines
    (a quoted newline, or a broken quote) or the parser gave up on a record. Every physical
    line ends up in exactly one row (blank lines in none), so rows cannot vanish before they
    are counted; broken ones carry a reason in `PARSE_ERROR` for validation to quarantine.
    """
    with _open_binary(path) as raw:
        lines = _Lines(raw, encoding, table, path)
        reader = csv.reader(lines.stream())
        header = _header(reader, table, path)
        width = len(header)
        batch = batch_rows or 100_000
        rows: list[list[str]] = []
        reasons: list[str | None] = []
        produced = False
        finished = False
        while not finished:
            start = reader.line_num
            try:
                parsed = _parse_batch(reader, batch)
                finished = len(parsed) < batch
            except csv.Error as err:
                _raise_if_line_endings(err, table, path, reader.line_num)
                parsed = None  # the parser gave up inside this batch: redo it exactly
            end = reader.line_num
            if parsed is not None and len(parsed) == end - start:  # one line per record
                if lines.longest_between(start, end) <= max_text_chars and all(
                    len(fields) == width for fields in parsed
                ):
                    rows.extend(parsed)
                    reasons.extend([None] * len(parsed))
                else:
                    consumed = lines.between(start, end)
                    _single_line_records(parsed, consumed, width, max_text_chars, rows, reasons)
            else:
                _exact_records(lines.between(start, end), width, max_text_chars, rows, reasons)
            lines.release(end)
            # A broken quote re-split into its lines can give more rows than records parsed.
            while batch_rows is not None and len(rows) >= batch_rows:
                yield _frame(rows[:batch_rows], reasons[:batch_rows], header)
                produced = True
                rows, reasons = rows[batch_rows:], reasons[batch_rows:]
        if rows or not produced:
            yield _frame(rows, reasons, header)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while millions of row lists are made.

    Otherwise it rescans them again and again (most of the time of a CSV read); rows hold no
    reference cycles, so nothing is left uncollected. The previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_batch(reader, batch: int) -> list[list[str]]:
    with _gc_paused():
        return list(itertools.islice(reader, batch))


def _header(reader, table: str, path: Path) -> list[str]:
    """The header record; a header that spans lines means the file cannot be trusted at all."""
    header: list[str] | None = []
    broken = False
    while header == []:  # blank lines before the header
        start = reader.line_num
        try:
            header = next(reader, None)
        except csv.Error as err:
            _raise_if_line_endings(err, table, path, reader.line_num)
            header, broken = None, True
    if header is None and not broken:
        raise DataContractError(table, None, f"file {path} has no header row (only blank lines)")
    if broken or reader.line_num - start > 1:
        raise DataContractError(
            table,
            None,
            f"file {path}: the header row (line {start + 1}) has an unbalanced quote, so no "
            "record of the file can be located; fix the header's quoting and export again",
        )
    if header and header[0].startswith("\ufeff"):  # Excel's UTF-8 byte order mark
        header[0] = header[0][1:]
    header = [name or f"Unnamed: {i}" for i, name in enumerate(header)]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataContractError(
            table,
            repeated[0],
            f"file {path}: the header names column{'s' if len(repeated) > 1 else ''} "
            f"{', '.join(repeated)} more than once; rename so each column is named once",
        )
    return header


def _raise_if_line_endings(err: csv.Error, table: str, path: Path, line: int) -> None:
    if "new-line character" in str(err):
        raise SourceError(
            f"table '{table}': file {path} (near line {line}) ends its lines with a bare carriage "
            "return (old Mac format); export it again with ordinary line endings (LF or CRLF)"
        ) from err


def _single_line_records(
    parsed: list[list[str]],
    consumed: list[str],
    width: int,
    max_text_chars: int,
    rows: list[list[str]],
    reasons: list[str | None],
) -> None:
    """Records that are one physical line each: flag ragged rows and runaway fields."""
    for fields, line in zip(parsed, consumed, strict=True):
        if not fields:
            continue  # a blank line is not a record
        if len(fields) != width:
            rows.append(_fit(fields, width))
            reasons.append(RAGGED_ROW)
        else:
            rows.append(fields)
            too_long = len(line) > max_text_chars and max(map(len, fields)) > max_text_chars
            reasons.append(FIELD_TOO_LONG if too_long else None)


def _exact_records(
    consumed: list[str],
    width: int,
    max_text_chars: int,
    rows: list[list[str]],
    reasons: list[str | None],
) -> None:
    """Parse `consumed` one record at a time, knowing the physical lines of each.

    A record over several lines is a legitimately quoted newline unless it looks like several
    records swallowed by an unbalanced quote: it has the wrong number of fields, a field longer
    than `max_text_chars`, or a continuation line that by itself has a whole record's worth of
    delimiters. Then every one of its physical lines becomes its own flagged row.
    """
    source = _ListLines(consumed)
    reader = csv.reader(source)
    while True:
        try:
            fields = next(reader, None)
        except csv.Error:  # a field past the csv module's limit: a quote ran away
            span = source.collect()
            _flag_lines(
                span, width, UNBALANCED_QUOTE if len(span) > 1 else FIELD_TOO_LONG, rows, reasons
            )
            continue
        span = source.collect()
        if fields is None:
            return
        if len(span) == 1:
            _single_line_records([fields], span, width, max_text_chars, rows, reasons)
        elif _looks_merged(fields, span, width, max_text_chars):
            _flag_lines(span, width, UNBALANCED_QUOTE, rows, reasons)
        else:
            _single_line_records([fields], ["".join(span)], width, max_text_chars, rows, reasons)


def _looks_merged(fields: list[str], span: list[str], width: int, max_text_chars: int) -> bool:
    if len(fields) != width or max(map(len, fields)) > max_text_chars:
        return True
    return width > 1 and any(line.count(",") >= width - 1 for line in span[1:])


def _flag_lines(
    span: list[str],
    width: int,
    reason: str,
    rows: list[list[str]],
    reasons: list[str | None],
) -> None:
    """One flagged row per non-blank physical line, fields split without quoting, so a person
    can find each line of the export in the quarantine."""
    for line in span:
        if not line.strip():
            continue
        fields = next(csv.reader([line], quoting=csv.QUOTE_NONE), [])
        rows.append(_fit(fields, width))
        reasons.append(reason)


def _fit(fields: list[str], width: int) -> list[str]:
    """A record padded or cut to the header's width; the row is flagged, so no value shifts
    into a column where validation would accept it."""
    if len(fields) >= width:
        return fields[:width]
    return fields + [""] * (width - len(fields))


class _ListLines:
    """Lines from a list, remembering which ones the csv module took for each record."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = iter(lines)
        self.taken: list[str] = []

    def __iter__(self) -> _ListLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line

    def collect(self) -> list[str]:
        taken, self.taken = self.taken, []
        return taken


def _frame(rows: list[list[str]], reasons: list[str | None], header: list[str]) -> pd.DataFrame:
    """Rows as a frame of text; empty fields are missing, as the contract's parsers expect."""
    with _gc_paused():
        frame = pd.DataFrame(rows, columns=header, dtype=str)
    frame = frame.mask(frame == "")
    if any(reason is not None for reason in reasons):
        frame[PARSE_ERROR] = pd.Series(reasons, index=frame.index, dtype="string")
    return frame
