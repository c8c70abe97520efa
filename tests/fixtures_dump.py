"""Fixtures for the dump tests."""
