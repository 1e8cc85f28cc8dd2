"""FinOps: what instances cost and what requests consumed, per organisation, model and API key.

Pure core (no I/O, no clock): ``money`` (Decimal EUR, the rounding rule), ``metering`` (billing
intervals from start/stop events), ``costing`` (interval costs, per-minute buckets, burn rate,
forecasts, aggregation), ``usage`` (token totals, window plans).
Adapters: ``store`` (schema and row writes), ``projection`` (billing and usage projections for
the projector's runner), ``closer`` (per-minute rows of open intervals), ``rebuild`` (schema
create / rebuild by replay), ``queries`` (read side of ``/finops/*``), ``metrics``, ``main``.
"""
