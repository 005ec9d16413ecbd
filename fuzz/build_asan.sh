#!/usr/bin/env bash
# Build the native core with AddressSanitizer and UndefinedBehaviorSanitizer
# and run the codec tests against that build: every scan, encode and CRC the
# hypothesis tests drive then checks for out-of-bounds reads and UB.  The
# native memtable (safepoint._sp_memtable), the base image's get path
# (safepoint._sp_fast), Store.get (safepoint._sp_get) and Store.put
# (safepoint._sp_put), setup.py's ext_modules, are built the same way and
# their tests run too.
#
#   fuzz/build_asan.sh                       # test_records, test_format, test_wal_native, test_wal_yield, test_wal_syncer,
#                                            # test_memtable_native, test_fast_native,
#                                            # test_base_reads, test_get_native, test_put_native
#   HYPOTHESIS_PROFILE=ci fuzz/build_asan.sh -k damage
#   SANITIZER=thread fuzz/build_asan.sh -k "group or gather or yield"
#                                            # ThreadSanitizer on the group-commit engine
#   SANITIZER=thread fuzz/build_asan.sh -k "frozen or thaw or gil or concurrent"
#                                            # ... on the memtable's sorts without the GIL
#   fuzz/build_asan.sh --fuzz scan WORK_CORPUS fuzz/corpus/scan -max_total_time=600
#                                            # an atheris harness on the sanitized core
#
# The sanitized extension lives in a temporary copy of src/; the installed
# one is not touched.  PYTHONMALLOC=malloc gives every Python buffer its own
# heap block with ASan red zones around it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
cc=${CC:-gcc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp -r "$root/src" "$root/native" "$work/"
cp "$root/setup.py" "$root/pyproject.toml" "$root/README.md" "$work/"
rm -f "$work"/src/safepoint/_sp_core*.so "$work"/src/safepoint/_sp_memtable*.so \
    "$work"/src/safepoint/_sp_fast*.so "$work"/src/safepoint/_sp_get*.so \
    "$work"/src/safepoint/_sp_put*.so
if [ "${SANITIZER:-address}" = thread ]; then
    sanitize="-fsanitize=thread -fno-omit-frame-pointer"
    preload_libs="libtsan.so"
else
    sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    preload_libs="libasan.so libubsan.so"
fi
(
    cd "$work"
    # cffi compiles with tmpdir as the working directory, and build.py names
    # its source relative to the project root: build here, then move it in.
    CC=$cc CFLAGS="$sanitize -g" LDFLAGS="$sanitize" "$python" -c \
        "import sys; sys.path.insert(0, 'native'); import build; build.ffibuilder.compile(tmpdir='.')" \
        >/dev/null
    mv safepoint/_sp_core*.so src/safepoint/
    # setup.py's plain extensions, built in place (into src/safepoint/);
    # build_ext rebuilds the cffi core too, with the same flags.
    CC=$cc CFLAGS="$sanitize -g" LDFLAGS="$sanitize" "$python" setup.py -q build_ext --inplace \
        >/dev/null 2>&1
    ls src/safepoint/_sp_memtable*.so src/safepoint/_sp_batch*.so src/safepoint/_sp_fast*.so \
        src/safepoint/_sp_get*.so src/safepoint/_sp_put*.so >/dev/null
)

preload=""
for lib in $preload_libs; do preload="$preload $("$cc" -print-file-name="$lib")"; done
cd "$root"
if [ "${1:-}" = "--fuzz" ]; then
    target=$2
    shift 2
    command=("$python" "$root/fuzz/fuzz_$target.py" "$@")
else
    # --capture=sys: a sanitizer writes its report to fd 2 and then aborts the
    # process; pytest's default fd capture would swallow the report with it.
    command=("$python" -m pytest -q -p no:cacheprovider --capture=sys tests/test_records.py tests/test_format.py \
        tests/test_wal_native.py tests/test_wal_yield.py tests/test_wal_syncer.py tests/test_memtable_native.py tests/test_batch_native.py \
        tests/test_fast_native.py tests/test_base_reads.py tests/test_get_native.py \
        tests/test_put_native.py "$@")
fi
TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0 \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LD_PRELOAD=$preload PYTHONMALLOC=malloc PYTHONPATH="$work/src" \
    "${command[@]}"
