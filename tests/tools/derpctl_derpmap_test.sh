#!/usr/bin/env bash
# derpctl derpmap: the Tailscale policy file's derpMap (JSON) and headscale's
# derp.paths file (YAML) for a region of derpd nodes, read back by a JSON and
# a YAML parser and compared field by field with tailcfg's names; bad node
# specs are usage errors naming what is wrong.
set -euo pipefail
: "${DERPCTL_BINARY:?}"
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pin=sha256-raw:$(printf 'ab%.0s' $(seq 1 32))
nodes=(derp1.example.com "derp2.example.com:8443,stun=3479" "203.0.113.7,certname=$pin"
       "[2001:db8::7]:443,stun=off")
"$DERPCTL_BINARY" derpmap --region-id 901 --region-code home --region-name "Home lab" \
  --format tailscale "${nodes[@]}" >"$tmp/map.json" 2>"$tmp/err" || fail "derpmap exited $?: $(cat "$tmp/err")"
grep -q "2001:db8::7 is an IP" "$tmp/err" || fail "no CertName warning for an IP node: $(cat "$tmp/err")"
"$DERPCTL_BINARY" derpmap --region-id 901 --region-code home --region-name "Home lab" \
  --format headscale "${nodes[@]}" >"$tmp/derp.yaml" 2>/dev/null
/usr/bin/python3 - "$tmp/map.json" "$tmp/derp.yaml" "$pin" <<'PY'
import json, sys, yaml
pin = sys.argv[3]
want = [
    {"Name": "901a", "RegionID": 901, "HostName": "derp1.example.com"},
    {"Name": "901b", "RegionID": 901, "HostName": "derp2.example.com", "STUNPort": 3479,
     "DERPPort": 8443},
    {"Name": "901c", "RegionID": 901, "HostName": "203.0.113.7", "CertName": pin,
     "IPv4": "203.0.113.7"},
    {"Name": "901d", "RegionID": 901, "HostName": "2001:db8::7", "IPv6": "2001:db8::7",
     "STUNPort": -1},
]
m = json.load(open(sys.argv[1]))["derpMap"]
assert m["OmitDefaultRegions"] is False, m
r = m["Regions"]["901"]
assert (r["RegionID"], r["RegionCode"], r["RegionName"]) == (901, "home", "Home lab"), r
assert r["Nodes"] == want, json.dumps(r["Nodes"], indent=1)
y = yaml.safe_load(open(sys.argv[2]))["regions"][901]
assert (y["regionid"], y["regioncode"], y["regionname"]) == (901, "home", "Home lab"), y
for got, w in zip(y["nodes"], want, strict=True):
    lower = {k.lower(): v for k, v in w.items()}
    lower.setdefault("stunport", 0)
    lower.setdefault("derpport", 0)
    lower["stunonly"] = False
    assert got == lower, (got, lower)
print("ok: JSON and YAML match")
PY
# expect_usage TEXT ARGS...: exit 2 with TEXT in the message.
expect_usage() {
  local text=$1 rc=0 err
  shift
  err=$("$DERPCTL_BINARY" derpmap "$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" = 2 ] || fail "derpmap $*: exit $rc, want 2"
  grep -qF -- "$text" <<<"$err" || fail "derpmap $*: the message does not say '$text': $err"
}
expect_usage "no nodes given"
expect_usage "want a host name or an IP address" "bad_host!"
expect_usage "want a port from 1 to 65535" "derp1.example.com:99999"
expect_usage "certname wants sha256-raw:" "derp1.example.com,certname=sha256-raw:12"
expect_usage 'unknown key "color"' "derp1.example.com,color=blue"
expect_usage "region id: want 1 to 999" --region-id 0 derp1.example.com
echo "ok: derpctl derpmap"
