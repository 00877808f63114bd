#!/usr/bin/env bash
# Set up the environment (if needed) and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
exec .venv/bin/python -m estimators bench --preset standard "$@"
