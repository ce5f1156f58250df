"""Vietnamese names fitted to the shapes of the diagram: measured in DejaVu Sans, wrapped.

DejaVu Sans has every Vietnamese diacritic (Liberation Sans, Arial's metric twin on Debian,
lacks ở, ự, ỉ…) and ships with matplotlib; its advances and kerning are read here from the
font's own tables (fontTools), so a line is wrapped where it really ends. The SVG names it
first; a viewer without it falls back to Verdana or Arial, no wider, so the wrapped lines
still fit.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif"
LEADING = 1.2  # line height, times the font size
SMALLEST = 9.0  # px: below this a name is unreadable on A4; it is wrapped on more lines instead


REFERENCE = 64.0  # px: every width is measured once at this size, unhinted, and scaled


@dataclass(frozen=True)
class _Face:
    """The metrics of one face at ``REFERENCE`` px: a character's glyph, its advance, a pair's kerning."""

    glyphs: dict[int, str]  # code point -> glyph name (the font's best cmap); a character it lacks: .notdef
    advances: dict[str, float]  # glyph name -> advance in px
    kerning: dict[tuple[str, str], float]  # (left, right) glyph names -> px


def font_file(bold: bool = False) -> Path:
    """DejaVu Sans as matplotlib ships it (every install of planflow has it; matplotlib is not
    imported: only its package folder is looked up)."""
    package = importlib.util.find_spec("matplotlib")
    folder = Path(next(iter(package.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    return folder / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")


@lru_cache(maxsize=2)
def _face(bold: bool) -> _Face:
    """The face's tables read with fontTools: advances (``hmtx``) and the pairs' kerning
    (``kern``, the table FreeType's FT_Get_Kerning reads), in font units scaled to px —
    the same unhinted figures FreeType gives (advance × size / units per em), without loading
    FreeType through matplotlib (≈ 0.25 s of every process that draws)."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(font_file(bold)), lazy=True)
    scale = REFERENCE / font["head"].unitsPerEm
    advances = {name: width * scale for name, (width, _) in font["hmtx"].metrics.items()}
    kerning = {}
    if "kern" in font:
        for table in font["kern"].kernTables:
            kerning.update({pair: value * scale for pair, value in getattr(table, "kernTable", {}).items()})
    return _Face(font.getBestCmap(), advances, kerning)


@lru_cache(maxsize=8192)
def _reference_width(text: str, bold: bool) -> float:
    face = _face(bold)
    width, before = 0.0, None
    for char in text:
        glyph = face.glyphs.get(ord(char), ".notdef")
        width += face.advances[glyph] + face.kerning.get((before, glyph), 0.0)
        before = glyph
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
