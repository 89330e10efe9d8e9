"""Reports as files: a self-contained HTML page (tables and an SVG chart, no scripts, no
network) and an .xlsx workbook."""

from __future__ import annotations

import html
from dataclasses import asdict
from pathlib import Path

from broadcast.audit.report import Report, Row

COLUMNS = [("key", ""), ("messages", "messages"), ("deliveries", "deliveries"), ("people", "people"),
           ("accepted", "accepted"), ("delivered", "delivered"), ("failed", "failed"), ("expired", "expired"),
           ("pending", "pending"), ("in_doubt", "in doubt"), ("unconfirmed", "unconfirmed"), ("sms", "SMS parts"), ("delivery_rate", "rate %"),
           ("billed_sms", "billed SMS"), ("cost", "cost (yuan)"), ("unpriced_sms", "SMS without a price")]


def _cells(r: Row) -> list[object]:
    return [getattr(r, k) if getattr(r, k) is not None else "" for k, _ in COLUMNS]


def chart_svg(days: list[Row], width: int = 760, height: int = 220) -> str:
    """Deliveries per day: delivered (or accepted) in green, failed/expired in red, stacked."""
    if not days:
        return "<p>No deliveries in this period.</p>"
    top = max(d.deliveries for d in days) or 1
    bar_w = max(2.0, (width - 60) / len(days))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" role="img" '
             f'aria-label="deliveries per day">',
             f'<text x="0" y="12" font-size="11">{top:,}</text>',
             f'<line x1="50" y1="{height}" x2="{width}" y2="{height}" stroke="#999"/>']
    for i, d in enumerate(days):
        x = 55 + i * bar_w
        ok = d.delivered or d.accepted
        bad = d.failed + d.expired
        h_ok, h_bad = height * ok / top, height * bad / top
        title = html.escape(f"{d.key}: {d.deliveries} deliveries, {ok} ok, {bad} failed")
        parts.append(f'<g><title>{title}</title>'
                     f'<rect x="{x:.1f}" y="{height - h_ok:.1f}" width="{bar_w * 0.8:.1f}" height="{h_ok:.1f}" fill="#3a7d44"/>'
                     f'<rect x="{x:.1f}" y="{height - h_ok - h_bad:.1f}" width="{bar_w * 0.8:.1f}" height="{h_bad:.1f}" '
                     f'fill="#c0392b"/></g>')
        if len(days) <= 31 or i % max(1, len(days) // 12) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 14}" font-size="9" transform="rotate(45 {x:.1f} {height + 14})">'
                         f'{html.escape(d.key[5:] if len(d.key) == 10 else d.key)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_html(report: Report, path: Path) -> None:
    def table(rows: list[Row], first: str) -> str:
        head = "".join(f"<th>{html.escape(label or first)}</th>" for _, label in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in _cells(r)) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    failures = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in report.failures.items())
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>broadcast report</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
h1{{font-size:1.3em}}</style></head><body>
<h1>{html.escape(report.headline)}</h1>
<h2>Deliveries per day</h2>{chart_svg(report.per_day)}
<h2>By {html.escape(report.by)}</h2>{table(report.rows, report.by)}
<h2>Total</h2>{table([report.total], "")}
<h2>Failures by reason</h2><table><tr><th>reason</th><th>deliveries</th></tr>{failures}</table>
</body></html>
"""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)


def write_xlsx(report: Report, path: Path) -> None:
    """Group names, gateway names and failure reasons come from outside (files, gateways):
    every cell goes through ``xlsx_cells``, which neutralises formulas."""
    from openpyxl import Workbook

    from broadcast.recipients.files import xlsx_cells

    wb = Workbook(write_only=True)
    summary = wb.create_sheet("summary")
    summary.append(xlsx_cells(summary, [report.headline]))
    for k, v in asdict(report.total).items():
        summary.append(xlsx_cells(summary, [k, v]))
    by = wb.create_sheet(f"by {report.by}")
    by.append(xlsx_cells(by, [label or report.by for _, label in COLUMNS]))
    for r in report.rows:
        by.append(xlsx_cells(by, _cells(r)))
    fails = wb.create_sheet("failures")
    fails.append(xlsx_cells(fails, ["reason", "deliveries"]))
    for k, v in report.failures.items():
        fails.append(xlsx_cells(fails, [k, v]))
    tmp = path.with_name(f".{path.name}.tmp")
    wb.save(tmp)
    tmp.replace(path)
