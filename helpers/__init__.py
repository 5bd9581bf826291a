"""Helpers for the multi-model serving notebooks."""
