"""A site's local data: loading (NPZ, CSV, loader function), validation and atomic saving."""

from __future__ import annotations

import csv
import hashlib
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedsov.config import ConfigPath, KeyProblem, Section, Str, section
from fedsov.exceptions import ConfigError, DataError
from fedsov.fileio import atomic_writer
from fedsov.refs import resolve_ref

__all__ = ["DataSpec", "Dataset", "load_local_data", "save_npz"]


@dataclass(frozen=True)
class Dataset:
    """Features ``x`` (float32, shape ``(n, ...)``) and labels ``y`` (int64, shape ``(n,)``)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        """Largest label plus one (0 for an empty dataset)."""
        return int(self.y.max()) + 1 if self.y.size else 0

    def fingerprint(self) -> str:
        """SHA-256 of the examples as loaded (float32 features, int64 labels, in order).

        The same data read from CSV or NPZ has the same fingerprint; a site's privacy
        ledger keys its releases by it, so ε follows the data.
        """
        digest = hashlib.sha256(b"fedsov-dataset-v1\0")
        x = np.ascontiguousarray(self.x, dtype=np.float32)
        y = np.ascontiguousarray(self.y, dtype=np.int64)
        digest.update(repr((x.shape, y.shape)).encode())
        digest.update(x.data)
        digest.update(y.data)
        return digest.hexdigest()

    def subset(self, indices: np.ndarray | Sequence[int]) -> Dataset:
        """The examples at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self.x[idx], self.y[idx])

    def validate(self, source: str) -> None:
        """Raise DataError naming ``source`` unless the dataset is well formed."""
        x, y = self.x, self.y
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise DataError(f"{source}: x and y must be numpy arrays")
        if y.ndim != 1:
            raise DataError(f"{source}: labels must be one-dimensional, got shape {y.shape}")
        if x.ndim < 2:
            raise DataError(f"{source}: features must have shape (n, ...), got shape {x.shape}")
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"{source}: {x.shape[0]} feature rows but {y.shape[0]} labels (lengths differ)"
            )
        if y.shape[0] == 0:
            raise DataError(f"{source}: the dataset is empty")
        if x.dtype.kind not in "fiub":
            raise DataError(f"{source}: features must be numeric, got dtype {x.dtype}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0, 0])
            raise DataError(f"{source}: features are not finite (NaN or Inf), first at row {row}")
        if y.dtype.kind not in "iu":
            raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
        if y.min() < 0:
            raise DataError(f"{source}: labels must be non-negative, found {int(y.min())}")


@section
class DataSpec(Section):
    """Where a site's data comes from: exactly one of a file ``path`` or a ``loader`` reference."""

    SECTION = "data"
    path: ConfigPath | None = None
    loader: Str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    label_column: Str = "label"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.loader is None):
            raise KeyProblem("path", "give exactly one of 'path' (a CSV/NPZ file) or 'loader'")


def _as_dataset(x: Any, y: Any, source: str) -> Dataset:
    """Convert to float32/int64 (labels must be integer-valued) and validate."""
    try:
        xa = np.asarray(x)
        ya = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: cannot convert data to arrays: {exc}") from exc
    if xa.dtype.kind not in "fiub":
        raise DataError(f"{source}: features must be numeric, got dtype {xa.dtype}")
    if ya.dtype.kind == "f":
        finite = np.isfinite(ya)
        if not finite.all() or not np.array_equal(ya, np.round(ya)):
            raise DataError(f"{source}: labels must be integers")
    elif ya.dtype.kind not in "iub":
        raise DataError(f"{source}: labels must be integers, got dtype {ya.dtype}")
    with np.errstate(over="ignore"):
        ds = Dataset(xa.astype(np.float32), ya.astype(np.int64))
    ds.validate(source)
    return ds


def _load_npz(path: Path) -> Dataset:
    source = str(path)
    if not zipfile.is_zipfile(path):
        raise DataError(f"{source}: not an NPZ (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise DataError(
                    f"{source}: missing array(s) {', '.join(missing)} "
                    f"(found: {', '.join(npz.files) or 'none'})"
                )
            x, y = npz["x"], npz["y"]
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DataError(f"{source}: cannot read array without pickle: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{source}: not a readable NPZ file: {exc}") from exc
    return _as_dataset(x, y, source)


def _parse_cell(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{path}, line {line}: column {column!r} holds non-numeric value {text!r}"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{path}, line {line}: column {column!r} is not finite ({text!r})")
    return value


def _load_csv(path: Path, label_column: str) -> Dataset:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the CSV file is empty (no header row)")
            header = [h.strip() for h in header]
            if label_column not in header:
                raise DataError(
                    f"{path}, line 1: no label column {label_column!r} in header "
                    f"({', '.join(header)})"
                )
            label_at = header.index(label_column)
            features = [i for i in range(len(header)) if i != label_at]
            rows: list[list[float]] = []
            labels: list[int] = []
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise DataError(
                        f"{path}, line {line}: {len(row)} cells but the header has {len(header)}"
                    )
                label = _parse_cell(row[label_at].strip(), path, line, label_column)
                if label != int(label) or label < 0:
                    raise DataError(
                        f"{path}, line {line}: label {row[label_at].strip()!r} "
                        "is not a non-negative integer"
                    )
                labels.append(int(label))
                rows.append([_parse_cell(row[i].strip(), path, line, header[i]) for i in features])
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file: {exc}") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from exc
    if not labels:
        raise DataError(f"{path}: the CSV file has no data rows")
    if not features:
        raise DataError(f"{path}: the CSV file has no feature columns besides {label_column!r}")
    x = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))
    return _as_dataset(x, np.asarray(labels, dtype=np.int64), str(path))


def _load_from_loader(ref: str, kwargs: Mapping[str, Any]) -> Dataset:
    source = f"data loader {ref!r}"
    try:
        fn = resolve_ref(ref, what="data loader")
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    if not callable(fn):
        raise DataError(f"{source} is not callable")
    try:
        result = fn(**dict(kwargs))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{source} failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(result, Dataset):
        return _as_dataset(result.x, result.y, source)
    if isinstance(result, tuple) and len(result) == 2:
        return _as_dataset(result[0], result[1], source)
    raise DataError(f"{source} returned {type(result).__name__}, expected a Dataset or (x, y)")


def load_local_data(spec: DataSpec) -> Dataset:
    """Load and validate a site's data from ``.npz``/``.csv`` or a ``module:function`` loader."""
    if spec.loader is not None:
        return _load_from_loader(spec.loader, spec.kwargs)
    assert spec.path is not None  # guaranteed by DataSpec
    path = Path(spec.path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".csv":
        return _load_csv(path, spec.label_column)
    raise DataError(f"{path}: unsupported data file type {suffix!r} (expected .npz or .csv)")


def save_npz(path: Path, ds: Dataset, *, durable: bool = True) -> None:
    """Write ``ds`` as ``x``/``y`` arrays to ``path`` atomically (temp file, fsync unless
    not ``durable``, replace)."""
    path = Path(path)
    ds.validate(str(path))
    with atomic_writer(path, durable=durable) as fh:
        np.savez(fh, x=np.ascontiguousarray(ds.x), y=np.ascontiguousarray(ds.y))
