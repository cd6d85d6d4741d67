"""The report's RFM section: the R x FM grid (customers and revenue share) and segment sizes.

Takes plain rows (computed by `services.segments.rfm_summary`) so the report layer needs
nothing from the segments capability; the grid's cell names come with the rows.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_rfm_section"]


def _cell_colour(share: float, top: float) -> str:
    """White to blue by revenue share (relative to the biggest cell)."""
    level = 0.0 if top <= 0 else min(1.0, share / top)
    r, g, b = (int(255 - level * (255 - c)) for c in (47, 111, 222))
    return f"rgb({r},{g},{b})"


def render_rfm_section(
    *,
    as_of: str,
    buyers: int,
    currency: str,
    segments: list[dict[str, Any]],
    grid: list[dict[str, Any]],
    names: dict[tuple[int, int], str],
) -> str:
    """HTML fragment: ``grid`` rows have r, fm, customers, revenue_share; ``names`` maps a
    (r, fm) cell to its named segment."""
    cells = {(int(g["r"]), int(g["fm"])): g for g in grid}
    top = max((float(g["revenue_share"]) for g in grid), default=0.0)
    rows = []
    for r in range(5, 0, -1):
        tds = [f'<th scope="row">R{r}</th>']
        for fm in range(1, 6):
            g = cells.get((r, fm), {"customers": 0, "revenue_share": 0.0})
            share = float(g["revenue_share"])
            tds.append(
                f'<td class="rfm-cell" data-r="{r}" data-fm="{fm}" '
                f'style="background:{_cell_colour(share, top)}">'
                f"<b>{int(g['customers']):,}</b><br>{share:.1%} of revenue"
                f'<br><span class="rfm-name">{escape(names.get((r, fm), ""))}</span></td>'
            )
        rows.append("<tr>" + "".join(tds) + "</tr>")
    header = "<tr><th></th>" + "".join(f"<th>FM{fm}</th>" for fm in range(1, 6)) + "</tr>"
    sizes = "".join(
        f"<tr><td>{escape(s['segment'])}</td><td>{int(s['customers']):,}</td>"
        f"<td>{float(s['share']):.1%}</td><td>{float(s['revenue']):,.2f}</td>"
        f"<td>{float(s['revenue_share']):.1%}</td></tr>"
        for s in segments
    )
    return (
        '<section id="rfm"><h2>RFM segments</h2>'
        f'<p class="notes">{buyers:,} buyers as of {escape(as_of)}. R = recency, FM = the '
        "rounded mean of frequency and monetary scores (1-5, quintiles of rank; "
        "docs/segments.md#rfm). Cell colour: share of revenue.</p>"
        f'<table class="rfm-grid">{header}{"".join(rows)}</table>'
        '<table class="rfm-sizes"><tr><th>segment</th><th>customers</th><th>share</th>'
        f"<th>revenue ({escape(currency)})</th><th>revenue share</th></tr>{sizes}</table>"
        "</section>"
    )
