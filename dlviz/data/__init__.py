"""Datasets: generated sets, images, tables and sequences, split and loaded for a preset; uploaded files."""
