"""Data: file names, the synthetic city, sources, layouts, ground truth, samplers, transforms and loading."""
