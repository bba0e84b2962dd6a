"""Exports: the verified blob byte for byte, or a torch state dict a fresh model loads."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import pytest
import safetensors.numpy
import torch
from conftest import Federation, build

from fedsov.exceptions import ConfigError, StateError
from fedsov.modelref import load_weights
from fedsov.models import ExportFormat, ModelRegistry, export_model


def data_section(path: Path) -> bytes:
    data = path.read_bytes()
    (size,) = struct.unpack_from("<Q", data)
    return data[8 + size :]


def test_safetensors_export_is_the_blob_byte_for_byte(
    federation: Federation, tmp_path: Path
) -> None:
    registry = ModelRegistry.open(federation.out)
    dest = tmp_path / "exported" / "model.safetensors"
    assert export_model(registry, federation.sha(3), dest) is ExportFormat.SAFETENSORS
    assert dest.read_bytes() == federation.blob(3).read_bytes()
    assert hashlib.sha256(data_section(dest)).hexdigest() == federation.sha(3)
    header = json.loads(dest.read_bytes()[8 : 8 + struct.unpack_from("<Q", dest.read_bytes())[0]])
    assert header["__metadata__"]["fedsov_model_sha256"] == federation.sha(3)
    arrays = safetensors.numpy.load_file(str(dest))
    for name, expected in federation.models[3].arrays().items():
        assert arrays[name].tobytes() == expected.tobytes()


def outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model(torch.linspace(-2, 2, 5 * 64).reshape(5, 64))
    return out


@pytest.mark.parametrize(("name", "fmt"), [("m.pt", None), ("m.bin", ExportFormat.TORCH)])
def test_torch_export_loads_into_a_fresh_model(
    federation: Federation, tmp_path: Path, name: str, fmt: ExportFormat | None
) -> None:
    registry = ModelRegistry.open(federation.out)
    dest = tmp_path / name
    assert export_model(registry, federation.sha(2), dest, fmt) is ExportFormat.TORCH
    state = torch.load(dest, weights_only=True)
    assert list(state) == list(federation.models[2].manifest.names)
    fresh = build()
    fresh.load_state_dict(state, strict=True)
    reference = build()
    load_weights(reference, registry.load(federation.sha(2)))
    assert torch.equal(outputs(fresh), outputs(reference))
    assert not torch.equal(outputs(fresh), outputs(build()))  # the weights did change it


def test_a_tampered_blob_is_not_exported(federation: Federation, tmp_path: Path) -> None:
    blob = bytearray(federation.blob(1).read_bytes())
    blob[-1] ^= 0x80
    federation.blob(1).write_bytes(bytes(blob))
    registry = ModelRegistry.open(federation.out)
    for fmt in ExportFormat:
        dest = tmp_path / f"model.{fmt}"
        with pytest.raises(StateError, match=f"^{re.escape(str(federation.blob(1)))}: damaged"):
            export_model(registry, federation.sha(1), dest, fmt)
        assert not dest.exists()
    assert list(tmp_path.iterdir()) == [federation.out]  # no temporary file left behind


def test_export_to_a_folder_is_refused(federation: Federation, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        export_model(ModelRegistry.open(federation.out), federation.sha(0), tmp_path)
