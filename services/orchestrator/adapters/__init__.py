"""Adapters: the orchestrator's ports implemented over NATS, HTTP and providers (mock, later Scaleway)."""
