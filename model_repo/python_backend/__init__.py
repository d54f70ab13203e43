"""Triton python-backend model (model.py); Triton loads the file itself, never this package."""
