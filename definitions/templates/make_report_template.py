"""Make ``report.docx``: the Word template of the aggregate report, in the layout of Nghị
định 30/2020/NĐ-CP, Phụ lục I (văn bản hành chính).

    .venv/bin/python definitions/templates/make_report_template.py

The template is plan data: a clerk may open ``report.docx`` in Word and change wording,
fonts or spacing; what is in ``{{ … }}`` and ``{%p … %}`` / ``{%tr … %}`` is filled by
``planflow.report_docx`` (docxtpl: Jinja2 inside a .docx). A plan gets a template of its own
by putting a ``report.docx`` in its ``templates:`` folder or in ``templates/`` next to it.
This script is kept to make the shipped one again (run it, then commit both).

Layout (Phụ lục I): A4 portrait; margins top 20, bottom 20, left 30, right 15 mm; Times New
Roman (Unicode), black; quốc hiệu 12 pt upper case bold, tiêu ngữ 13 pt bold with a rule
under it; the issuing body 13 pt upper case bold under its parent (upper case, regular)
with a rule under it; "Số:" 13 pt; place and date 14 pt italic; "BÁO CÁO" 14 pt bold and
the trích yếu 14 pt bold under it, with a short rule; content 14 pt justified, first-line
indent 1.27 cm, 6 pt between paragraphs, line spacing 1.15; the signer's title 14 pt upper
case bold and name 14 pt bold; "Nơi nhận:" 12 pt bold italic, each recipient 11 pt; page
numbers centred in the top margin, not on the first page.
"""

from __future__ import annotations

from pathlib import Path

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Mm, Pt

HERE = Path(__file__).resolve().parent
FONT = "Times New Roman"
CENTER, JUSTIFY, LEFT = WD_ALIGN_PARAGRAPH.CENTER, WD_ALIGN_PARAGRAPH.JUSTIFY, WD_ALIGN_PARAGRAPH.LEFT
COLUMNS = [("STT", 1.2), ("Cơ quan, đơn vị", 4.6), ("Thời điểm báo cáo", 3.6), ("Tình trạng", 2.4),
           ("Điểm", 1.6), ("Xếp loại", 3.1)]


def set_font(run_or_style, size: float, bold: bool = False, italic: bool = False) -> None:
    font = run_or_style.font
    font.name, font.size, font.bold, font.italic = FONT, Pt(size), bold, italic
    rpr = run_or_style.element.get_or_add_rPr()
    rpr.get_or_add_rFonts().set(qn("w:eastAsia"), FONT)
    rpr.get_or_add_rFonts().set(qn("w:cs"), FONT)


def para(container, text: str = "", size: float = 14, *, bold=False, italic=False, align=CENTER,
         indent=False, before=0, after=0):
    p = container.add_paragraph()
    p.alignment = align
    fmt = p.paragraph_format
    fmt.space_before, fmt.space_after, fmt.line_spacing = Pt(before), Pt(after), 1.0
    if indent:
        fmt.first_line_indent, fmt.line_spacing = Cm(1.27), 1.15
    if text:
        set_font(p.add_run(text), size, bold, italic)
    return p


def rule(container, width_cm: float, cell_cm: float) -> None:
    """A solid line ``width_cm`` long, centred: an empty paragraph's bottom border, indented."""
    p = para(container, "", 2)
    side = Cm(max((cell_cm - width_cm) / 2, 0))
    p.paragraph_format.left_indent = p.paragraph_format.right_indent = side
    borders = OxmlElement("w:pBdr")
    bottom = OxmlElement("w:bottom")
    for key, value in (("val", "single"), ("sz", "6"), ("space", "1"), ("color", "000000")):
        bottom.set(qn(f"w:{key}"), value)
    borders.append(bottom)
    p._p.get_or_add_pPr().append(borders)


def page_setup(doc) -> None:
    section = doc.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin, section.bottom_margin = Mm(20), Mm(20)
    section.left_margin, section.right_margin = Mm(30), Mm(15)
    section.header_distance = Mm(10)
    section.different_first_page_header_footer = True
    header = section.header.paragraphs[0]
    header.alignment = CENTER
    run = header.add_run("1")
    set_font(run, 14)
    field = OxmlElement("w:fldSimple")  # the page number, a field Word and LibreOffice update
    field.set(qn("w:instr"), "PAGE")
    header._p.append(field)
    field.append(run._r)
    normal = doc.styles["Normal"]
    set_font(normal, 14)


