#!/usr/bin/env bash
# CI step for the asv suite (benchmarks/): `asv check`, then one quick pass of the benchmarks
# against the installed package (.venv, --python=same: nothing is built), results not saved.
# Fails if a benchmark module does not import, if any benchmark fails, or if asv exits non-zero.
#
#   bash scripts/asv_ci.sh            # smoke subset: every benchmark at its small sizes (~1-2 min)
#   ASV_CI_BENCH=all bash scripts/asv_ci.sh     # every default case (~2-4 min on 2 cores)
#   ASV_CI_BENCH='Accuracy' bash scripts/asv_ci.sh  # any asv --bench regex
set -euo pipefail
cd "$(dirname "$0")/.."
ASV=.venv/bin/asv

# Small sizes only: no parameter combination holding 4096, 5000, 20000 or D = 64 (asv matches the
# regex against "name(param, ...)"). Skipped slow cases stay skipped (ASV_SLOW unset).
SMOKE='^(?!.*[(, ](4096|5000|20000|64)[,)])'
case "${ASV_CI_BENCH:-smoke}" in
    smoke) bench=(--bench "$SMOKE") ;;
    all) bench=() ;;
    *) bench=(--bench "$ASV_CI_BENCH") ;;
esac
unset ASV_SLOW

"$ASV" machine --yes >/dev/null  # machine description for a fresh CI box (defaults)
"$ASV" check --python=same

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
"$ASV" run --python=same --quick --dry-run --show-stderr "${bench[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# asv 0.6.6 exits 2 when a benchmark fails, but older asv exits 0: check the output as well
# ("... failed" / "1/4 failed" at the end of a result line, or a failed setup_cache).
if [ "$rc" -ne 0 ] || grep -Eq '(^|[[:space:]])failed[[:space:]]*$|asv: benchmark failed|setup_cache.*failed' "$log"; then
    echo "asv_ci: FAILED (asv exit status $rc; failing benchmarks above)" >&2
    exit 1
fi
if ! grep -Eq '^\[[ 0-9.]+%\] ·+ .*[[:space:]]ok$' "$log"; then
    echo "asv_ci: FAILED (no benchmark ran)" >&2
    exit 1
fi
echo "asv_ci: ok"
