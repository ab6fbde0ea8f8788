#!/usr/bin/env bash
# A quick dry run of the asv suite in benchmarks/, so that it cannot rot.
#
# Runs every benchmark once (asv run --quick) in this Python (--python=same:
# nothing is built or downloaded) against the fastloss it imports, i.e. the
# installed package; a PYTHONPATH in the environment is passed on to asv's
# benchmark processes as ASV_PYTHONPATH (asv drops PYTHONPATH otherwise), so
# `PYTHONPATH=src tools/asv_quick.sh` runs an in-place build. Nothing is saved
# (--dry-run; asv's config, env and results dirs live in a temporary
# directory). asv needs a machine entry: one named "fastloss-asv-quick" is
# added to ~/.asv-machine.json (other entries are left alone).
#
# Exits non-zero when asv fails, when any benchmark fails (asv's exit status 2),
# or when its output shows a failed benchmark or no benchmark at all (checked
# separately, in case a version of asv exits 0 on failures).
#
# Usage: tools/asv_quick.sh [extra asv run arguments, e.g. --bench Losses]
# Environment: PYTHON (default python3), ASV_QUICK_BENCHMARK_DIR (default
# benchmarks/benchmarks; used to test this script itself).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
machine="fastloss-asv-quick"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$python" -c 'import fastloss; print(f"asv quick: fastloss {fastloss.__version__} from {fastloss.__file__}")'

# asv wants a commit to label results with, even though --python=same builds
# nothing: outside a git checkout (an unpacked sdist), give it an empty repository.
repo="$root"
if ! git -C "$root" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    repo="$tmp/repo"
    git init -q "$repo"
    git -C "$repo" -c user.name=asv -c user.email=asv@localhost commit -q --allow-empty -m asv
fi

# A private copy of asv.conf.json: absolute repo/benchmark paths, scratch dirs in $tmp.
"$python" - "$root" "$tmp" "${ASV_QUICK_BENCHMARK_DIR:-$root/benchmarks/benchmarks}" "$repo" <<'EOF'
import json
import sys

from asv import util

root, tmp, bench_dir, repo = sys.argv[1:]
conf = util.load_json(f"{root}/benchmarks/asv.conf.json", js_comments=True)
conf.update(repo=repo, benchmark_dir=bench_dir, env_dir=f"{tmp}/env",
            results_dir=f"{tmp}/results", html_dir=f"{tmp}/html")
with open(f"{tmp}/asv.conf.json", "w") as f:
    json.dump(conf, f, indent=1)
EOF

"$python" -m asv machine --yes --machine "$machine" --config "$tmp/asv.conf.json" >/dev/null

if [[ -n "${PYTHONPATH:-}" ]]; then
    # asv replaces the benchmark processes' PYTHONPATH with ASV_PYTHONPATH
    # (made absolute: asv runs benchmarks from other directories)
    ASV_PYTHONPATH="$("$python" -c 'import os, sys
print(os.pathsep.join(os.path.abspath(p) for p in sys.argv[1].split(os.pathsep) if p))' "$PYTHONPATH")"
    export ASV_PYTHONPATH
fi

# forkserver: the suite is imported once and each benchmark forked from it, which
# makes the ~200 quick runs take seconds instead of minutes (peak memory then
# includes the forkserver's own baseline, but a dry run keeps no numbers).
status=0
"$python" -m asv run --config "$tmp/asv.conf.json" --machine "$machine" \
    --python=same --quick --dry-run --show-stderr --launch-method=forkserver "$@" \
    2>&1 | tee "$tmp/log" || status=$?

# asv marks a failed benchmark "failed" on its result line, or in the cell of a
# parametrised table; skipped combinations (NotImplementedError) show "n/a".
failed_re='(^|[[:space:]|])failed([[:space:]|]|$)|Traceback \(most recent call last\)'
failed="$(grep -E "$failed_re" "$tmp/log" || true)"
ran="$(grep -cE '^\[ *[0-9.]+%\] [^ ]+ [^ ]+\.(time|peakmem)_' "$tmp/log" || true)"

if [[ "$status" -ne 0 ]]; then
    echo "asv quick: FAILED (asv exit status $status)" >&2
    exit "$status"
fi
if [[ -n "$failed" ]]; then
    echo "asv quick: FAILED (asv exited 0, but its output shows failures):" >&2
    echo "$failed" >&2
    exit 1
fi
if [[ "$ran" -eq 0 ]]; then
    echo "asv quick: FAILED (no benchmark ran)" >&2
    exit 1
fi
echo "asv quick: ok ($ran benchmarks, every parameter combination once)"
