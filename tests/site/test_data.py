"""Local data loading (NPZ, CSV, loader), validation errors and atomic saving."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fedsov.exceptions import ConfigError, DataError
from fedsov.site.data import Dataset, DataSpec, load_local_data, save_npz


def _ds(n: int = 6) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(rng.random((n, 3), dtype=np.float32), np.arange(n, dtype=np.int64) % 3)


def _load(path: Path, label_column: str = "label") -> Dataset:
    return load_local_data(DataSpec(path=path, label_column=label_column))


# ----- Dataset ---------------------------------------------------------------------------


def test_dataset_len_classes_and_subset() -> None:
    ds = _ds()
    assert len(ds) == 6
    assert ds.num_classes == 3
    sub = ds.subset(np.array([4, 1]))
    assert np.array_equal(sub.x, ds.x[[4, 1]])
    assert sub.y.tolist() == [1, 1]


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.zeros((0, 2), np.float32), np.zeros(0, np.int64), "empty"),
        (np.zeros((3, 2), np.float32), np.zeros(2, np.int64), "lengths differ"),
        (np.array([[0.0], [np.nan]], np.float32), np.zeros(2, np.int64), "not finite"),
        (np.array([[0.0], [np.inf]], np.float32), np.zeros(2, np.int64), "not finite"),
        (np.zeros((2, 1), np.float32), np.array([0, -1], np.int64), "non-negative"),
        (np.zeros((2, 1), np.float32), np.array([0.0, 1.5]), "integers"),
    ],
)
def test_validate_rejects_bad_datasets(x: np.ndarray, y: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=rf"^my-source: .*{match}"):
        Dataset(x, y).validate("my-source")


def test_validate_accepts_good_dataset() -> None:
    _ds().validate("ok")  # must not raise


# ----- DataSpec --------------------------------------------------------------------------


def test_dataspec_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        DataSpec()
    with pytest.raises(ConfigError, match="exactly one"):
        DataSpec(path=tmp_path / "a.npz", loader="m:f")


# ----- NPZ -------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path: Path) -> None:
    ds = _ds()
    path = tmp_path / "site.npz"
    save_npz(path, ds)
    back = _load(path)
    assert back.x.dtype == np.float32
    assert back.y.dtype == np.int64
    assert np.array_equal(back.x, ds.x)
    assert np.array_equal(back.y, ds.y)
    assert [p.name for p in tmp_path.iterdir()] == ["site.npz"]  # no temp file left behind


def test_npz_round_trip_keeps_image_shape(tmp_path: Path) -> None:
    ds = Dataset(np.ones((4, 1, 2, 2), np.float32), np.zeros(4, np.int64))
    save_npz(tmp_path / "img.npz", ds)
    assert _load(tmp_path / "img.npz").x.shape == (4, 1, 2, 2)


def test_save_npz_replaces_atomically_and_cleans_up_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.npz"
    save_npz(path, _ds(6))

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_npz(path, _ds(3))
    monkeypatch.undo()
    assert len(_load(path)) == 6  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["site.npz"]


def test_save_npz_refuses_invalid_data(tmp_path: Path) -> None:
    bad = Dataset(np.array([[np.nan]], np.float32), np.zeros(1, np.int64))
    with pytest.raises(DataError, match="not finite"):
        save_npz(tmp_path / "bad.npz", bad)
    assert not (tmp_path / "bad.npz").exists()


def test_npz_coerces_integer_valued_float_labels(tmp_path: Path) -> None:
    path = tmp_path / "f.npz"
    np.savez(path, x=np.ones((2, 2)), y=np.array([0.0, 2.0]))
    ds = _load(path)
    assert ds.y.dtype == np.int64
    assert ds.y.tolist() == [0, 2]
    assert ds.x.dtype == np.float32


def test_npz_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "nokey.npz"
    np.savez(path, x=np.ones((2, 2)), labels=np.zeros(2))
    with pytest.raises(DataError, match=r"nokey\.npz: missing array\(s\) y"):
        _load(path)


def test_npz_pickled_object_array_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"obj\.npz: .*pickle"):
        _load(path)


def test_npz_nan_and_mismatched_lengths(tmp_path: Path) -> None:
    nan = tmp_path / "nan.npz"
    np.savez(nan, x=np.array([[1.0], [np.nan]]), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"nan\.npz: features are not finite.*row 1"):
        _load(nan)
    mis = tmp_path / "mis.npz"
    np.savez(mis, x=np.ones((3, 2)), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"mis\.npz: 3 feature rows but 2 labels"):
        _load(mis)


def test_npz_non_integer_labels(tmp_path: Path) -> None:
    path = tmp_path / "lab.npz"
    np.savez(path, x=np.ones((2, 2)), y=np.array([0.5, 1.0]))
    with pytest.raises(DataError, match=r"lab\.npz: labels must be integers"):
        _load(path)


def test_not_a_zip_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"junk\.npz: not an NPZ"):
        _load(path)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent\.npz: data file not found"):
        _load(tmp_path / "absent.npz")
    other = tmp_path / "data.parquet"
    other.write_bytes(b"x")
    with pytest.raises(DataError, match=r"data\.parquet: unsupported data file type"):
        _load(other)


# ----- CSV -------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    ds = _ds(5)
    path = tmp_path / "site.csv"
    lines = ["f0,target,f1,f2"]
    for row, label in zip(ds.x, ds.y, strict=True):
        lines.append(
            ",".join([repr(float(row[0])), str(label), repr(float(row[1])), repr(float(row[2]))])
        )
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")  # trailing blank line ok
    back = _load(path, label_column="target")
    assert back.x.dtype == np.float32
    assert np.array_equal(back.x, ds.x)
    assert np.array_equal(back.y, ds.y)


def test_csv_default_label_column_and_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("a, label ,b\n 1.5 , 2 ,3\n4,0.0,5\n", encoding="utf-8")
    ds = _load(path)
    assert ds.x.tolist() == [[1.5, 3.0], [4.0, 5.0]]
    assert ds.y.tolist() == [2, 0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "a,label\n1,0\n2,1\nthree,0\n",
            r"bad\.csv, line 4: column 'a' holds non-numeric value 'three'",
        ),
        ("a,label\n1,0\n,1\n", r"bad\.csv, line 3: column 'a' holds non-numeric value ''"),
        ("a,label\n1,0\nnan,1\n", r"bad\.csv, line 3: column 'a' is not finite"),
        ("a,label\n1,0\n2,x\n", r"bad\.csv, line 3: column 'label' holds non-numeric"),
        ("a,label\n1,0\n2,1.5\n", r"bad\.csv, line 3: label '1\.5' is not a non-negative integer"),
        ("a,label\n1,-1\n", r"bad\.csv, line 2: label '-1' is not a non-negative integer"),
        ("a,label\n1,0\n2,1,3\n", r"bad\.csv, line 3: 3 cells but the header has 2"),
        ("a,y\n1,0\n", r"bad\.csv, line 1: no label column 'label'"),
        ("", r"bad\.csv: the CSV file is empty"),
        ("a,label\n", r"bad\.csv: the CSV file has no data rows"),
        ("label\n1\n", r"bad\.csv: the CSV file has no feature columns"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        _load(path)


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"a,label\n\xff\xfe,1\n")
    with pytest.raises(DataError, match=r"bin\.csv: not a UTF-8"):
        _load(path)


# ----- loader references -----------------------------------------------------------------

LOADER_MODULE = """
import numpy as np
from fedsov.site.data import Dataset

