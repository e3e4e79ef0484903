"""Worker runtime tests that need no socket: liveness, heartbeats, backoff and drain."""
