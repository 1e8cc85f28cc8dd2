"""Inventiv worker agent: runs beside the inference engine (vLLM, or a CPU fake) on a worker.

It starts and supervises the engine, answers health/readiness probes on its own port and
publishes a heartbeat over NATS every few seconds. Nothing here talks to Postgres or the
control plane's HTTP API: NATS credentials and the heartbeat subject are its identity.
"""
