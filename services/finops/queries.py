"""FinOps read queries: the functions behind ``/finops/*`` (and the web UI).

Every function takes ``org_id``: the caller's organisation, or ``None`` for every organisation
(global admins only; the API decides who may pass ``None``). Costs are computed from the
billing intervals with the same pure functions the projection uses (``costing``), so a
window ending "now" includes the running minute exactly; token windows read whole days and
minutes from the totals tables and the ragged edges from raw records (``usage.window_plan``).
Money in the returned Structs is a fixed-point string (``money.format_eur``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Hashable

import asyncpg
import msgspec

from . import store
from .costing import WINDOWS, CostTotals, by_instance, by_model, by_org, floor_minute, forecast
from .metering import BillingInterval
from .money import ZERO, format_eur
from .usage import NO_API_KEY, TokenTotals, window_plan

DEFAULT_SCHEMA = store.DEFAULT_SCHEMA
_NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- response shapes ----------------------------------------------------------------------


class SpendWindows(msgspec.Struct, frozen=True, kw_only=True):
    """EUR spent in the window ending now: last 60 s, 60 min, 24 h, 30 days."""

    minute: str
    hour: str
    day: str
    month_30d: str


class CurrentCost(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str | None
    as_of: datetime
    running_instances: int
    burn_rate_eur_per_hour: str
    forecast_eur_per_minute: str
    forecast_eur_per_hour: str
    forecast_eur_per_day: str
    forecast_eur_per_month_30d: str
    forecast_eur_per_year_365d: str
    cumulative_amount_eur: str


class InstanceCost(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: str
    org_id: str
    model_name: str
    provider_code: str
    instance_type_code: str
    is_running: bool
    burn_rate_eur_per_hour: str
    cumulative_amount_eur: str
    spend_eur: SpendWindows


class ModelCost(msgspec.Struct, frozen=True, kw_only=True):
    model_name: str
    running_instances: int
    burn_rate_eur_per_hour: str
    cumulative_amount_eur: str
    spend_eur: SpendWindows


class OrgCost(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    running_instances: int
    burn_rate_eur_per_hour: str
    cumulative_amount_eur: str
    spend_eur: SpendWindows


class TokenCounts(msgspec.Struct, frozen=True, kw_only=True):
    requests: int
    error_requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TokenWindows(msgspec.Struct, frozen=True, kw_only=True):
    minute: TokenCounts
    hour: TokenCounts
    day: TokenCounts
    month_30d: TokenCounts


class ApiKeyTokens(msgspec.Struct, frozen=True, kw_only=True):
    api_key_id: str | None  # None: requests made without an API key (UI sessions)
    tokens: TokenWindows
    to_date: TokenCounts


class ModelTokens(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    tokens: TokenWindows
    to_date: TokenCounts


class CostSummary(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str | None
    as_of: datetime
    running_instances: int
    burn_rate_eur_per_hour: str
    forecast_eur_per_minute: str
    forecast_eur_per_hour: str
    forecast_eur_per_day: str
    forecast_eur_per_month_30d: str
    forecast_eur_per_year_365d: str
    cumulative_amount_eur: str
    spend_eur: SpendWindows
    by_instance: list[InstanceCost]
    by_model: list[ModelCost]
    by_org: list[OrgCost]
    tokens_by_api_key: list[ApiKeyTokens]
    tokens_by_model: list[ModelTokens]


class MinuteCost(msgspec.Struct, frozen=True, kw_only=True):
    bucket_minute: datetime
    amount_eur: str


class ActualMinuteSeries(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str | None
    instance_id: str | None
    from_minute: datetime
    to_minute: datetime  # exclusive: the running minute is not complete
    points: list[MinuteCost]


# --- loading ------------------------------------------------------------------------------


def _org_clause(org_id: str | None, column: str = "org_id", param: int = 1) -> str:
    return f"{column} = ${param}" if org_id is not None else f"${param}::text IS NULL"


@dataclass(frozen=True, slots=True)
class CostBasis:
    """What cost queries need: intervals that may touch a window or still run, plus the cost of
    older closed intervals summed per instance (they only add to the cost to date)."""

    intervals: list[BillingInterval]
    settled: list[tuple[BillingInterval, Decimal]]  # (labels of an instance, its settled amount)


async def load_cost_basis(conn: asyncpg.Connection, *, org_id: str | None, now: datetime,
                          schema: str = DEFAULT_SCHEMA) -> CostBasis:
    store.checked_schema(schema)
    horizon = now - max(WINDOWS.values())
    rows = await conn.fetch(
        f"""SELECT {store.INTERVAL_COLUMNS} FROM {schema}.billing_intervals
            WHERE {_org_clause(org_id)} AND started_at <= $2 AND (stopped_at IS NULL OR stopped_at > $3)
            ORDER BY instance_id, started_at""",
        org_id, now, horizon,
    )
    settled_rows = await conn.fetch(
        f"""SELECT instance_id, org_id, model_name, provider_code, instance_type_code,
                   min(started_at) AS started_at, sum(amount_eur) AS amount_eur
            FROM {schema}.billing_intervals
            WHERE {_org_clause(org_id)} AND stopped_at IS NOT NULL AND stopped_at <= $2
            GROUP BY instance_id, org_id, model_name, provider_code, instance_type_code""",
        org_id, horizon,
    )
    settled = [
        (
            BillingInterval(
                instance_id=r["instance_id"], org_id=r["org_id"], model_name=r["model_name"],
                provider_code=r["provider_code"], instance_type_code=r["instance_type_code"],
                hourly_price_eur=ZERO, started_at=r["started_at"], stopped_at=r["started_at"],
            ),
            r["amount_eur"] or ZERO,
        )
        for r in settled_rows
    ]
    return CostBasis([store.interval_from_row(r) for r in rows], settled)


def _group(basis: CostBasis, now: datetime, key) -> dict[Hashable, CostTotals]:
    out: dict[Hashable, CostTotals] = {}
    for iv in basis.intervals:
        out.setdefault(key(iv), CostTotals()).add_interval(iv, now)
    for labels, amount in basis.settled:
        out.setdefault(key(labels), CostTotals()).add_settled(amount)
    return out


def _total(basis: CostBasis, now: datetime) -> CostTotals:
    return _group(basis, now, lambda iv: None).get(None, CostTotals())


def _spend(t: CostTotals) -> SpendWindows:
    return SpendWindows(**{name: format_eur(t.spend_eur.get(name, ZERO)) for name in WINDOWS})


# --- cost queries -------------------------------------------------------------------------


async def current_cost(conn: asyncpg.Connection, *, org_id: str | None, now: datetime,
                       schema: str = DEFAULT_SCHEMA) -> CurrentCost:
    """Burn rate now, its forecasts, and the cost to date (``GET /finops/cost/current``)."""
    basis = await load_cost_basis(conn, org_id=org_id, now=now, schema=schema)
    total = _total(basis, now)
    f = forecast(total.burn_rate_eur_per_hour)
    return CurrentCost(
        org_id=org_id,
        as_of=now,
        running_instances=total.running_instances,
        burn_rate_eur_per_hour=format_eur(f.burn_rate_eur_per_hour),
        forecast_eur_per_minute=format_eur(f.forecast_eur_per_minute),
        forecast_eur_per_hour=format_eur(f.forecast_eur_per_hour),
        forecast_eur_per_day=format_eur(f.forecast_eur_per_day),
        forecast_eur_per_month_30d=format_eur(f.forecast_eur_per_month_30d),
        forecast_eur_per_year_365d=format_eur(f.forecast_eur_per_year_365d),
        cumulative_amount_eur=format_eur(total.cumulative_amount_eur),
    )


def _cost_sort_key(t: CostTotals, name: str):
    return (-t.burn_rate_eur_per_hour, -t.cumulative_amount_eur, name)


async def costs_summary(conn: asyncpg.Connection, *, org_id: str | None, now: datetime,
                        limit_instances: int = 50, schema: str = DEFAULT_SCHEMA) -> CostSummary:
    """Everything the FinOps dashboard shows (``GET /finops/dashboard/costs/summary``)."""
    basis = await load_cost_basis(conn, org_id=org_id, now=now, schema=schema)
    total = _total(basis, now)
    f = forecast(total.burn_rate_eur_per_hour)

    labels: dict[str, BillingInterval] = {}
    for iv in basis.intervals:
        labels[iv.instance_id] = iv  # the latest interval's labels (rows come oldest first)
    for iv, _ in basis.settled:
        labels.setdefault(iv.instance_id, iv)
    instances = _group(basis, now, by_instance)
    instance_rows = sorted(instances.items(), key=lambda kv: _cost_sort_key(kv[1], kv[0]))[: max(0, limit_instances)]
    models = _group(basis, now, by_model)
    orgs = _group(basis, now, by_org)
    tokens_key, tokens_model = await token_summary(conn, org_id=org_id, now=now, schema=schema)
    return CostSummary(
        org_id=org_id,
        as_of=now,
        running_instances=total.running_instances,
        burn_rate_eur_per_hour=format_eur(f.burn_rate_eur_per_hour),
        forecast_eur_per_minute=format_eur(f.forecast_eur_per_minute),
        forecast_eur_per_hour=format_eur(f.forecast_eur_per_hour),
        forecast_eur_per_day=format_eur(f.forecast_eur_per_day),
        forecast_eur_per_month_30d=format_eur(f.forecast_eur_per_month_30d),
        forecast_eur_per_year_365d=format_eur(f.forecast_eur_per_year_365d),
        cumulative_amount_eur=format_eur(total.cumulative_amount_eur),
        spend_eur=_spend(total),
        by_instance=[
            InstanceCost(
                instance_id=iid,
                org_id=labels[iid].org_id,
                model_name=labels[iid].model_name,
                provider_code=labels[iid].provider_code,
                instance_type_code=labels[iid].instance_type_code,
                is_running=t.running_instances > 0,
                burn_rate_eur_per_hour=format_eur(t.burn_rate_eur_per_hour),
                cumulative_amount_eur=format_eur(t.cumulative_amount_eur),
                spend_eur=_spend(t),
            )
            for iid, t in instance_rows
        ],
        by_model=[
            ModelCost(model_name=name, running_instances=t.running_instances,
                      burn_rate_eur_per_hour=format_eur(t.burn_rate_eur_per_hour),
                      cumulative_amount_eur=format_eur(t.cumulative_amount_eur), spend_eur=_spend(t))
            for name, t in sorted(models.items(), key=lambda kv: _cost_sort_key(kv[1], kv[0]))
        ],
        by_org=[
            OrgCost(org_id=oid, running_instances=t.running_instances,
                    burn_rate_eur_per_hour=format_eur(t.burn_rate_eur_per_hour),
                    cumulative_amount_eur=format_eur(t.cumulative_amount_eur), spend_eur=_spend(t))
            for oid, t in sorted(orgs.items(), key=lambda kv: _cost_sort_key(kv[1], kv[0]))
        ],
        tokens_by_api_key=tokens_key,
        tokens_by_model=tokens_model,
    )


async def actual_cost_minutes(conn: asyncpg.Connection, *, org_id: str | None, now: datetime, minutes: int = 60,
                              instance_id: str | None = None, schema: str = DEFAULT_SCHEMA) -> ActualMinuteSeries:
    """Actual cost per complete minute over the last ``minutes`` minutes, from
    ``cost_actual_minute`` (``GET /finops/cost/actual/minute``). Minutes without cost are absent."""
    store.checked_schema(schema)
    to_minute = floor_minute(now)
    from_minute = to_minute - timedelta(minutes=max(1, minutes))
    rows = await conn.fetch(
        f"""SELECT bucket_minute, sum(amount_eur) AS amount_eur FROM {schema}.cost_actual_minute
            WHERE {_org_clause(org_id)} AND bucket_minute >= $2 AND bucket_minute < $3
              AND ($4::text IS NULL OR instance_id = $4)
            GROUP BY bucket_minute ORDER BY bucket_minute""",
        org_id, from_minute, to_minute, instance_id,
    )
    return ActualMinuteSeries(
        org_id=org_id, instance_id=instance_id, from_minute=from_minute, to_minute=to_minute,
        points=[MinuteCost(bucket_minute=r["bucket_minute"], amount_eur=format_eur(r["amount_eur"])) for r in rows],
    )


# --- token queries ------------------------------------------------------------------------

_EMPTY = (_NEVER, _NEVER)


def _pad(ranges, n: int):
    ranges = list(ranges)
    return ranges + [_EMPTY] * (n - len(ranges))


async def token_totals_in_window(conn: asyncpg.Connection, *, org_id: str | None, start: datetime, end: datetime,
                                 schema: str = DEFAULT_SCHEMA) -> dict[tuple[str, str], TokenTotals]:
    """Token totals per (api key, model) for requests in ``[start, end)``."""
    store.checked_schema(schema)
    plan = window_plan(start, end)
    (r0, r1), (r2, r3) = _pad(plan.raw, 2)
    (m0, m1), (m2, m3) = _pad(plan.minutes, 2)
    ((d0, d1),) = _pad(plan.days, 1)
    rows = await conn.fetch(
        f"""SELECT api_key_id, model, sum(requests)::bigint AS requests, sum(error_requests)::bigint AS error_requests,
                   sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens
            FROM (
              SELECT api_key_id, model, 1 AS requests, (status_code >= 400)::int AS error_requests,
                     prompt_tokens, completion_tokens
              FROM {schema}.usage_records
              WHERE {_org_clause(org_id)}
                AND ((occurred_at >= $2 AND occurred_at < $3) OR (occurred_at >= $4 AND occurred_at < $5))
              UNION ALL
              SELECT api_key_id, model, requests, error_requests, prompt_tokens, completion_tokens
              FROM {schema}.usage_minute
              WHERE {_org_clause(org_id)}
                AND ((bucket_minute >= $6 AND bucket_minute < $7) OR (bucket_minute >= $8 AND bucket_minute < $9))
              UNION ALL
              SELECT api_key_id, model, requests, error_requests, prompt_tokens, completion_tokens
              FROM {schema}.usage_daily
              WHERE {_org_clause(org_id)} AND day >= $10 AND day < $11
            ) AS u
            GROUP BY api_key_id, model""",
        org_id, r0, r1, r2, r3, m0, m1, m2, m3, d0.date(), d1.date(),
    )
    return {(r["api_key_id"], r["model"]): _totals(r) for r in rows}


async def token_totals_to_date(conn: asyncpg.Connection, *, org_id: str | None,
                               schema: str = DEFAULT_SCHEMA) -> dict[tuple[str, str], TokenTotals]:
    store.checked_schema(schema)
    rows = await conn.fetch(
        f"""SELECT api_key_id, model, sum(requests)::bigint AS requests, sum(error_requests)::bigint AS error_requests,
                   sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens
            FROM {schema}.usage_daily WHERE {_org_clause(org_id)} GROUP BY api_key_id, model""",
        org_id,
    )
    return {(r["api_key_id"], r["model"]): _totals(r) for r in rows}


def _totals(r) -> TokenTotals:
    return TokenTotals(int(r["requests"]), int(r["error_requests"]), int(r["prompt_tokens"]),
                       int(r["completion_tokens"]))


def _counts(t: TokenTotals) -> TokenCounts:
    return TokenCounts(requests=t.requests, error_requests=t.error_requests, prompt_tokens=t.prompt_tokens,
                       completion_tokens=t.completion_tokens, total_tokens=t.total_tokens)


def _roll_up(per_pair: dict[tuple[str, str], TokenTotals], index: int) -> dict[str, TokenTotals]:
    out: dict[str, TokenTotals] = {}
    for pair, totals in per_pair.items():
        out[pair[index]] = out.get(pair[index], TokenTotals()) + totals
    return out


async def token_summary(conn: asyncpg.Connection, *, org_id: str | None, now: datetime,
                        schema: str = DEFAULT_SCHEMA) -> tuple[list[ApiKeyTokens], list[ModelTokens]]:
    """Token totals per API key and per model for each window ending ``now``, and to date."""
    windows = {name: await token_totals_in_window(conn, org_id=org_id, start=now - width, end=now, schema=schema)
               for name, width in WINDOWS.items()}
    to_date = await token_totals_to_date(conn, org_id=org_id, schema=schema)
    result = []
    for index in (0, 1):
        per_window = {name: _roll_up(pairs, index) for name, pairs in windows.items()}
        totals = _roll_up(to_date, index)
        keys = set(totals).union(*per_window.values())
        ordered = sorted(keys, key=lambda k: (-per_window["month_30d"].get(k, TokenTotals()).total_tokens,
                                              -totals.get(k, TokenTotals()).total_tokens, k))
        rows = []
        for k in ordered:
            tokens = TokenWindows(**{name: _counts(per_window[name].get(k, TokenTotals())) for name in WINDOWS})
            if index == 0:
                rows.append(ApiKeyTokens(api_key_id=None if k == NO_API_KEY else k, tokens=tokens,
                                         to_date=_counts(totals.get(k, TokenTotals()))))
            else:
                rows.append(ModelTokens(model=k, tokens=tokens, to_date=_counts(totals.get(k, TokenTotals()))))
        result.append(rows)
    return result[0], result[1]
