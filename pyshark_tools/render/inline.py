"""Finding texts carry commands in backticks; each format shows them as code.

Markdown gets code spans (the rest escaped, so ``<I>`` or ``*`` in a name never turns into
markup), HTML gets ``<code>`` whose words never wrap inside (a command broken at its hyphen
reads as two), the text report keeps the backticks.
"""

from __future__ import annotations

import html
import re

#: Characters that start inline markup in CommonMark/GFM outside code spans.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~])")


def spans(text: str) -> list[tuple[bool, str]]:
    """(is_code, piece) pieces of ``text``; an unpaired backtick is plain text."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # odd number of backticks: the last one is not a delimiter
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    return [(i % 2 == 1, piece) for i, piece in enumerate(parts) if piece]


def markdown_text(text: str) -> str:
    """Plain text safe in a Markdown paragraph or table cell: every markup character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def markdown_inline(text: str) -> str:
    """A finding text as Markdown: backticked commands as code spans, the rest escaped."""
    out = []
    for code, piece in spans(text):
        out.append(f"`{piece}`" if code else markdown_text(piece))
    return "".join(out)


def html_inline(text: str) -> str:
    """A finding text as HTML: backticked commands in ``<code class="cmd">``, each word of a
    command kept on one line (lines break only between words)."""
    out = []
    for code, piece in spans(text):
        if code:
            words = " ".join(f'<span class="word">{html.escape(w, quote=True)}</span>'
                             for w in piece.split(" "))
            out.append(f'<code class="cmd">{words}</code>')
        else:
            out.append(html.escape(piece, quote=True))
    return "".join(out)
