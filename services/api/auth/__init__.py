"""Authentication: passwords, server-side sessions, API keys, and the request principal."""
