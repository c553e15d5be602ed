"""Every CSV Nexus writes is safe to open in a spreadsheet: no cell and no header starts a
formula, whatever the column's type."""

from __future__ import annotations

import csv
import io

import polars as pl
import pytest

from nexus_core.spreadsheet import FORMULA_PREFIXES, csv_text, neutralised

FORMULAS = ['=HYPERLINK("http://x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\r=1"]


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def dangerous(cell: str) -> bool:
    return cell.startswith(FORMULA_PREFIXES)


@pytest.mark.parametrize(
    "dtype",
    [pl.String, pl.Categorical, pl.Enum(FORMULAS), pl.Object],
    ids=["string", "categorical", "enum", "object"],
)
def test_text_cells_of_every_type_are_neutralised(dtype: pl.DataType) -> None:
    frame = pl.DataFrame({"value": pl.Series(FORMULAS, dtype=dtype)})
    written = neutralised(frame).write_csv()
    cells = [row[0] for row in rows_of(written)[1:]]
    assert not any(dangerous(cell) for cell in cells), cells
    assert [cell[1:] for cell in cells] == FORMULAS  # the text itself is kept


def test_nested_and_binary_cells_and_every_header_are_neutralised() -> None:
    frame = pl.DataFrame(
        {
            "=cmd()": [1, -2],
            "@head": [["=a"], ["b"]],
            "+bytes": [b"=x", b"y"],
            "-struct": [{"k": "=v"}, {"k": "w"}],
        }
    )
    rows = rows_of(neutralised(frame).write_csv())
    assert rows[0] == ["'=cmd()", "'@head", "'+bytes", "'-struct"]
    assert rows[1][0] == "1" and rows[2][0] == "-2"  # numbers stay numbers
    assert not any(dangerous(cell) for row in rows for cell in row[1:])


def test_headers_that_collide_once_neutralised_stay_distinct() -> None:
    frame = pl.DataFrame({"=a": [1], "'=a": [2]})
    assert neutralised(frame).columns == ["'=a", "'=a (2)"]


def test_plain_rows_have_every_cell_and_header_neutralised() -> None:
    text = csv_text(["=h", "n"], [[FORMULAS[0], -1], [None, "@x"]])
    assert rows_of(text) == [["'=h", "n"], ["'" + FORMULAS[0], "'-1"], ["", "'@x"]]
