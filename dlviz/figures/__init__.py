"""Plotly figures, one module a page and one shared style: data in, figure out."""
