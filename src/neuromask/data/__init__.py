"""Datasets in memory, synthetic cohorts, quality check and splits."""
