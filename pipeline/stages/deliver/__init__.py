"""Delivery stage: each CSM receives their own weekly list, and only theirs.

The lists stage writes `reports/lists/<as-of>/manifest.json` with one entry per CSM naming that
CSM's CSV and HTML files. Delivery turns each entry into one message on a channel (email: HTML
body, CSV attached, over SMTP, or `.eml` files for a dry run; webhook: a Slack-compatible JSON
message with the top accounts, or `.json` files for a dry run) and records every CSM's outcome
in `reports/deliveries/<as-of>/delivery.json` (`delivery.<channel>.json` for other channels).
Each send is journalled before and after it (`reports/deliveries/<as-of>/journal.jsonl`), so
a rerun after any crash or kill sends every unsent list once and no sent list again.

The modules, one job each:
- `channel`: the interface a channel implements (`Channel`, `Transport`, `Message`).
- `list_files`: reading one CSM's list files so they can only hold that CSM's accounts.
- `headers`: header-injection guards (control characters, one strict address).
- `settings`: the email sender and SMTP settings, checked before anything is sent.
- `email`: the email channel: deterministic MIME messages, SMTP and outbox transports.
- `webhook`: the webhook (Slack) channel: escaped JSON payloads, an HTTP transport with bounded
  retries, and the outbox transport.
- `journal`: the durable per-message journal that keeps a rerun from sending a list twice, and
  the lock that keeps two runs of one week apart.
- `log`: the summary delivery log of a run, per CSM.
- `registry`: channel names and how each is built from the settings.
- `run`: the run over every CSM, and `run_deliver`, the stage's entry point.
"""

from __future__ import annotations

from pipeline.stages.deliver.log import CsmDelivery
from pipeline.stages.deliver.run import DeliveryResult, run_deliver

__all__ = ["CsmDelivery", "DeliveryResult", "run_deliver"]
