"""A tiny document model rendered twice, to Markdown and to self-contained HTML, so both say the same.

Every piece of text is data (node names, kernel strings, error reasons come from remote machines), so it is
escaped at render time, once, here: ``html.escape`` for HTML, and the characters that would open a table
cell, a link or raw HTML for Markdown.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass
class Paragraph:
    text: str


@dataclass
class Facts:
    """A definition list: (label, value) pairs."""

    items: list[tuple[str, str]]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    #: Columns to right-align (numbers).
    numeric: frozenset[int] = frozenset()


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Links:
    """(label, relative href, note) items, e.g. exported files."""

    items: list[tuple[str, str, str]]


@dataclass
class Images:
    """(caption, relative src) items."""

    items: list[tuple[str, str]]


Block = Paragraph | Facts | Table | Bullets | Links | Images


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)


# Markdown: a backslash escapes these; "<" and "&" become entities so no raw HTML gets through. "_" is left
# alone: GitHub-flavoured Markdown never emphasises inside a word, and combination keys are full of them.
_MD_SPECIAL = str.maketrans({char: f"\\{char}" for char in "\\`*[]|"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})


def md_text(text: str) -> str:
    return " ".join(str(text).split()).translate(_MD_SPECIAL)


def href(path: str) -> str:
    """A relative path as a URL: spaces, ``#`` and ``?`` in file names must not end the path."""
    return quote(path, safe="/-_.~")


def to_markdown(document: Document) -> str:
    lines = [f"# {md_text(document.title)}", ""]
    for section in document.sections:
        lines += [f"## {md_text(section.title)}", ""]
        for block in section.blocks:
            lines += [*_md_block(block), ""]
    return "\n".join(lines).rstrip() + "\n"


def _md_block(block: Block) -> list[str]:
    match block:
        case Paragraph(text):
            return [md_text(text)]
        case Facts(items):
            return [f"- **{md_text(label)}**: {md_text(value)}" for label, value in items]
        case Table(headers, rows, numeric):
            align = ["---:" if index in numeric else "---" for index in range(len(headers))]
            out = ["| " + " | ".join(md_text(cell) for cell in headers) + " |", "| " + " | ".join(align) + " |"]
            return out + ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in rows]
        case Bullets(items):
            return [f"- {md_text(item)}" for item in items]
        case Links(items):
            return [f"- [{md_text(label)}]({href(target)}){' ' + md_text(note) if note else ''}"
                    for label, target, note in items]  # fmt: skip
        case Images(items):
            # A blank line between images keeps each in its own paragraph.
            return "\n\n".join(f"![{md_text(caption)}]({href(src)})" for caption, src in items).split("\n")
    raise TypeError(f"unknown block {block!r}")


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ccc; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; } dt { font-weight: 600; }
dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85rem; color: #555; }
"""


def to_html(document: Document) -> str:
    title = html.escape(document.title)
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{title}</title>",
             f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{title}</h1>"]  # fmt: skip
    for section in document.sections:
        parts.append(f"<section>\n<h2>{html.escape(section.title)}</h2>")
        parts += [_html_block(block) for block in section.blocks]
        parts.append("</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _html_block(block: Block) -> str:
    e = html.escape
    match block:
        case Paragraph(text):
            return f"<p>{e(text)}</p>"
        case Facts(items):
            return "<dl>" + "".join(f"<dt>{e(label)}</dt><dd>{e(value)}</dd>" for label, value in items) + "</dl>"
        case Table(headers, rows, numeric):
            head = "".join(f"<th>{e(cell)}</th>" for cell in headers)
            body = "".join(
                "<tr>" + "".join(
                    f'<td class="num">{e(cell)}</td>' if index in numeric else f"<td>{e(cell)}</td>"
                    for index, cell in enumerate(row)
                ) + "</tr>\n"
                for row in rows
            )  # fmt: skip
            return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"
        case Bullets(items):
            return "<ul>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>"
        case Links(items):
            return "<ul>" + "".join(
                f'<li><a href="{e(href(target))}">{e(label)}</a>{" " + e(note) if note else ""}</li>'
                for label, target, note in items
            ) + "</ul>"  # fmt: skip
        case Images(items):
            return "\n".join(
                f'<figure><img src="{e(href(src))}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'
                for caption, src in items
            )
    raise TypeError(f"unknown block {block!r}")
