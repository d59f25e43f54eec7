"""Data: images, videos, training sources and samplers. Nothing here imports a model."""
