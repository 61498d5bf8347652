"""TFDS builders, one folder per dataset (buildable with `tfds build <folder>`)."""
