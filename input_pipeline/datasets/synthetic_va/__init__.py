"""Embedded synthetic valence/arousal dataset (see docs/synthetic_data.md)."""
