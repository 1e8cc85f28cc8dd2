"""Prometheus collectors exported by the finops service (port 9104 by default)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BILLING_EVENTS = Counter(
    "inventiv_finops_billing_events_total",
    "Billing events seen by the billing projection, by type and outcome (applied / ignored duplicate).",
    ["type", "outcome"],
)
EVENTS_SKIPPED = Counter(
    "inventiv_finops_messages_skipped_total",
    "Stream messages a FinOps projection could not decode (skipped, never retried).",
    ["projection"],
)
INVALID_PRICES = Counter(
    "inventiv_finops_invalid_prices_total",
    "billing_started events with a negative or non-finite price (billed as zero).",
)
USAGE_RECORDS = Counter(
    "inventiv_finops_usage_records_total",
    "Usage records seen by the usage projection, by outcome (applied / duplicate).",
    ["outcome"],
)
TOKENS = Counter(
    "inventiv_finops_tokens_total",
    "Tokens folded into usage totals, by kind (prompt / completion).",
    ["kind"],
)
CLOSER_RUNS = Counter(
    "inventiv_finops_minute_closer_runs_total",
    "Minute closer passes, by outcome (ok / error).",
    ["outcome"],
)
MINUTE_ROWS = Counter(
    "inventiv_finops_minute_rows_written_total",
    "Per-minute cost rows written (upserts), by writer (closer / projection).",
    ["writer"],
)
COST_CLOSED = Counter(
    "inventiv_finops_cost_closed_eur_total",
    "EUR of billing intervals closed by this process (a replay counts them again).",
)
BURN_RATE = Gauge(
    "inventiv_finops_burn_rate_eur_per_hour",
    "Sum of hourly prices of every open billing interval, all organisations, at the last closer pass.",
)
OPEN_INTERVALS = Gauge(
    "inventiv_finops_open_intervals",
    "Open billing intervals at the last closer pass.",
)
LAST_CLOSED_MINUTE = Gauge(
    "inventiv_finops_last_closed_minute_timestamp_seconds",
    "Start of the most recent minute the closer has written, as a Unix timestamp.",
)
