#!/usr/bin/env bash
# tools/prometheus/derpd.rules.yml: `promtool check rules` accepts it, and its
# alerts fire when and only when they should (`promtool test rules` over the
# series in prometheus_rules_test.yml), and every metric the rules use is one
# derpd serves (its HELP line is in the source).
set -euo pipefail
: "${DERPD_SOURCE_ROOT:?}"
if ! command -v promtool >/dev/null; then
  echo "SKIP: promtool is not installed (Debian package prometheus)"
  exit 77
fi
rules=$DERPD_SOURCE_ROOT/tools/prometheus/derpd.rules.yml
promtool check rules "$rules"
promtool test rules "$DERPD_SOURCE_ROOT/tests/tools/prometheus_rules_test.yml"
for metric in $(grep -o 'derpd_[a-z_]*' "$rules" | sort -u); do
  if ! grep -rq "# HELP $metric " "$DERPD_SOURCE_ROOT/src"; then
    echo "FAIL: the rules use $metric, which derpd does not serve"
    exit 1
  fi
done
echo "ok: rules checked and tested"
