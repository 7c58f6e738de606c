"""nnlab.data CSV loading: good files in their variants, and every bad case with its message."""

import numpy as np
import pytest

from nnlab.data import DataError, load_dataset

ROWS = [(i * 0.5, (i * 7) % 5 - 2.0, i % 2) for i in range(20)]  # x0, x1, label


def write(tmp_path, text, name="data.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def good_csv(tmp_path, delimiter=",", header="x0,x1,label"):
    lines = ([header.replace(",", delimiter)] if header else []) + [
        delimiter.join(f"{v:g}" for v in row) for row in ROWS
    ]
    return write(tmp_path, "\n".join(lines) + "\n")


def load(path, **params):
    params.setdefault("standardize", False)
    return load_dataset("csv", path=path, **params)


def rows_of(ds):
    x = np.concatenate([ds.x_train, ds.x_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    return sorted(map(tuple, np.column_stack([x, y]).tolist()))


def error(path_or_none=None, **params):
    """The one-line DataError message for loading ``path`` with ``params``."""
    with pytest.raises(DataError) as e:
        load(path_or_none, **params)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- good files


@pytest.mark.parametrize("target", ["label", 2, -1])
def test_reads_values_with_target_by_name_or_index(tmp_path, target):
    ds = load(good_csv(tmp_path), target=target)
    assert ds.name == "csv" and ds.n_features == 2 and ds.n_classes == 2
    assert rows_of(ds) == sorted(ROWS)
    assert ds.x_train.dtype == ds.y_train.dtype == np.float32
    assert len(ds.x_val) == 4 and np.bincount(ds.y_val.astype(int)).tolist() == [2, 2]
    assert "20 rows, 2 features, target 'label' (#2) (2 classes)" in ds.description


def test_header_auto_false_and_true(tmp_path):
    no_header = good_csv(tmp_path, header=None)
    assert rows_of(load(no_header, target=2)) == sorted(ROWS)
    assert rows_of(load(no_header, target=2, header=False)) == sorted(ROWS)
    # header=true on a headerless file eats the first row as names
    assert rows_of(load(no_header, target=2, header=True)) == sorted(ROWS[1:])
    # names from that eaten row work as column names: "-2" is x1
    assert load(no_header, target=2, header=True, features=["-2"]).n_features == 1


@pytest.mark.parametrize(
    ("delimiter", "given"), [(";", ";"), ("\t", "tab"), ("\t", "auto"), (";", "auto")]
)
def test_delimiters(tmp_path, delimiter, given):
    path = good_csv(tmp_path, delimiter=delimiter)
    assert rows_of(load(path, target="label", delimiter=given)) == sorted(ROWS)


def test_feature_selection_by_name_and_index_skips_unused_text_columns(tmp_path):
    text = "id,x0,x1,label\n" + "".join(
        f"s{i},{a:g},{b:g},{y}\n" for i, (a, b, y) in enumerate(ROWS)
    )
    path = write(tmp_path, text)
    by_name = load(path, target="label", features=["x1", "x0"])
    by_index = load(path, target=3, features=[2, 1])
    assert by_name.n_features == 2
    np.testing.assert_array_equal(by_name.x_train, by_index.x_train)
    assert sorted(map(tuple, np.concatenate([by_name.x_train, by_name.x_val]).tolist())) == sorted(
        (b, a) for a, b, _ in ROWS
    )
    assert load(path, target="label", features="x0").n_features == 1  # a single name is a list


def test_multiclass_labels_map_to_class_ids(tmp_path):
    labels = [1, 2, 5] * 6
    path = write(tmp_path, "a,y\n" + "".join(f"{i},{c}\n" for i, c in enumerate(labels)))
    ds = load(path, target="y")
    assert ds.n_classes == 3
    assert set(np.concatenate([ds.y_train, ds.y_val])) == {0.0, 1.0, 2.0}
    # class ids follow the sorted labels: row a=2 had label 5 -> id 2
    x, y = np.concatenate([ds.x_train, ds.x_val]), np.concatenate([ds.y_train, ds.y_val])
    assert y[x[:, 0] == 2][0] == 2.0
    assert "3 classes, labels 1, 2, 5 -> 0..2" in ds.description


def test_two_valued_target_becomes_binary_even_when_required(tmp_path):
    path = write(tmp_path, "a,y\n" + "".join(f"{i},{-1 if i % 2 else 1}\n" for i in range(10)))
    ds = load(path, target="y", require_binary=True)
    assert ds.n_classes == 2 and set(ds.y_train) == {0.0, 1.0}
    x, y = np.concatenate([ds.x_train, ds.x_val]), np.concatenate([ds.y_train, ds.y_val])
    assert y[x[:, 0] == 1][0] == 0.0  # -1 -> 0
    assert "labels -1, 1 -> 0..1" in ds.description


def test_tolerates_bom_quotes_spaces_and_blank_lines(tmp_path):
    text = (
        '\ufeff"x0", x1 ,label\n\n' + "".join(f'"{a:g}", {b:g} ,{y}\n' for a, b, y in ROWS) + "\n\n"
    )
    assert rows_of(load(write(tmp_path, text), target="label")) == sorted(ROWS)


def test_standardize_and_seed_apply_to_csv(tmp_path):
    path = good_csv(tmp_path)
    a = load(path, target="label", seed=1, standardize=True)
    b = load(path, target="label", seed=1, standardize=True)
    c = load(path, target="label", seed=2, standardize=True)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    np.testing.assert_allclose(a.x_train.mean(axis=0), 0.0, atol=1e-6)


# ---------------------------------------------------------------- bad files: one message each


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.csv")
    assert "nope.csv: file not found" in error(missing, target="y")


def test_directory_instead_of_file(tmp_path):
    assert "not a regular file" in error(str(tmp_path), target="y")


@pytest.mark.parametrize("text", ["", "  \n\n", ",,\n,,\n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    msg = error(path, target=0)
    assert msg.startswith(path + ": ") and ("file is empty" in msg or "no cells" in msg)


def test_header_without_rows(tmp_path):
    assert "has a header but no data rows; add data rows" in error(
        write(tmp_path, "a,b,y\n"), target="y"
    )


@pytest.mark.parametrize("missing", [{"path": "???"}, {"path": None}])
def test_path_not_set(missing):
    with pytest.raises(DataError, match=r"csv: path is not set; pass path="):
        load_dataset("csv", target="y", **missing)


def test_target_not_set(tmp_path):
    assert "target column is not set; pass target=" in error(good_csv(tmp_path), target="???")


def test_missing_target_column_lists_columns(tmp_path):
    msg = error(good_csv(tmp_path), target="class")
    assert "column 'class' not found; columns are: x0, x1, label" in msg


def test_wrong_delimiter_hint(tmp_path):
    msg = error(good_csv(tmp_path, delimiter=";"), target="label")
    assert "columns are: x0;x1;label" in msg and "check the delimiter" in msg


def test_target_index_out_of_range(tmp_path):
    assert "column index 3 is out of range; the file has 3 columns (0..2)" in error(
        good_csv(tmp_path), target=3
    )


def test_target_name_without_header(tmp_path):
    msg = error(good_csv(tmp_path, header=None), target="label")
    assert "no header row" in msg and "give its index 0..2" in msg


def test_non_numeric_cell_names_line_and_column(tmp_path):
    text = "x0,x1,label\n1,2,0\n3,4,1\n5,abc,0\n"
    msg = error(write(tmp_path, text), target="label")
    assert "data.csv: line 4, column 'x1' (#1): 'abc' is not a number" in msg
    assert "features=[...]" in msg


def test_text_target_names_the_mapping_not_dropping_the_column(tmp_path):
    """Issue 26: the hint for a feature (leave it out with features=[...]) would drop the target."""
    text = "x0,label\n" + "".join(f"{i},{'B' if i % 2 else 'M'}\n" for i in range(8))
    msg = error(write(tmp_path, text), target="label")
    assert "line 2, column 'label' (#1): 'M' is not a number" in msg
    assert "features=[...]" not in msg
    assert "df['label'] = df['label'].map({'B': 0, 'M': 1})" in msg


def test_text_target_with_many_labels_gets_the_general_mapping(tmp_path):
    text = "x0,label\n" + "".join(f"{i},{chr(65 + i % 8)}\n" for i in range(16))
    msg = error(write(tmp_path, text, "k.csv"), target=1)
    assert (
        "8 text labels" in msg and "df['label'] = df['label'].astype('category').cat.codes" in msg
    )
    assert len(msg) < 400


def test_empty_cell(tmp_path):
    text = "x0,x1,label\n1,2,0\n3,,1\n"
    assert "line 3, column 'x1' (#1): empty cell" in error(write(tmp_path, text), target="label")


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf"])
def test_nan_and_infinite_cells(tmp_path, bad):
    text = "x0,x1,label\n" + "".join(f"{i},{bad if i == 5 else i},{i % 2}\n" for i in range(10))
    msg = error(write(tmp_path, text), target="label")
    assert f"line 7, column 'x1' (#1): '{bad}' is not a finite number" in msg


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("bad", ["1e300", "-4e38", "1e39"])
def test_cells_that_overflow_float32_are_refused(tmp_path, bad, standardize):
    """Issue 25, defect 10: 1e300 was zeroed by standardisation, or became inf without it."""
    text = "x0,x1,label\n" + "".join(f"{i},{bad if i == 5 else i},{i % 2}\n" for i in range(10))
    msg = error(write(tmp_path, text), target="label", standardize=standardize)
    assert f"line 7, column 'x1' (#1): '{bad}' overflows float32" in msg
    assert "rescale the column" in msg


def test_the_largest_float32_cell_is_fine(tmp_path):
    text = "x0,label\n" + "".join(f"{3e38 if i == 3 else i},{i % 2}\n" for i in range(10))
    ds = load(write(tmp_path, text), target="label")
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_val).all()


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"separation": 1e300}, "separation"),
        ({"noise": 1e300}, "noise"),
    ],
)
def test_generated_features_that_overflow_float32_are_refused(params, needle):
    with pytest.raises(DataError) as e:
        load_dataset("blobs", **params)
    msg = str(e.value)
    assert msg.startswith("dataset 'blobs': features overflow float32") and needle in msg


