#!/usr/bin/env bash
# System packages the README's two commands need beyond Python: npm (the browser page's
# onnxruntime-web, pinned by web/package-lock.json) and Debian's chromium (the browser test;
# never a downloaded browser). Installs what is missing when it can (root with apt-get);
# otherwise says what to install and leaves the decision to the caller.
set -euo pipefail
missing=()
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "Missing system packages: ${missing[*]} (install them with: sudo apt-get install -y ${missing[*]});" \
       "the browser page and its test need them." >&2
fi
