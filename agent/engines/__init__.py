"""Engines the agent can launch. ``fake_server`` is the CPU stand-in for vLLM."""
