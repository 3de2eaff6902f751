"""The lists manifest: the typed index of one week's lists, written and read only here.

`reports/lists/<as-of>/manifest.json` is written by the score stage and read by delivery (which
CSM gets which files), the leadership report (stamps, warnings, portfolio figures) and the
weekly job. Declaring it once as a schema means a reader cannot silently depend on a key the
writer dropped, and a manifest from elsewhere (hand-edited, truncated) fails with a message
that names the key, before anything is sent.

The JSON keeps the field order declared here, so the same manifest gives the same bytes.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.core.errors import ChurnError
from pipeline.core.layout import MANIFEST_FILE


class ManifestError(ChurnError):
    """A lists manifest is missing, not JSON, or does not match the schema."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsmEntry(_Model):
    """One CSM's line: who they are and which files hold their list."""

    csm_id: str = Field(min_length=1)
    csm_name: str
    csm_email: str | None = None
    csv: str
    html: str
    n_accounts: int = Field(ge=0, strict=True)
    n_owned: int = Field(default=0, ge=0, strict=True)
    arr_at_risk_listed: float = 0.0
    n_watch: int = Field(default=0, ge=0, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("csm_name") and data.get("csm_id"):
            data = {**data, "csm_name": data["csm_id"]}
        if isinstance(data, dict) and data.get("csm_email") == "":
            data = {**data, "csm_email": None}
        return data


class UnassignedList(_Model):
    """Accounts with no known CSM: one list for whoever assigns the book (CS operations).

    `by_reason` counts the whole unassigned book: `no_csm` (the export names none) and
    `unknown_csm` (it names a CSM the csms table does not have).
    """

    csv: str
    html: str
    n_accounts: int = Field(ge=0, strict=True)
    n_owned: int = Field(ge=0, strict=True)
    arr_at_risk_listed: float = 0.0
    by_reason: dict[str, int] = Field(default_factory=dict)
    n_watch: int = Field(default=0, ge=0, strict=True)


class DriftEntry(_Model):
    feature: str
    psi: float | None
    importance_rank: int


class ListFiles(_Model):
    accounts: str = "accounts.parquet"
    shap: str = "shap.parquet"
    features: str = "features.parquet"
    trend: str = "trend.csv"


class UrgencyRule(_Model):
    """score.urgency as applied: weight 1 within horizon_days, decaying to floor."""

    enabled: bool
    horizon_days: int = Field(ge=0)
    half_life_days: int = Field(ge=1)
    floor: float = Field(gt=0, le=1)


class RankingRule(_Model):
    """How this week's lists were ranked (pipeline.lists.ranking), so a page can state the
    rule and a reader can check a list against it: accounts at or above floor_probability
    (the action_floor band), by `order_by` (priority = rank_by x urgency weight), cut at
    capacity_per_csm; up to watch_per_csm below the floor on watch. `summary` is the rule in
    one plain sentence."""

    rank_by: str
    order_by: str = "priority"
    action_floor: str
    floor_probability: float = Field(ge=0, le=1)
    urgency: UrgencyRule
    capacity_per_csm: int = Field(ge=1)
    watch_per_csm: int = Field(ge=0)
    watch_change_threshold: float
    watch_renewal_window_days: int
    summary: str


class RiskBandLimits(_Model):
    high: float
    medium: float


class RiskBandCounts(_Model):
    high: int
    medium: int
    low: int


class ListsManifest(_Model):
    """The lists of one as-of date, stamped with the model and data versions."""

    as_of: date
    model_version: str
    model_source: str
    data_version: str
    rank_by: str
    capacity_per_csm: int
    base_value: float
    # Each warning has at least `kind` and `message`; the rest depends on the kind.
    warnings: tuple[dict[str, Any], ...] = ()
    csms: tuple[CsmEntry, ...]
    n_accounts: int
    n_listed: int
    n_unassigned: int
    # Absent in manifests written before the watch section and the ranking rule existed.
    n_watch: int = 0
    ranking: RankingRule | None = None
    unassigned: UnassignedList | None = None
    arr_total: float
    expected_arr_at_risk: float
    risk_bands: RiskBandLimits
    risk_band_counts: RiskBandCounts
    previous_week: date
    trend_weeks: int
    shap_method: str
    additivity_max_error: float
    drift_checked: bool
    drift: tuple[DriftEntry, ...] = ()
    files: ListFiles = Field(default_factory=ListFiles)

    @model_validator(mode="after")
    def _one_owner_per_file(self) -> ListsManifest:
        """No two CSMs share an id or a file: a shared file would send one CSM another's list."""
        seen_ids: set[str] = set()
        seen_files: dict[str, str] = {}
        for entry in self.csms:
            if entry.csm_id in seen_ids:
                raise ValueError(f"manifest lists CSM {entry.csm_id!r} twice")
            seen_ids.add(entry.csm_id)
            for relative in (entry.csv, entry.html):
                key = os.path.normpath(relative)
                if key in seen_files:
                    raise ValueError(
                        f"manifest gives CSMs {seen_files[key]!r} and {entry.csm_id!r} the same "
                        f"file {relative!r}: refusing to send one CSM's list to another"
                    )
                seen_files[key] = entry.csm_id
        for warning in self.warnings:
            if not {"kind", "message"} <= set(warning):
                raise ValueError(f"manifest warning without kind and message: {warning!r}")
        return self


def _describe(err: ValidationError, payload: dict) -> str:
    """Each problem with its key path; an entry of `csms` also names its CSM."""
    parts = []
    csms = payload.get("csms") if isinstance(payload.get("csms"), list) else []
    for e in err.errors():
        loc = e["loc"]
        where = ".".join(str(p) for p in loc) or "manifest"
        if len(loc) >= 2 and loc[0] == "csms" and isinstance(loc[1], int) and loc[1] < len(csms):
            entry = csms[loc[1]]
            if isinstance(entry, dict) and entry.get("csm_id"):
                where += f" (CSM {entry['csm_id']!r})"
        got = "" if isinstance(e.get("input"), dict | list) else f", got {e.get('input')!r}"
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(parts)


def parse_manifest(payload: object) -> ListsManifest:
    """A typed manifest from parsed JSON, or a ManifestError naming the bad keys."""
    if not isinstance(payload, dict):
        raise ManifestError("manifest is not a JSON object")
    try:
        return ListsManifest.model_validate(payload)
    except ValidationError as err:
        problems = _describe(err, payload)
        raise ManifestError(f"manifest does not match the lists schema: {problems}") from None


def manifest_bytes(manifest: ListsManifest) -> bytes:
    """The manifest as stable JSON bytes (field order as declared, two-space indent)."""
    return (json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n").encode("utf-8")


def read_manifest(lists_dir: Path) -> ListsManifest:
    """The manifest of one week's lists directory."""
    path = Path(lists_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(
            f"{path} not found: run `churn score` (the lists stage) first, or pass --lists"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path} is not valid JSON: {err}") from err
    try:
        return parse_manifest(payload)
    except ManifestError as err:
        raise ManifestError(f"{path}: {err}") from None
