"""How scores are shown: the one percentage rule and the text of a number, for the score JSON, the markdown and PNG
reports, the filter report and the HTML pages alike, so a number a person reads is the number in the score file."""

from __future__ import annotations

from typing import Callable, Sequence


def pct(right: int, n: int) -> float | None:
    """A percentage exactly as the official scripts print it: ``(right / n) * 100`` formatted ``:.2f``; ``None``
    for no items (a score of nothing is not 0%)."""
    return float(f"{(right / n) * 100:.2f}") if n else None


def points(a: float | None, b: float | None) -> float | None:
    """The gap ``a - b`` between two percentages, in points to 2 decimals; ``None`` when either is missing."""
    return None if a is None or b is None else round(a - b, 2)


def fmt(value: float | None) -> str:
    """A percentage as text: 2 decimals, ``—`` for none."""
    return "—" if value is None else f"{value:.2f}"


def signed(value: float | None) -> str:
    """A gap in points as text: signed, 2 decimals, ``—`` for none."""
    return "—" if value is None else f"{value:+.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], text_columns: int = 1) -> str:
    """A markdown table; the first ``text_columns`` columns are left-aligned, the others (numbers) right-aligned."""
    def line(cells: Sequence) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(header))) + "|"
    return "\n".join([line(header), rule] + [line(row) for row in rows])


def group_tables(groups: dict[str, dict[str, dict]], columns: Sequence[str],
                 cells: Callable[[dict], list]) -> list[str]:
    """Markdown lines of a ``## By GROUP`` table per breakdown: a row per entry, its name then ``cells(entry)``."""
    lines: list[str] = []
    for group, entries in groups.items():
        rows = [[name, *cells(entry)] for name, entry in entries.items()]
        lines += ["", f"## By {group}", "", markdown_table([group, *columns], rows)]
    return lines
