"""Evaluation: image preparation, extraction, kNN retrieval, recall, validation and comparisons."""
