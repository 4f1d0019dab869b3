"""End-to-end pipelines behind ``krylearn train ...`` (data, training, shipped weights)."""
