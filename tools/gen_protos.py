"""Generate Python code and the Envoy descriptor set from protos/.

Output goes to gen/ (never edited by hand, never committed):
  gen/stratus/...        _pb2, _pb2.pyi and _pb2_grpc modules
  gen/buf/validate/...   the protovalidate annotations our protos import
  gen/stratus.binpb      FileDescriptorSet with imports and source info, read by
                         Envoy's transcoder, `buf lint` and the edge body guard

`buf/validate/validate.proto` is not shipped as source by any package we can
install offline, but protovalidate ships its compiled FileDescriptorProto. We
hand that to protoc through --descriptor_set_in, so the annotations are the
exact ones the validator at run time understands.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tokenize
from pathlib import Path

import google.api
import protovalidate
from google.protobuf import descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"
VALIDATE_PROTO = "buf/validate/validate.proto"


def _validate_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """Read the serialized validate.proto descriptor embedded in protovalidate."""
    source = (Path(protovalidate.__file__).parent / "_gen/buf/validate/validate_pb.py").read_text()
    start = source.index("b'\\n\\x1b" + VALIDATE_PROTO)
    chunks: list[bytes] = []
    for token in tokenize.generate_tokens(io.StringIO(source[start:]).readline):
        if token.type == tokenize.STRING:
            chunks.append(ast.literal_eval(token.string))
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            break
    fdp = descriptor_pb2.FileDescriptorProto.FromString(b"".join(chunks))
    if fdp.name != VALIDATE_PROTO:
        raise SystemExit(f"unexpected descriptor {fdp.name!r} in protovalidate")
    return fdp


def _write_dependency_set(path: Path) -> None:
    deps = descriptor_pb2.FileDescriptorSet()
    for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2):
        fdp = deps.file.add()
        module.DESCRIPTOR.CopyToProto(fdp)
    deps.file.append(_validate_file_descriptor())
    path.write_bytes(deps.SerializeToString())


def _googleapis_include() -> str:
    # googleapis-common-protos ships google/api/*.proto beside its _pb2 modules.
    return str(Path(google.api.__path__[0]).parent.parent)


def protoc(*args: str) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", *args]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"protoc failed:\n{result.stderr}")


def main() -> None:
    GEN.mkdir(exist_ok=True)
    deps = GEN / "deps.binpb"
    _write_dependency_set(deps)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    common = [f"--descriptor_set_in={deps}", f"-I{PROTOS}", f"-I{_googleapis_include()}"]
    protoc(*common, f"--python_out={GEN}", f"--pyi_out={GEN}", f"--grpc_python_out={GEN}", *sources)
    protoc(
        *common,
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={GEN / 'stratus.binpb'}",
        *sources,
        # Error details are printed by the transcoder, so their types must be known.
        "google/rpc/error_details.proto",
    )
    # Our modules import buf.validate.validate_pb2; generate it from the same descriptor.
    protoc(f"--descriptor_set_in={deps}", f"--python_out={GEN}", VALIDATE_PROTO)
    print(f"generated {len(sources)} protos into {os.path.relpath(GEN, ROOT)}/")


if __name__ == "__main__":
    main()
