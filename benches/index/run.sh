#!/usr/bin/env bash
# PDQ matching-index benchmark: Haven's index beside faiss (IndexBinaryFlat and
# IndexBinaryMultiHash) on the same synthetic hashes, in the same run. See BENCHMARKS.md.
#
#   benches/index/run.sh [SIZES...]      (default: 1000000 10000000)
#
# Needs python3 with venv; faiss-cpu and numpy are installed from PyPI into $VENV.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -gt 0 ]; then SIZES=("$@"); else SIZES=(1000000 10000000); fi
WORK=${WORK:-/tmp/haven-index-bench}
VENV=${VENV:-/tmp/faissvenv}
mkdir -p "$WORK"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q faiss-cpu numpy
fi
cargo build --release -q -p haven-pdq --example index_bench
BIN=${CARGO_TARGET_DIR:-target}/release/examples/index_bench
echo "# $(date -u +%FT%TZ) $(nproc) cores; load: $(uptime | sed 's/.*load average: //')"
echo "# faiss $("$VENV/bin/python" -c 'import faiss; print(faiss.__version__)')"
for n in "${SIZES[@]}"; do
  for kind in random clustered; do
    p="$WORK/$kind-$n"
    [ -f "$p.data" ] || "$BIN" gen --n "$n" --kind "$kind" --queries 1000 --seed 1 --out "$p"
    echo "## $kind n=$n (load: $(uptime | sed 's/.*load average: //'))"
    "$BIN" run --in "$p" --radius 31 --check 50
    "$VENV/bin/python" benches/index/faiss_bench.py --in "$p" --radius 31
  done
done
