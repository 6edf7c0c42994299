"""Artifacts on disk: scene stores, prediction stores (the only zarr importer) and checkpoints."""
