"""Server-side SVG charts (pygal) for the pages, drawn the same way everywhere.

pygal's own tooltips load a script from a CDN; ``js=[]`` leaves it out, and
``static/js/charts.js`` (ours, same origin) gives every bar and dot a native SVG tooltip
from the values pygal writes into the chart. The SVG has no fixed size: it scales to the
width of its container, so a chart fits a 390 px screen.
"""

from __future__ import annotations

from typing import Any

import pygal
from django.utils.safestring import SafeString, mark_safe
from pygal.style import CleanStyle

CHART_OPTIONS: dict[str, Any] = {
    "style": CleanStyle(no_data_font_size=22, font_family="system-ui, sans-serif"),
    "no_data_text": "Nothing in this period",
    "height": 280,
    "width": 640,
    "explicit_size": False,
    "legend_at_bottom": True,
    "show_y_guides": True,
    "js": [],
    "disable_xml_declaration": True,
}


def chart(kind: type[pygal.graph.graph.Graph], title: str, **options: Any) -> Any:
    """A pygal chart of ``kind`` (``pygal.Bar``, ``pygal.Line``, ...) with the shared look."""
    return kind(title=title, **{**CHART_OPTIONS, **options})


def chart_svg(graph: Any) -> SafeString:
    """The chart as inline SVG (pygal escapes the labels and values it writes)."""
    return mark_safe(graph.render(is_unicode=True))  # noqa: S308
