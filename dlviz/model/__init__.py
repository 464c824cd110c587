"""The network a preset describes: built, summarised, and its memory footprint."""
