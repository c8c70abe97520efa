"""Fixtures for the operator tests."""