def test_ragged_row(tmp_path):
    text = "x0,x1,label\n1,2,0\n3,4,1,9\n"
    assert "line 3 has 4 cells but line 1 has 3" in error(write(tmp_path, text), target="label")


def test_header_auto_refuses_mixed_first_line(tmp_path):
    text = "x0,2,label\n1,2,0\n"
    msg = error(write(tmp_path, text), target=2)
    assert "line 1 mixes names and numbers" in msg and "header=true" in msg


def test_fractional_target(tmp_path):
    text = "x0,y\n" + "".join(f"{i},{i / 4}\n" for i in range(8))
    msg = error(write(tmp_path, text), target="y")
    assert "line 3, column 'y' (#1): '0.25' is not a class label" in msg


def test_single_class_target(tmp_path):
    text = "x0,y\n" + "".join(f"{i},1\n" for i in range(8))
    assert "target column 'y' (#1) has one value only (1)" in error(
        write(tmp_path, text), target="y"
    )


def test_fewer_rows_than_the_split_needs(tmp_path):
    text = "x0,y\n1,0\n2,0\n3,0\n4,1\n"
    msg = error(write(tmp_path, text), target="y")
    assert "has 4 rows (per class: 3, 1)" in msg and "at least 2 rows of every class" in msg


def test_non_binary_target_when_binary_required(tmp_path):
    text = "x0,kind\n" + "".join(f"{i},{i % 3}\n" for i in range(12))
    path = write(tmp_path, text)
    assert load(path, target="kind").n_classes == 3  # fine for a multi-class loss
    with pytest.raises(DataError) as e:
        load(path, target="kind", require_binary=True)
    msg = str(e.value)
    assert msg.startswith(path + ": target column 'kind' (#1) has 3 classes (0, 1, 2)")
    assert "binary 0/1 labels" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("features", "needle"),
    [
        (["x0", "label"], "target column 'label' (#2) is also listed in features"),
        (["x0", 0], "features lists a column twice"),
        ([], "no feature columns selected"),
        (["x9"], "column 'x9' not found"),
        ([5], "column index 5 is out of range"),
        (1.5, "features must be a list of column names or indices"),
    ],
)
def test_bad_feature_lists(tmp_path, features, needle):
    assert needle in error(good_csv(tmp_path), target="label", features=features)


def test_bad_header_and_delimiter_values(tmp_path):
    path = good_csv(tmp_path)
    assert "header must be auto, true or false" in error(path, target=2, header="maybe")
    assert "delimiter must be one character" in error(path, target=2, delimiter=";;")


def test_undetectable_delimiter(tmp_path):
    path = write(tmp_path, "abc\ndef\n")
    assert "could not detect the delimiter" in error(path, target=0, delimiter="auto")


def test_not_utf8(tmp_path):
    path = write(tmp_path, "x0,caf\u00e9\n1,0\n", encoding="latin-1")
    assert "not UTF-8 text" in error(path, target=1)


def test_id_column_as_target_gives_a_short_message(tmp_path):
    text = "id,x\n" + "".join(f"{i},{i * 2}\n" for i in range(500))
    msg = error(write(tmp_path, text), target="id")
    assert "has 500 rows (per class: 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ...)" in msg and len(msg) < 300
