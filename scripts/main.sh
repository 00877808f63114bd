#!/usr/bin/env bash
# The main job: recompute the standard report from scratch and check it against the committed one.
#
#   bash scripts/main.sh [--resume] [--update] [--no-progress]
#
# 1. Runs `python -m estimators bench --preset standard` into a fresh folder, results/.reproduce/
#    (git-ignored). Everything is recomputed there: the references (their cache lives inside it)
#    and the package's own cache (the trained vae-digits field, the compiled kernel) in
#    results/.reproduce/.cache/package.
# 2. Compares the new standard.csv with the committed results/standard.csv cell by cell
#    (`python -m estimators compare`): every column but time_per_call_s, numbers within
#    |new - committed| <= 1e-9 + 1e-9 |committed|, NaN = NaN, text exactly (sign counts of
#    estimates that equal their reference up to rounding are listed apart; the statistics of
#    estimators that train a network, whose rounding depends on the CPU's vector instructions, within
#    4.4 combined standard errors). Prints how many cells agree and lists those that do not; exits 1
#    if any differ.
#
# --resume (or MAIN_RESUME=1): continue an interrupted run in results/.reproduce/ instead of starting over.
# --update (or MAIN_UPDATE=1): after a successful comparison, copy the new CSV over results/standard.csv
#     and redraw results/ (plots and README.md). Without it nothing under results/ but
#     results/.reproduce/ is written, so a clean checkout stays clean.
set -euo pipefail
cd "$(dirname "$0")/.."

resume="${MAIN_RESUME:-0}"
update="${MAIN_UPDATE:-0}"
bench_flags=()
for arg in "$@"; do
    case "$arg" in
        --resume) resume=1 ;;
        --update) update=1 ;;
        --no-progress) bench_flags+=(--no-progress) ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
        *) echo "error: unknown option $arg (see bash scripts/main.sh --help)" >&2; exit 2 ;;
    esac
done

bash scripts/env.sh
py=.venv/bin/python
out=results/.reproduce
committed=results/standard.csv
start=$(date +%s)

if [ "$resume" = 1 ] && [ -d "$out" ]; then
    echo "main: resuming the run in $out/"
else
    rm -rf "$out"
    echo "main: recomputing the standard report from scratch in $out/"
fi
mkdir -p "$out/.cache/package"
export VAE_ESTIMATORS_CACHE="$PWD/$out/.cache/package"
"$py" -m estimators bench --preset standard --out "$out" --no-report ${bench_flags[@]+"${bench_flags[@]}"}

echo "main: comparing $out/standard.csv with the committed $committed"
status=0
"$py" -m estimators compare "$out/standard.csv" "$committed" --ignore time_per_call_s || status=$?

if [ "$status" = 0 ] && [ "$update" = 1 ]; then
    cp "$out/standard.csv" "$committed"
    "$py" -m estimators report --out results >/dev/null
    echo "main: updated $committed and redrew the report in results/"
elif [ "$status" = 0 ]; then
    echo "main: results/ left untouched (pass --update to refresh it; plots of the new run:" \
         "$py -m estimators report --out $out)"
fi
echo "main: $( [ "$status" = 0 ] && echo "the standard report reproduces" || echo "the standard report does NOT reproduce" )" \
     "(wall time $(( $(date +%s) - start )) s)"
exit "$status"
