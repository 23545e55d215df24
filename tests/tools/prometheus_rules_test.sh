#!/usr/bin/env bash
# tools/prometheus/derpd.rules.yml: `promtool check rules` accepts it, and its
# alerts fire when and only when they should (`promtool test rules` over the
# series in prometheus_rules_test.yml), and every metric the rules use is one
# a running derpd serves.
set -euo pipefail
: "${DERPD_SOURCE_ROOT:?}"
if ! command -v promtool >/dev/null; then
  echo "SKIP: promtool is not installed (Debian package prometheus)"
  exit 77
fi
rules=$DERPD_SOURCE_ROOT/tools/prometheus/derpd.rules.yml
promtool check rules "$rules"
promtool test rules "$DERPD_SOURCE_ROOT/tests/tools/prometheus_rules_test.yml"
# Every metric the rules use is one a running derpd serves.
: "${DERPD_BINARY:?}"
tmp=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
# TLS with a certificate: the certificate metrics exist only then.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/127.0.0.1.key" -out "$tmp/127.0.0.1.crt" 2>/dev/null
"$DERPD_BINARY" -a 127.0.0.1:0 -http-port -1 -stun-port 0 -c "$tmp/key" -certmode manual \
  -certdir "$tmp" -hostname 127.0.0.1 --metrics-addr 127.0.0.1:0 >"$tmp/log" 2>&1 &
pid=$!
url=""
for _ in $(seq 1 100); do
  url=$(grep -o '/metrics and /debug/ on http://127.0.0.1:[0-9]*' "$tmp/log" | sed 's/.* on //' || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "FAIL: derpd did not start:"; cat "$tmp/log"; exit 1; }
curl -sf "$url/metrics" >"$tmp/metrics"

# tools/grafana/derpd.json: its queries are valid PromQL (promtool checks them
# as recording rules, with Grafana's variables filled in) over metrics derpd
# serves.
dashboard=$DERPD_SOURCE_ROOT/tools/grafana/derpd.json
/usr/bin/python3 - "$dashboard" >"$tmp/dashboard.rules.yml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
if not exprs:
    sys.exit("FAIL: the dashboard has no queries")
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "5m").replace("$instance", ".*")
    print(f"      - record: dashboard:panel{i}\n        expr: {json.dumps(e)}")
PY
promtool check rules "$tmp/dashboard.rules.yml" >/dev/null ||
  { echo "FAIL: a dashboard query is not valid PromQL:"; promtool check rules "$tmp/dashboard.rules.yml"; exit 1; }
for metric in $(grep -oh '\b\(derpd\|process\)_[a-z_]*' "$rules" "$tmp/dashboard.rules.yml" | sort -u); do
  if ! grep -q "^# TYPE $metric " "$tmp/metrics"; then
    echo "FAIL: the rules or the dashboard use $metric, which derpd does not serve"
    exit 1
  fi
done
echo "ok: rules checked and tested; dashboard queries valid; every metric served"
