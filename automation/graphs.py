"""Pictures of the step graph: a workflow's definition, or a run with each step's state.

networkx lays the steps out in topological generations (a step sits one column right of the
last step it waits for, parallel branches stack vertically); the picture is an SVG drawn from
that layout, so it needs no browser library and no system binary.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

import networkx as nx

from automation import graph

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 170, 54, 60, 26, 16
COLOURS = {
    "completed": ("#ecfdf3", "#067647"),
    "running": ("#eff8ff", "#175cd3"),
    "waiting": ("#fffaeb", "#b54708"),
    "pending": ("#f9fafb", "#667085"),
    "failed": ("#fef3f2", "#b42318"),
    "skipped": ("#f2f4f7", "#98a2b3"),
    "cancelled": ("#f2f4f7", "#98a2b3"),
    None: ("#ffffff", "#344054"),
}


@dataclass(frozen=True)
class Node:
    key: str
    type: str
    status: str | None
    x: float
    y: float


def layout(
    steps: list[dict[str, Any]], statuses: dict[str, str] | None = None
) -> tuple[list[Node], list[tuple[str, str]]]:
    """Positions for each step and the dependency edges (from, to)."""
    deps = graph.dependencies(steps)
    dag = nx.DiGraph()
    dag.add_nodes_from(step["key"] for step in steps)
    dag.add_edges_from((dep, key) for key, waits in deps.items() for dep in waits)
    by_key = {step["key"]: step for step in steps}
    nodes: list[Node] = []
    for column, generation in enumerate(nx.topological_generations(dag)):
        ordered = sorted(generation, key=lambda k: steps.index(by_key[k]))
        for row, key in enumerate(ordered):
            nodes.append(
                Node(
                    key=key,
                    type=by_key[key]["type"],
                    status=(statuses or {}).get(key) if statuses is not None else None,
                    x=PAD + column * (BOX_W + GAP_X),
                    y=PAD + row * (BOX_H + GAP_Y),
                )
            )
    return nodes, list(dag.edges())


def to_svg(
    steps: list[dict[str, Any]], statuses: dict[str, str] | None = None, title: str = ""
) -> str:
    nodes, edges = layout(steps, statuses)
    if not nodes:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="240" height="40">'
            '<text x="10" y="25" font-family="sans-serif" font-size="13">'
            "No steps</text></svg>"
        )
    width = max(n.x for n in nodes) + BOX_W + PAD
    height = max(n.y for n in nodes) + BOX_H + PAD
    where = {n.key: n for n in nodes}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{escape(title or "workflow graph")}" font-family="sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#98a2b3"/></marker></defs>',
    ]
    for start, end in edges:
        a, b = where[start], where[end]
        x1, y1 = a.x + BOX_W, a.y + BOX_H / 2
        x2, y2 = b.x, b.y + BOX_H / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path d="M {x1:.0f} {y1:.0f} C {mid:.0f} {y1:.0f} {mid:.0f} {y2:.0f} '
            f'{x2 - 2:.0f} {y2:.0f}" fill="none" stroke="#98a2b3" stroke-width="1.5" '
            'marker-end="url(#arrow)"/>'
        )
    for node in nodes:
        fill, stroke = COLOURS.get(node.status, COLOURS[None])
        parts.append(
            f'<g class="step" data-key="{escape(node.key)}" data-status="{node.status or ""}">'
            f'<rect x="{node.x:.0f}" y="{node.y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{node.x + 10:.0f}" y="{node.y + 22:.0f}" font-size="13" '
            f'font-weight="600" fill="#101828">{escape(node.key[:22])}</text>'
            f'<text x="{node.x + 10:.0f}" y="{node.y + 41:.0f}" font-size="11" fill="{stroke}">'
            f"{escape(node.type[:18])}{' · ' + node.status if node.status else ''}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def run_statuses(run: Any) -> dict[str, str]:
    return dict(run.action_runs.values_list("step_key", "status"))
