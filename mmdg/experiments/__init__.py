"""Sweeps, result records and their collection into tables."""
