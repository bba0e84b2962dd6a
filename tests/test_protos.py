"""Generated gRPC code must match protos/: regenerate and compare byte for byte."""

from __future__ import annotations

from fedsov.proto import generate


def test_generated_code_matches_protos(capsys: object) -> None:
    assert generate.proto_files(), "no .proto files found"
    assert generate.main(["--check"]) == 0, "run `make protos` and commit the result"


def test_drift_is_detected(tmp_path: object, monkeypatch: object) -> None:
    import pytest

    mp: pytest.MonkeyPatch = monkeypatch  # type: ignore[assignment]
    real = generate.generate

    def tampered(out_dir):  # type: ignore[no-untyped-def]
        files = real(out_dir)
        files[0].write_text(files[0].read_text() + "\n# drift\n")
        return files

    mp.setattr(generate, "generate", tampered)
    assert generate.main(["--check"]) == 1
