"""Generate (or check) the Python code for protos/ into fedsov/proto/.

    python -m fedsov.proto.generate          # regenerate in place
    python -m fedsov.proto.generate --check  # exit 1 if committed code drifted

The proto path equals the Python import path, so ``protos/fedsov/proto/v1/x.proto``
becomes ``fedsov/proto/v1/x_pb2.py`` (+ ``.pyi`` stub and ``x_pb2_grpc.py``).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over every .proto file, writing into out_dir; returns the files written."""
    from grpc_tools import protoc  # dev dependency: imported only when generating

    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    return sorted(p for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code drifted")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        drifted: list[str] = []
        for path in fresh:
            rel = path.relative_to(tmp)
            target = REPO_ROOT / rel
            if args.check:
                if not target.exists() or not filecmp.cmp(path, target, shallow=False):
                    drifted.append(str(rel))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        expected = {str(p.relative_to(tmp)) for p in fresh}
        committed = {
            str(p.relative_to(REPO_ROOT))
            for p in (REPO_ROOT / "fedsov" / "proto").rglob("*")
            if p.name.endswith(GENERATED_SUFFIXES)
        }
        stale = sorted(committed - expected)
        if args.check and (drifted or stale):
            for name in drifted:
                print(f"generated code differs from protos/: {name}", file=sys.stderr)
            for name in stale:
                print(f"generated file has no .proto source: {name}", file=sys.stderr)
            print("run `make protos` and commit the result", file=sys.stderr)
            return 1
        if not args.check:
            for name in stale:
                (REPO_ROOT / name).unlink()
            print(f"generated {len(fresh)} files from {len(proto_files())} .proto files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
