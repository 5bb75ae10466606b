"""Learngene (AAAI 2022) reference implementation: collective model, gradient criterion, individual models."""

__version__ = "0.1.0"
