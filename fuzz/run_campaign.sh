#!/usr/bin/env bash
# A fuzzing campaign: every atheris harness in turn, SECONDS each.
#
#   fuzz/run_campaign.sh                  # 4 harnesses x 900 s = 1 CPU-hour
#   fuzz/run_campaign.sh 120 scan payload # 2 minutes each of two harnesses
#
# The corpus each harness grows is kept in $FUZZ_WORK/<target>/ (default
# /tmp/safepoint-fuzz) and reused by the next campaign; fuzz/corpus/<target>/
# is only read.  Crashing inputs land in fuzz/crashes/ (git-ignored): copy
# the ones that matter into fuzz/corpus/<target>/ as found-<what> with a
# regression test.  Runs under nice; prints each harness's libFuzzer totals
# and exits 1 if any harness found a crash.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-900}
shift || true
targets=${*:-scan payload recovery manifest wal_engine memtable}
python=${PYTHON:-python3}
work=${FUZZ_WORK:-/tmp/safepoint-fuzz}
mkdir -p "$work" "$root/fuzz/crashes"

status=0
for t in $targets; do
    mkdir -p "$work/$t"
    log="$work/$t.log"
    start=$(date +%s)
    nice -n "${NICE:-10}" "$python" "$root/fuzz/fuzz_$t.py" "$work/$t" "$root/fuzz/corpus/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$root/fuzz/crashes/$t-" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$')
    corpus=$(find "$work/$t" -type f | wc -l)
    echo "$t: exit $rc, ${execs:-?} executions in $(( $(date +%s) - start )) s, corpus $corpus inputs (log $log)"
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -E '^(==|Traceback|  File|[A-Za-z]+Error|AssertionError)' "$log" | head -20
    fi
done
exit $status
