"""Data: scene registry, preprocessing, splits and sampling."""
