"""The HTTP gateway: Appendix C's endpoints and the rest of the agent API over HTTP, as one more
client of the broker (no business logic: the workers decide, the gateway translates)."""
