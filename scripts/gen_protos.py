"""Generate Python code, gRPC stubs and mypy stubs from protos/ into protos/gen/.

Run after editing any .proto:  python scripts/gen_protos.py
tests/unit/test_proto_drift.py fails when the checked-in output differs from a fresh run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GEN_ROOT = PROTO_ROOT / "gen"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "sightline").rglob("*.proto"))


def generate(out: Path) -> None:
    """Write generated modules for every .proto under protos/sightline into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    bindir = Path(sys.executable).parent  # mypy-protobuf's plugins live beside the interpreter
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for pkg_dir in {p.parent for p in out.rglob("*.py")} | {out / "sightline"}:
        d = pkg_dir
        while d != out:
            (d / "__init__.py").touch()
            d = d.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=GEN_ROOT, help="output folder (default protos/gen)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(tmp, args.out)
    print(f"generated {len(proto_files())} protos into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