def widths(table, cm: list[float]) -> None:
    """Column widths, in the grid (what LibreOffice reads) and in every cell (what Word reads)."""
    table.autofit = False
    for i, width in enumerate(cm):
        table.columns[i].width = Cm(width)
        for cell in table.columns[i].cells:
            cell.width = Cm(width)


def heading_block(doc) -> None:
    """Tên cơ quan, số (left); quốc hiệu, tiêu ngữ, địa danh và ngày tháng (right)."""
    table = doc.add_table(rows=1, cols=2)
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    widths(table, [6.3, 10.2])
    left, right = table.rows[0].cells
    left.paragraphs[0].text = "{{ body.parent }}"
    set_font(left.paragraphs[0].runs[0], 13)
    left.paragraphs[0].alignment = CENTER
    para(left, "{{ body.name }}", 13, bold=True)
    rule(left, 2.2, 6.3)
    para(left, "Số:        /BC-{{ body.symbol }}", 13, before=6)
    right.paragraphs[0].text = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    set_font(right.paragraphs[0].runs[0], 12, bold=True)
    right.paragraphs[0].alignment = CENTER
    para(right, "Độc lập - Tự do - Hạnh phúc", 13, bold=True)
    rule(right, 6.0, 10.2)
    para(right, "{{ place }}, {{ day }}", 14, italic=True, before=6)


def title_block(doc) -> None:
    para(doc, "BÁO CÁO", 14, bold=True, before=18)
    para(doc, "{{ subject }}", 14, bold=True)
    rule(doc, 5.0, 16.5)
    para(doc, "{%p if round_note %}", 14)
    para(doc, "{{ round_note }}", 14, italic=True, before=6)
    para(doc, "{%p endif %}", 14)
    para(doc, "{{ intro }}", 14, align=JUSTIFY, indent=True, before=12, after=6)


def grid(doc, header: list[tuple[str, float]], rows: list[list[str]], left: int = 1):
    """A bordered table, its header row bold and repeated on each page; column ``left``
    (the names) aligned left, the others centred."""
    table = doc.add_table(rows=1 + len(rows), cols=len(header))
    table.style = doc.styles["Table Grid"]
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    head = table.rows[0]
    head._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))
    for row in table.rows:  # a row is never split across two pages
        row._tr.get_or_add_trPr().append(OxmlElement("w:cantSplit"))
    widths(table, [width for _, width in header])
    for i, (text, _) in enumerate(header):
        cell = head.cells[i].paragraphs[0]
        cell.alignment = CENTER
        set_font(cell.add_run(text), 12, bold=True)
    for r, values in enumerate(rows, start=1):
        for i, text in enumerate(values):
            cell = table.rows[r].cells[i].paragraphs[0]
            cell.alignment = CENTER if i != left else LEFT
            set_font(cell.add_run(text), 12)
    return table


def section_heading(doc, text: str) -> None:
    """A heading kept on the page of what follows it."""
    p = para(doc, text, 14, bold=True, align=JUSTIFY, indent=True, before=6, after=6)
    p.paragraph_format.keep_with_next = True


def summary_tables(doc) -> None:
    section_heading(doc, "I. TÌNH HÌNH BÁO CÁO")
    cols = [("Cấp", 4.0), ("Phải báo cáo", 2.5), ("Đúng hạn", 2.5), ("Quá hạn", 2.5), ("Không báo cáo", 2.8)]
    grid(doc, cols, [["{%tr for t in reporting %}"] + [""] * 4,
                         ["{{ t.title }}", "{{ t.expected }}", "{{ t.on_time }}", "{{ t.late }}",
                          "{{ t.missing }}"],
                         ["{%tr endfor %}"] + [""] * 4], left=0)
    para(doc, "{{ reporting_note }}", 14, align=JUSTIFY, indent=True, before=6, after=6)
    section_heading(doc, "II. KẾT QUẢ XẾP LOẠI")
    cols = [("Xếp loại", 4.6), ("Sở, ban, ngành", 2.9), ("UBND cấp huyện", 2.9), ("UBND cấp xã", 2.9),
            ("Tổng số", 2.2)]
    grid(doc, cols, [["{%tr for c in classes %}"] + [""] * 4,
                         ["{{ c.label }}", "{{ c.department }}", "{{ c.district }}", "{{ c.commune }}",
                          "{{ c.total }}"],
                         ["{%tr endfor %}"] + [""] * 4], left=0)
    para(doc, "{{ average_note }}", 14, align=JUSTIFY, indent=True, before=6, after=6)


