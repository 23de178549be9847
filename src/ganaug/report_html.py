"""report.html: the report's blocks as one self-contained page (inline CSS, images as data URIs),
so it can be mailed or opened offline without the study folder."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

CSS = """
:root { --ink: #1d232b; --muted: #5b6570; --rule: #dde2e7; --band: #f5f7f9; --accent: #1f5f99; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 72rem; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 1.7rem; line-height: 1.25; margin: 0 0 1rem; }
h2 { font-size: 1.3rem; margin: 2.5rem 0 0.75rem; padding-bottom: 0.3rem; border-bottom: 1px solid var(--rule); }
h3 { font-size: 1.1rem; margin: 1.75rem 0 0.5rem; }
p, li { max-width: 48rem; }
.answer { background: var(--band); border-left: 4px solid var(--accent); padding: 0.75rem 1.25rem;
          margin: 0 0 1.25rem; }
.answer p { font-size: 1.08rem; font-weight: 600; margin: 0.5rem 0; }
.warning { background: #fff4e5; border-left: 4px solid #d97706; padding: 0.6rem 1.25rem;
           margin: 0 0 1.25rem; font-weight: 600; }
.table-wrap { overflow-x: auto; margin: 0.75rem 0 1.5rem; }
table { border-collapse: collapse; font-size: 0.85rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid var(--rule); text-align: left; white-space: nowrap; }
th { background: var(--band); font-weight: 600; position: sticky; top: 0; }
td.num { text-align: right; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1.25rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { color: var(--muted); font-size: 0.9rem; margin-top: 0.4rem; max-width: 48rem; }
.file-note { color: var(--muted); font-style: italic; }
"""


def _is_numeric(text: str) -> bool:
    stripped = text.replace("±", "").replace(" to ", " ").replace("%", "").replace("<", "")
    return any(ch.isdigit() for ch in text) and all(ch in "0123456789.+-e " for ch in stripped)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{escape(v)}</td>' if _is_numeric(v)
                                    else f"<td>{escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _figure(path: Path, caption: str) -> str:
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:  # e.g. PDF: browsers cannot show it inline in <img>; it sits next to the report
        return (f'<figure><p class="file-note">Figure in {escape(path.suffix.lstrip(".").upper())}: '
                f"<code>{escape(path.name)}</code> in the study folder.</p>"
                f"<figcaption>{escape(caption)}</figcaption></figure>")
    # SVG goes in as a data URI too, rather than as markup: matplotlib's element ids would clash
    # between figures, and an <img> cannot run scripts.
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def render_html(blocks: list[tuple], title: str) -> str:
    parts: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "title":
            parts.append(f"<h1>{escape(block[1])}</h1>")
        elif kind == "answer":
            parts.append('<section class="answer">' + "".join(f"<p>{escape(s)}</p>" for s in block[1])
                         + "</section>")
        elif kind == "warning":
            parts.append(f'<p class="warning">{escape(block[1])}</p>')
        elif kind in ("h2", "h3"):
            parts.append(f"<{kind}>{escape(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{escape(block[1])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            parts.append(_table(block[1], block[2]))
        elif kind == "figure":
            parts.append(_figure(block[1], block[2]))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(parts) + "\n</main>\n</body>\n</html>\n")
