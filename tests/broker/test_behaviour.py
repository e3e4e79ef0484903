"""The broker behaviour suite over each transport: inproc and TCP loopback."""

from __future__ import annotations

from tests.broker.behaviour import BrokerBehaviour


class TestInproc(BrokerBehaviour):
    endpoint = "inproc://broker"


class TestTcp(BrokerBehaviour):
    endpoint = "tcp://127.0.0.1:*"
