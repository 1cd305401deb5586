#!/usr/bin/env bash
# PDQ hashing benchmark: Meta's reference core as users call it (the `pdqhash` Python binding
# on Pillow-decoded pixels) against `haven hash`, same files, same run, whole process against
# whole process. See BENCHMARKS.md, "PDQ hashing".
#
#   benches/pdq/run.sh [WORKDIR]        (default /tmp/haven-pdq-bench; nothing lands in the repo)
#
# Needs python3 (venv), hyperfine, cargo. RUNS=n sets hyperfine's run count (default 5).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${1:-/tmp/haven-pdq-bench}
vectors=${VECTORS:-$repo/vectors/pdq/images}
runs=${RUNS:-5}
mkdir -p "$work"
py=${PYTHON:-$work/venv/bin/python}
if [ ! -x "$py" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q pdqhash==0.2.8 pillow numpy
  py=$work/venv/bin/python
fi
[ -d "$work/ppm" ] || "$py" "$here/make_images.py" "$vectors" "$work"
cargo build --release -q -p haven --manifest-path "$repo/Cargo.toml"
haven=${CARGO_TARGET_DIR:-$repo/target}/release/haven
cores=$(nproc)
n=$(ls "$work/ppm" | wc -l)
mp=$("$py" -c "import os,sys;from PIL import Image;d=sys.argv[1];print(round(sum(Image.open(os.path.join(d,f)).size[0]*Image.open(os.path.join(d,f)).size[1] for f in os.listdir(d))/1e6,1))" "$work/ppm")
echo "== $n images per set, $mp megapixels in total; $cores cores; $(uname -m)"

echo "== identical output"
for set in ppm jpeg; do
  "$py" "$here/reference.py" "$work/$set" >"$work/ref-$set.txt"
  "$haven" hash --jobs 1 "$work/$set" >"$work/haven-$set.txt"
  "$haven" hash "$work/$set" >"$work/haven-$set-all.txt"
  cmp -s "$work/haven-$set.txt" "$work/haven-$set-all.txt" || { echo "parallel output differs ($set)"; exit 1; }
done
if cmp -s "$work/ref-ppm.txt" "$work/haven-ppm.txt"; then
  echo "ppm: all $n hashes and qualities identical to the reference"
else
  echo "ppm: OUTPUT DIFFERS from the reference"; diff "$work/ref-ppm.txt" "$work/haven-ppm.txt" | head; exit 1
fi
"$py" - "$work/ref-jpeg.txt" "$work/haven-jpeg.txt" <<'PY'
import sys
a = [l.strip().split(",") for l in open(sys.argv[1])]
b = [l.strip().split(",") for l in open(sys.argv[2])]
assert [x[2] for x in a] == [x[2] for x in b], "different files or order"
d = [bin(int(x[0], 16) ^ int(y[0], 16)).count("1") for x, y in zip(a, b)]
same = sum(1 for x, y in zip(a, b) if x[:2] == y[:2])
print("jpeg (different decoders): %d/%d identical, max %d bits apart, mean %.2f" % (same, len(d), max(d), sum(d) / len(d)))
PY

echo "== load before: $(uptime)"
hyperfine --warmup 1 --runs "$runs" --export-markdown "$work/results.md" \
  -n "reference, PPM, 1 core" "$py $here/reference.py $work/ppm" \
  -n "haven, PPM, --jobs 1" "$haven hash --jobs 1 $work/ppm" \
  -n "reference, JPEG, 1 core" "$py $here/reference.py $work/jpeg" \
  -n "haven, JPEG, --jobs 1" "$haven hash --jobs 1 $work/jpeg" \
  -n "reference, PPM, $cores processes" "$py $here/reference.py --jobs $cores $work/ppm" \
  -n "haven, PPM, all cores" "$haven hash $work/ppm" \
  -n "reference, JPEG, $cores processes" "$py $here/reference.py --jobs $cores $work/jpeg" \
  -n "haven, JPEG, all cores" "$haven hash $work/jpeg"
echo "== load after: $(uptime)"
echo "(divide $n images by each mean for images/s)"
