"""Tests of the wire codec."""