def results_tables(doc) -> None:
    """One table per tier; a tier's units may come in groups (communes under their district)."""
    section_heading(doc, "III. KẾT QUẢ CỦA TỪNG CƠ QUAN, ĐƠN VỊ, ĐỊA PHƯƠNG")
    para(doc, "{%p for t in tiers %}", 14)
    section_heading(doc, "{{ t.heading }}")
    blank = [""] * len(COLUMNS)
    table = grid(doc, COLUMNS, [["{%tr for g in t.groups %}"] + blank[1:],
                                ["{%tr if g.title %}"] + blank[1:],
                                ["{{ g.title }}"] + blank[1:],
                                ["{%tr endif %}"] + blank[1:],
                                ["{%tr for r in g.rows %}"] + blank[1:],
                                ["{{ r.stt }}", "{{ r.name }}", "{{ r.when }}", "{{ r.status }}", "{{ r.score }}",
                                 "{{ r.classification }}"],
                                ["{%tr endfor %}"] + blank[1:],
                                ["{%tr endfor %}"] + blank[1:]])
    group_row = table.rows[3].cells
    merged = group_row[0].merge(group_row[-1])
    for extra in merged.paragraphs[1:]:  # merging keeps each cell's empty paragraph
        extra._p.getparent().remove(extra._p)
    cell = merged.paragraphs[0]
    cell.alignment = LEFT
    cell.runs[0].font.bold = cell.runs[0].font.italic = True
    para(doc, "{%p endfor %}", 14)


def closing_sections(doc) -> None:
    section_heading(doc, "IV. ĐƠN VỊ KHÔNG ĐỦ ĐIỀU KIỆN XẾP LOẠI")
    para(doc, "{%p for line in not_classified %}", 14)
    para(doc, "{{ line }}", 14, align=JUSTIFY, indent=True, after=6)
    para(doc, "{%p endfor %}", 14)
    para(doc, "{%p if paper_reports %}", 14)
    section_heading(doc, "V. BÁO CÁO GỬI BẰNG VĂN BẢN GIẤY")
    para(doc, "{%p for line in paper_reports %}", 14)
    para(doc, "{{ line }}", 14, align=JUSTIFY, indent=True, after=6)
    para(doc, "{%p endfor %}", 14)
    para(doc, "{%p endif %}", 14)
    para(doc, "{{ closing }}", 14, align=JUSTIFY, indent=True, before=6, after=12)


def signature_block(doc) -> None:
    """Nơi nhận (left); the signer's title and name (right)."""
    table = doc.add_table(rows=1, cols=2)
    table.autofit = False
    widths(table, [8.0, 8.5])
    left, right = table.rows[0].cells
    first = left.paragraphs[0]
    first.alignment = LEFT
    set_font(first.add_run("Nơi nhận:"), 12, bold=True, italic=True)
    para(left, "{%p for line in recipients %}", 11, align=LEFT)
    para(left, "- {{ line }}", 11, align=LEFT)
    para(left, "{%p endfor %}", 11, align=LEFT)
    top = right.paragraphs[0]
    top.alignment = CENTER
    set_font(top.add_run("{{ signer.line1 }}"), 14, bold=True)
    para(right, "{%p if signer.line2 %}", 14)
    para(right, "{{ signer.line2 }}", 14, bold=True)
    para(right, "{%p endif %}", 14)
    for _ in range(4):
        para(right, "", 14)
    para(right, "{{ signer.name }}", 14, bold=True)
    para(doc, "", 2)  # a document ends with a paragraph, not a table


def make(path: Path = HERE / "report.docx") -> Path:
    doc = Document()
    page_setup(doc)
    heading_block(doc)
    title_block(doc)
    summary_tables(doc)
    results_tables(doc)
    closing_sections(doc)
    signature_block(doc)
    doc.core_properties.title = "Báo cáo kết quả thực hiện Kế hoạch"
    doc.core_properties.author = "planflow"
    doc.save(path)
    return path


if __name__ == "__main__":
    print(make())
