"""Broker, MDP framing, worker runtime and client transport tests."""
