"""Vietnamese names fitted to the shapes of the diagram: measured in DejaVu Sans, wrapped.

DejaVu Sans has every Vietnamese diacritic (Liberation Sans, Arial's metric twin on Debian,
lacks ở, ự, ỉ…) and ships with matplotlib, whose FreeType binding measures it here, so a
line is wrapped where it really ends. The SVG names it first; a viewer without it falls back
to Verdana or Arial, no wider, so the wrapped lines still fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif"
LEADING = 1.2  # line height, times the font size
SMALLEST = 9.0  # px: below this a name is unreadable on A4; it is wrapped on more lines instead


REFERENCE = 64.0  # px: every width is measured once at this size, unhinted, and scaled


@lru_cache(maxsize=2)
def _face(bold: bool):
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    face = FT2Font(font_manager.findfont(props))
    face.set_size(REFERENCE, 72)  # at 72 dpi a point is a pixel
    return face


@lru_cache(maxsize=None)
def _glyph(char: str, bold: bool) -> tuple[int, float]:
    """A character's glyph index and its advance in px at ``REFERENCE`` (unhinted)."""
    from matplotlib.ft2font import LoadFlags

    face = _face(bold)
    return face.get_char_index(ord(char)), face.load_char(ord(char), flags=LoadFlags.NO_HINTING).linearHoriAdvance / 65536


@lru_cache(maxsize=None)
def _kerning(left: int, right: int, bold: bool) -> float:
    from matplotlib.ft2font import Kerning

    return _face(bold).get_kerning(left, right, Kerning.UNFITTED) / 64.0


@lru_cache(maxsize=8192)
def _reference_width(text: str, bold: bool) -> float:
    width, before = 0.0, None
    for char in text:
        index, advance = _glyph(char, bold)
        width += advance + (_kerning(before, index, bold) if before is not None else 0.0)
        before = index
    return width


def text_width(text: str, size: float, bold: bool = False) -> float:
    """The width in px of ``text`` set in DejaVu Sans at ``size`` px: its glyphs' advances and
    kerning, unhinted, as an SVG viewer lays the line out at any zoom (measured once at
    ``REFERENCE`` and scaled: asking every size of ``fit`` costs one measure, not one each)."""
    return _reference_width(text, bold) * size / REFERENCE


def wrap(text: str, width: float, size: float, bold: bool = False, first: float | None = None) -> list[str]:
    """``text`` in lines no wider than ``width`` (the first line ``first``, when given; a word
    longer than that on a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        room = first if first is not None and len(lines) == 1 else width
        if lines and text_width(f"{lines[-1]} {word}", size, bold) <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


@dataclass(frozen=True)
class Fitted:
    lines: list[str]
    size: float

    @property
    def height(self) -> float:
        return len(self.lines) * self.size * LEADING


def fit(text: str, width: float, height: float, size: float, bold: bool = False,
        first: float | None = None) -> Fitted:
    """``text`` wrapped to ``width`` (the first line to ``first``) at the largest size from
    ``size`` down to ``SMALLEST`` whose lines fit in ``height`` and none overflows; at
    ``SMALLEST`` when none does."""
    while True:
        lines = wrap(text, width, size, bold, first)
        rooms = [first if first is not None and i == 0 else width for i in range(len(lines))]
        fits = len(lines) * size * LEADING <= height and all(
            text_width(line, size, bold) <= room for line, room in zip(lines, rooms))
        if fits or size <= SMALLEST:
            return Fitted(lines, size)
        size = max(SMALLEST, size - 0.5)
