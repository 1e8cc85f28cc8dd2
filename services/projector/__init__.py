"""The projector: folds the EVENTS stream into Postgres read models, records heartbeats.

- ``projections/``: pure ``event -> RowOp`` functions (instances, history, action log, identity)
- ``rowops``: RowOp values and their set-based, idempotent application
- ``runner``: the generic checkpointed runner (``run_projection``, ``catch_up``, ``wait_for_seq``)
- ``read_model``: the read-model projection the runner drives into ``rm``
- ``schema``: create/version the ``rm`` schema from ``sql/read_model.sql``
- ``rebuild``: ``inventiv projector rebuild`` (replay into ``rm_next``, compare, swap)
- ``heartbeats``: HEARTBEATS -> ``public.worker_heartbeats``
- ``readers``: how other services read ``rm.*`` safely across a swap
- ``main``: the service (``inventiv projector``)
"""
