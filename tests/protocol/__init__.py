"""Tests of the protocol message models."""
