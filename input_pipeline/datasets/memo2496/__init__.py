"""Memo2496 (manual download from figshare); see docs/datasets.md."""
