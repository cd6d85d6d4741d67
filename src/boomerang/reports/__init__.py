"""HTML reports rendered from analytics results (Jinja2 + Plotly, self-contained)."""