def as_dataset(n, scale=1.0):
    return Dataset(np.full((n, 2), scale, np.float32), np.arange(n, dtype=np.int64))

def as_tuple(n):
    return np.ones((n, 3)), [0] * n

def with_nan():
    return np.array([[np.nan]]), np.array([0])

def wrong_type():
    return {"x": 1}

def broken():
    raise RuntimeError("database down")

NOT_CALLABLE = 3
"""


@pytest.fixture
def loader_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"fedsov_test_loaders_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(LOADER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_loader_returning_dataset_with_kwargs(loader_module: str) -> None:
    spec = DataSpec(loader=f"{loader_module}:as_dataset", kwargs={"n": 4, "scale": 0.5})
    ds = load_local_data(spec)
    assert ds.x.shape == (4, 2)
    assert float(ds.x.max()) == 0.5
    assert ds.y.tolist() == [0, 1, 2, 3]


def test_loader_returning_tuple_is_converted(loader_module: str) -> None:
    ds = load_local_data(DataSpec(loader=f"{loader_module}:as_tuple", kwargs={"n": 3}))
    assert ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64
    assert len(ds) == 3


@pytest.mark.parametrize(
    ("attr", "match"),
    [
        ("with_nan", r"data loader '.*:with_nan': features are not finite"),
        ("wrong_type", r"returned dict, expected a Dataset or \(x, y\)"),
        ("broken", r"failed: RuntimeError: database down"),
        ("NOT_CALLABLE", r"is not callable"),
        ("missing", r"has no attribute 'missing'"),
    ],
)
def test_loader_errors_name_the_loader(loader_module: str, attr: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_local_data(DataSpec(loader=f"{loader_module}:{attr}"))


def test_loader_bad_reference() -> None:
    with pytest.raises(DataError, match="must look like"):
        load_local_data(DataSpec(loader="no_colon_here"))
    with pytest.raises(DataError, match="cannot import module"):
        load_local_data(DataSpec(loader="fedsov_no_such_module_xyz:f"))
