#!/usr/bin/env bash
# Run the test suite against an AddressSanitizer (ASan) build of the kernels.
#
#   tools/memcheck.sh                 # every test in tests/ except the slow ones
#   tools/memcheck.sh tests/test_fuzz.py -x       # any pytest arguments
#   FASTLOSS_FUZZ_EXAMPLES=2000 tools/memcheck.sh tests/test_fuzz.py
#   FASTLOSS_DEBUG=1 tools/memcheck.sh            # also with Cython bounds checks on
#
# What it does:
#  1. copies a snapshot of this checkout's source files -- those git tracks plus
#     untracked ones it does not ignore, i.e. never the in-place .so/.c files or
#     build/ -- into a temporary directory (MEMCHECK_REF=HEAD, or any commit:
#     a clean `git clone` of that commit instead), so the working tree is never built in;
#  2. builds every SIMD variant of the kernels there in place, with
#     -fsanitize=address -fno-omit-frame-pointer added to setup.py's own flags (same
#     -O3 vectorised code as a release build, plus redzones and checks on every
#     load and store the kernels make);
#  3. runs pytest on the snapshot's tests/ (so the tests match the code) with that
#     build on PYTHONPATH and
#       LD_PRELOAD=libasan.so   the ASan runtime must be loaded before python itself;
#                               it then also intercepts malloc, so NumPy's array
#                               buffers get redzones: a kernel reading one element
#                               past an array is caught
#       PYTHONMALLOC=malloc     route Python's small objects through malloc too
#       ASAN_OPTIONS=detect_leaks=0:...   CPython deliberately does not free
#                               everything at exit; leaks are tested by
#                               tests/test_memory.py instead
#     Any ASan report aborts the run (halt_on_error, abort_on_error: exit status 134)
#     and names the faulting kernel line (built with -g); test failures without a
#     report exit 1, a clean run 0.
#
# Requires gcc with libasan (Debian/Ubuntu: libasan8 comes with gcc), Cython and the
# test dependencies.  Set MEMCHECK_KEEP=1 to keep the build directory.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastloss-asan.XXXXXX")"
cleanup() { [ "${MEMCHECK_KEEP:-0}" = 1 ] && echo "memcheck: build kept in $work" || rm -rf "$work"; }
trap cleanup EXIT

libasan="$(${CC:-gcc} -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "memcheck: libasan.so not found (${CC:-gcc} -print-file-name=libasan.so)" >&2
    exit 2
fi
libasan="$(readlink -f "$libasan")"
# libstdc++ preloaded as well: ASan resolves the real __cxa_throw when it starts, and
# python itself does not link libstdc++, so a C++ extension throwing later (matplotlib's
# ft2font, torch) would hit "CHECK failed: real___cxa_throw != 0" without it.
libstdcxx="$(readlink -f "$(${CC:-gcc} -print-file-name=libstdc++.so)")"

if [ -n "${MEMCHECK_REF:-}" ]; then
    echo "memcheck: cloning $repo at $MEMCHECK_REF into $work"
    git clone --quiet --no-hardlinks "$repo" "$work/src-tree"
    git -C "$work/src-tree" checkout --quiet "$MEMCHECK_REF"
else
    echo "memcheck: copying the working tree of $repo (HEAD $(git -C "$repo" rev-parse --short HEAD) + local changes) into $work"
    git -C "$repo" ls-files -z --cached --others --exclude-standard | python -c '
import os, shutil, sys
src, dst = sys.argv[1:]
for name in sys.stdin.buffer.read().decode().split("\0"):
    path = os.path.join(src, name)
    if name and os.path.isfile(path):  # (a tracked file deleted locally is skipped)
        os.makedirs(os.path.dirname(os.path.join(dst, name)), exist_ok=True)
        shutil.copy2(path, os.path.join(dst, name))
' "$repo" "$work/src-tree"
fi
cd "$work/src-tree"

echo "memcheck: building the kernels with -fsanitize=address (FASTLOSS_DEBUG=${FASTLOSS_DEBUG:-0})"
# The sanitizer flags go into CC, not CFLAGS/LDFLAGS: distutils links setup.py's
# OpenMP probe (an executable) with CC alone, and a probe compiled with ASan but
# linked without it fails, which would silently give a build without OpenMP.
# FASTLOSS_OPENMP=1 makes that an error instead.
CC="${CC:-gcc} -fsanitize=address -fno-omit-frame-pointer" \
CFLAGS="-g ${CFLAGS:-}" \
FASTLOSS_OPENMP=1 \
    python setup.py --quiet build_ext --inplace > "$work/build.log" 2>&1 || {
        tail -50 "$work/build.log" >&2
        echo "memcheck: build failed (log above)" >&2
        exit 2
    }
ls src/fastloss/_kernels_*.so

export PYTHONPATH="$work/src-tree/src${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$libasan:$libstdcxx${LD_PRELOAD:+:$LD_PRELOAD}"
export PYTHONMALLOC=malloc
# Reports go to files (pytest captures file descriptor 2, and an aborted process
# never gives its captured output back): $work/asan.<pid>, printed below.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1:log_path=$work/asan:${ASAN_OPTIONS:-}"

# The build under test really is the sanitized one:
python - <<'EOF'
import fastloss, fastloss._dispatch as d, os
where = os.path.dirname(fastloss.__file__)
assert "fastloss-asan" in where, f"imported {where}, not the ASan build"
assert d.kernels.built_with_openmp(), "the ASan build has no OpenMP"
print(f"memcheck: fastloss from {where}; SIMD paths {d.available_paths()}; OpenMP on")
EOF

if [ "$#" -eq 0 ]; then
    set -- tests -m "not slow"
fi
echo "memcheck: python -m pytest $* (ASan)"
status=0
python -m pytest -q -p no:cacheprovider "$@" || status=$?
reports=$(ls "$work"/asan.* 2>/dev/null || true)
if [ -n "$reports" ]; then
    cat $reports
    status=134
fi
case "$status" in
    0) echo "memcheck: clean -- no AddressSanitizer report, all tests passed" ;;
    1) echo "memcheck: no AddressSanitizer report, but some tests failed (see above)" ;;
    134) echo "memcheck: AddressSanitizer report (see above): the run was aborted" ;;
    *) echo "memcheck: pytest exited with status $status" ;;
esac
exit "$status"
