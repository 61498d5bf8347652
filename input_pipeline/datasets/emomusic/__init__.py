"""emoMusic / 1000songs (manual download); see docs/datasets.md."""
