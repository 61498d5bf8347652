"""PMEmo2019 (manual download); see docs/datasets.md."""
