"""A dry check of a data source against the contract, before anything is ingested.

`churn check` calls this after the config parsed: it opens the configured source, finds the
contract tables (after `ingest.table_map`), and reads a few rows of each to see that the
required columns are there (after `ingest.column_map`). It reads no more than a sample, so it
answers in seconds on a large export; row-level rules are ingest's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.config import Config
from pipeline.data.contract import TABLE_ORDER, TABLES
from pipeline.data.sources import configured_source, redact

SAMPLE_ROWS = 100


@dataclass
class SourceFindings:
    """What the check saw: tables found or absent, columns missing, and the problems."""

    description: str
    tables: dict[str, str] = field(default_factory=dict)  # table -> "ok" / "absent" / problem
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{name:<16} {status}" for name, status in self.tables.items()]


def check_source(config: Config, *, source: str | None = None) -> SourceFindings:
    """Tables and required columns of the configured source (or `source`)."""
    cfg = config.ingest
    src = configured_source(cfg, location=source)
    findings = SourceFindings(description=redact(src.description))
    present = src.tables()
    for name in TABLE_ORDER:
        spec = TABLES[name]
        if name not in present:
            status = "absent (required)" if spec.required else "absent (optional: family off)"
            findings.tables[name] = status
            if spec.required:
                findings.problems.append(
                    f"required table {name} not found in {findings.description}; map your own "
                    "table name with ingest.table_map"
                )
            continue
        sample = next(iter(src.iter_batches(name, SAMPLE_ROWS)), None)
        columns = set(sample.columns) if sample is not None else set()
        derivable = {"segment"} if name == "accounts" and cfg.segment_tiers else set()
        missing = [
            c.name
            for c in spec.columns
            if c.required and c.name not in columns and c.name not in derivable
        ]
        if missing:
            findings.tables[name] = f"missing columns {missing}"
            findings.problems.append(
                f"table {name} lacks required columns {missing} (it has {sorted(columns)}); "
                f"map your names with ingest.column_map.{name}"
            )
        else:
            rows = 0 if sample is None else len(sample)
            findings.tables[name] = f"ok ({rows}{'+' if rows == SAMPLE_ROWS else ''} rows seen)"
    return findings
