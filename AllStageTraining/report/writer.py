"""A small document model that renders the same report as Markdown and as a standalone HTML page.

A :class:`Report` is a list of blocks (headings, paragraphs, warnings, tables, images, code, lists). Text
may use three inline Markdown forms, rendered in both outputs: ``**bold**``, ```code``` and ``[text](link)``.
Images and links are paths relative to the report's folder, so the folder can be moved or zipped whole.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warning { background: #fff4e5; border-left: 5px solid #f0a020; padding: .6em 1em; margin: 1em 0; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _inline_html(text: str) -> str:
    out, pos = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[pos:match.start()]))
        code, bold, link_text, href = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{_inline_html(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(href, quote=True)}">{_inline_html(link_text)}</a>')
        pos = match.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass
class Report:
    """Blocks of a report in reading order; ``write`` renders ``report.md`` and ``report.html``."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def warning(self, text: str) -> None:
        """A highlighted notice (synthetic data, untrained text encoder, not for clinical use)."""
        self.blocks.append(("warning", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], *,
              numeric: Sequence[int] | None = None) -> None:
        """A table of strings; the ``numeric`` columns (default: all but the first) are right-aligned."""
        numeric = set(range(1, len(header)) if numeric is None else numeric)
        self.blocks.append(("table", list(header), [list(map(str, r)) for r in rows], numeric))

    def image(self, path: str, alt: str, caption: str | None = None) -> None:
        """An image by its path relative to the report's folder."""
        self.blocks.append(("image", path, alt, caption))

    def code(self, text: str, language: str = "") -> None:
        self.blocks.append(("code", text.rstrip("\n"), language))

    # ------------------------------------------------------------------------------------------ rendering
    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                lines += ["#" * block[1] + " " + block[2], ""]
            elif kind == "paragraph":
                lines += [block[1], ""]
            elif kind == "warning":
                lines += ["> **Warning:** " + block[1], ""]
            elif kind == "bullets":
                lines += [f"- {item}" for item in block[1]] + [""]
            elif kind == "table":
                _, header, rows, numeric = block
                lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                lines.append("|" + "|".join("---:" if j in numeric else "---" for j in range(len(header))) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif kind == "image":
                _, path, alt, caption = block
                lines += [f"![{alt}]({path})", ""]
                if caption:
                    lines += [f"*{caption}*", ""]
            elif kind == "code":
                lines += [f"```{block[2]}", block[1], "```", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                 f"<title>{html.escape(self.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
                 f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                level = min(block[1], 6)
                parts.append(f"<h{level}>{_inline_html(block[2])}</h{level}>")
            elif kind == "paragraph":
                parts.append(f"<p>{_inline_html(block[1])}</p>")
            elif kind == "warning":
                parts.append(f'<div class="warning"><strong>Warning:</strong> {_inline_html(block[1])}</div>')
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                _, header, rows, numeric = block
                head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
                body = "".join(
                    "<tr>" + "".join(
                        f'<td{" class=num" if j in numeric else ""}>{_inline_html(c)}</td>'
                        for j, c in enumerate(row)) + "</tr>"
                    for row in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "image":
                _, path, alt, caption = block
                figure = f'<figure><img src="{html.escape(path, quote=True)}" alt="{html.escape(alt, quote=True)}">'
                if caption:
                    figure += f"<figcaption>{_inline_html(caption)}</figcaption>"
                parts.append(figure + "</figure>")
            elif kind == "code":
                parts.append(f"<pre><code>{html.escape(block[1])}</code></pre>")
        parts += ["</body>", "</html>", ""]
        return "\n".join(parts)

    def write(self, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.html`` into ``out_dir`` (each atomically); returns both paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, text in ((".md", self.to_markdown()), (".html", self.to_html())):
            path = out_dir / f"{stem}{suffix}"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
            paths.append(path)
        return paths[0], paths[1]
