"""Bilingual labels (中文 by default, English by the switch): the text is Chinese in the layout and
the screen swaps it from `data-zh` / `data-en` in the browser, without a server round trip."""
from __future__ import annotations

from dash import html


def label(zh: str, en: str, tag: type = html.Span, **props) -> html.Span:
    """A static label the language switch can flip."""
    return tag(zh, **{"data-zh": zh, "data-en": en}, **props)
