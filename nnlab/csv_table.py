"""Reading a user's CSV file (and the bundled ones): strict, with file / line / column in every
message.

:class:`CsvTable` keeps the raw cells with their line numbers and turns the chosen columns into
float arrays; every problem is one :class:`nnlab.data.DataError` line that names the file, the
line and the column ('name' (#index)) and the fix.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from nnlab.data import FLOAT32_MAX, DataError, is_int


def check_path(path: object) -> str:
    if path is None or path in ("???", ""):
        raise DataError(
            "csv: path is not set; pass path=/path/to/file.csv (data.path=... on the CLI)"
        )
    if not isinstance(path, str | os.PathLike):
        raise DataError(f"csv: path must be a file path, got {path!r}; pass path=/path/to/file.csv")
    return os.fspath(path)


DELIMITER_ALIASES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": " "}


class CsvTable:
    """Raw CSV cells with their line numbers; converts chosen columns to float arrays."""

    def __init__(
        self, source: str, names: list[str] | None, rows: list[list[str]], lines: list[int]
    ):
        self.source, self.names, self.rows, self.lines = source, names, rows, lines
        self.width = len(names) if names is not None else len(rows[0])

    @classmethod
    def read(cls, source: str, delimiter: object, header: object) -> CsvTable:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(
                f"{source}: file not found (relative paths start at {os.getcwd()}); check path"
            )
        if not path.is_file():
            raise DataError(f"{source}: not a regular file; pass the path of a CSV file")
        try:
            text = path.read_text(encoding="utf-8-sig")  # -sig: drop a spreadsheet's BOM
        except UnicodeDecodeError as e:
            raise DataError(
                f"{source}: not UTF-8 text (byte {e.start}); save the file as UTF-8 CSV"
            ) from None
        return cls.parse(text, source, delimiter, header)

    @classmethod
    def parse(cls, text: str, source: str, delimiter: object, header: object) -> CsvTable:
        if not text.strip():
            raise DataError(f"{source}: file is empty; pass a CSV file with data rows")
        if header not in ("auto", True, False):
            raise DataError(f"{source}: header must be auto, true or false, got {header!r}")
        delim = DELIMITER_ALIASES.get(delimiter, delimiter) if isinstance(delimiter, str) else None
        if delim == "auto":
            try:
                delim = csv.Sniffer().sniff(text[:65536], delimiters=",;\t| ").delimiter
            except csv.Error:
                raise DataError(
                    f"{source}: could not detect the delimiter; pass delimiter=',' (or ';', tab)"
                ) from None
        if not isinstance(delim, str) or len(delim) != 1:
            raise DataError(
                f"{source}: delimiter must be one character, 'tab' or 'auto', got {delimiter!r}"
            )
        reader = csv.reader(text.splitlines(), delimiter=delim)
        rows, lines = [], []
        for row in reader:
            if any(cell.strip() for cell in row):  # skip blank lines (trailing newlines)
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
        if not rows:
            raise DataError(f"{source}: file has no cells, only delimiters; pass a CSV with data")
        if header == "auto":
            numeric = [is_number(cell) for cell in rows[0]]
            if all(numeric) == any(numeric):
                header = not any(numeric)
            else:
                raise DataError(
                    f"{source}: line {lines[0]} mixes names and numbers, so the header cannot be "
                    f"detected; pass header=true if it is a header row, header=false if it is data"
                )
        names = rows.pop(0) if header else None
        first_line = lines.pop(0) if header else lines[0]
        if not rows:
            raise DataError(f"{source}: has a header but no data rows; add data rows")
        width = len(names) if names is not None else len(rows[0])
        for row, line in zip(rows, lines, strict=True):
            if len(row) != width:
                raise DataError(
                    f"{source}: line {line} has {len(row)} cells but line {first_line} has "
                    f"{width} (delimiter {delim!r}); fix the row or pass the right delimiter"
                )
        return cls(source, names, rows, lines)

    def label(self, j: int) -> str:
        return f"{self.names[j]!r} (#{j})" if self.names is not None else f"#{j}"

    def column(self, key: object) -> int:
        """Index of a column given by header name or integer index (negative counts from the end)."""
        if is_int(key):
            if not -self.width <= key < self.width:
                raise DataError(
                    f"{self.source}: column index {key} is out of range; the file has "
                    f"{self.width} columns (0..{self.width - 1})"
                )
            return int(key) % self.width
        if not isinstance(key, str):
            raise DataError(
                f"{self.source}: a column must be a name or an integer index, got {key!r}"
            )
        if self.names is None:
            raise DataError(
                f"{self.source}: the file has no header row, so column {key!r} cannot be found by "
                f"name; give its index 0..{self.width - 1} (or header=true if line 1 is a header)"
            )
        hits = [j for j, n in enumerate(self.names) if n == key]
        if len(hits) != 1:
            shown = first_few(self.names, 12)
            problem = "appears twice in the header" if hits else "not found"
            raise DataError(
                f"{self.source}: column {key!r} {problem}; columns are: {shown} "
                f"(use an index, or check the delimiter)"
            )
        return hits[0]

    def floats(self, j: int, target: bool = False) -> np.ndarray:
        """Column j as float64, refusing non-numeric, empty, non-finite cells and cells beyond
        float32's range (nnlab trains in float32: 1e300 would become inf, or swamp the column's
        standardisation). ``target``: the hint for a text cell maps labels, never drops."""
        cells = [row[j] for row in self.rows]
        try:
            values = np.array(cells, dtype=np.float64)
        except ValueError:
            values = None
        with np.errstate(invalid="ignore"):
            bad = (
                range(len(cells))
                if values is None
                else np.flatnonzero(~(np.abs(values) <= FLOAT32_MAX))  # NaN, inf, overflow
            )
        for i in bad:
            cell = cells[i]
            where = f"{self.source}: line {self.lines[i]}, column {self.label(j)}"
            if cell == "":
                raise DataError(f"{where}: empty cell; fill it in or delete the row")
            if not is_number(cell):
                fix = (
                    self.label_mapping(j)
                    if target
                    else ("fix the cell, or leave the column out with features=[...]")
                )
                raise DataError(f"{where}: {cell!r} is not a number; {fix}")
            if not math.isfinite(float(cell)):
                raise DataError(
                    f"{where}: {cell!r} is not a finite number; fill it in or delete the row"
                )
            if abs(float(cell)) > FLOAT32_MAX:
                raise DataError(
                    f"{where}: {cell!r} overflows float32, the type nnlab trains in (largest "
                    f"magnitude {FLOAT32_MAX:.4g}); rescale the column (e.g. its log, or other "
                    "units) or fix the cell"
                )
        if values is None:  # numpy refused a spelling Python's float accepts (e.g. "1_000")
            values = np.array([float(cell) for cell in cells])
        return values

    def label_mapping(self, j: int) -> str:
        """How to turn the text labels of target column j into the class ids nnlab reads."""
        labels = sorted(dict.fromkeys(row[j] for row in self.rows))
        column = repr(self.names[j]) if self.names is not None else str(j)
        if len(labels) <= 5:
            ids = ", ".join(f"{label!r}: {k}" for k, label in enumerate(labels))
            how = f"df[{column}] = df[{column}].map({{{ids}}})"
        else:
            how = f"df[{column}] = df[{column}].astype('category').cat.codes"
        return (
            f"the target holds class labels as numbers: map its {len(labels)} text labels to "
            f"0..{len(labels) - 1} in the file first, e.g. with pandas: {how}"
        )

    def arrays(
        self, target: object, features: object, require_binary: bool
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """x (N, F) float64, y (N,) class ids 0..K-1, and a target note for descriptions."""
        t = self.column(target)
        if features is None:
            cols = [j for j in range(self.width) if j != t]
        else:
            if isinstance(features, str) or is_int(features):
                features = [features]  # a single column is a one-item list
            if not hasattr(features, "__iter__"):  # OmegaConf ListConfig is iterable: fine
                raise DataError(
                    f"{self.source}: features must be a list of column names or indices, got "
                    f"{features!r}; e.g. features=[0,1] (or null for all columns but the target)"
                )
            cols = [self.column(f) for f in features]
        if not cols:
            raise DataError(f"{self.source}: no feature columns selected; list at least one")
        if t in cols:
            raise DataError(
                f"{self.source}: target column {self.label(t)} is also listed in features; "
                f"remove it from features"
            )
        if len(set(cols)) != len(cols):
            raise DataError(f"{self.source}: features lists a column twice; list each once")
        x = np.column_stack([self.floats(j) for j in cols])
        y_raw = self.floats(t, target=True)
        fractional = np.flatnonzero(y_raw != np.round(y_raw))
        if fractional.size:
            i = fractional[0]
            raise DataError(
                f"{self.source}: line {self.lines[i]}, column {self.label(t)}: {self.rows[i][t]!r} "
                f"is not a class label; the target must hold integer labels such as 0/1"
            )
        classes, y = np.unique(y_raw, return_inverse=True)
        shown = first_few([f"{c:g}" for c in classes])
        if len(classes) < 2:
            raise DataError(
                f"{self.source}: target column {self.label(t)} has one value only ({shown}); "
                f"a classifier needs two classes; check target"
            )
        if require_binary and len(classes) > 2:
            raise DataError(
                f"{self.source}: target column {self.label(t)} has {len(classes)} classes "
                f"({shown}) but the loss needs binary 0/1 labels; pick a two-class target column "
                f"or use a multi-class loss (sparse_categorical_crossentropy)"
            )
        counts = np.bincount(y)
        if counts.min() < 2:
            raise DataError(
                f"{self.source}: target column {self.label(t)} has {len(y)} rows (per class: "
                f"{first_few(counts.tolist())}); the train/validation split needs at least 2 "
                f"rows of every class; add rows"
            )
        names = [self.names[j] for j in cols] if self.names is not None else []
        if len(set(names)) != len(cols) or "" in names:  # no header, or names a table cannot use
            names = [f"x{j}" for j in cols]
        self.meta = (tuple(int(c) for c in classes), tuple(names))  # labels, feature names
        identity = np.array_equal(classes, np.arange(len(classes)))
        mapping = "" if identity else f", labels {shown} -> 0..{len(classes) - 1}"
        note = f"target {self.label(t)} ({len(classes)} classes{mapping})"
        return x, y.astype(np.int64), note


def first_few(items: list, n: int = 10) -> str:
    return ", ".join(map(str, items[:n])) + (", ..." if len(items) > n else "")


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
