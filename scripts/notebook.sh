#!/usr/bin/env bash
# Start JupyterLab on the project's notebooks, the way the `notebook` docker-compose service does.
#   scripts/notebook.sh                  -> http://127.0.0.1:8888/lab?token=...  (printed by Jupyter)
# Environment: SPINESCAN_NOTEBOOK_IP (default 127.0.0.1; the container uses 0.0.0.0),
# SPINESCAN_NOTEBOOK_PORT (default 8888), SPINESCAN_NOTEBOOK_TOKEN (default: Jupyter makes one).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v jupyter >/dev/null 2>&1; then
  echo "Error: jupyter is not installed. Install the notebook extra: pip install -e '.[train,notebook]'" >&2
  exit 2
fi
args=(
  --no-browser
  --ip "${SPINESCAN_NOTEBOOK_IP:-127.0.0.1}"
  --port "${SPINESCAN_NOTEBOOK_PORT:-8888}"
  --ServerApp.root_dir="$PWD"
  --ServerApp.default_url=/lab/tree/notebooks/walkthrough.ipynb
)
if [ -n "${SPINESCAN_NOTEBOOK_TOKEN:-}" ]; then
  args+=(--IdentityProvider.token="$SPINESCAN_NOTEBOOK_TOKEN")
fi
if [ "$(id -u)" = 0 ]; then
  args+=(--allow-root)
fi
exec jupyter lab "${args[@]}"
