"""Checks rendered Kubernetes manifests (YAML on stdin) offline against the
API's schema as Debian's python3-kubernetes models carry it: every field must
be one the API knows at that place, of the right type, and what the API
requires must be there (the models' own validation). Unknown or misspelled
fields fail. Prints one line per object; exits 1 on the first bad document.

With --derpd BINARY, the derpd container of each DaemonSet or StatefulSet is
then checked as deployed: its hardening (non-root, only NET_BIND_SERVICE,
read-only root, the Localhost seccomp profile, hostNetwork with
ClusterFirstWithHostNet, probes, a grace period longer than the drain), and
its arguments and environment (ConfigMap values and downward-API fields
filled in, $(VAR) expanded as the kubelet does) parsed by derpd's own
configuration code (derpd -check-config), which must accept them and name the
expected hostname.
"""
import re
import subprocess
import sys

import kubernetes.client as k8s
import yaml
from kubernetes.client import ApiClient

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def model_for(api_version, kind):
    version = api_version.split("/")[-1]
    name = version[0].upper() + version[1:] + kind
    cls = getattr(k8s, name, None)
    if cls is None:
        raise SystemExit(f"FAIL: no schema for {api_version} {kind} (model {name})")
    return name, cls


def check(value, type_name, path, errors):
    if value is None:
        return
    if type_name == "object":
        return
    if type_name == "datetime":
        return
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(value, list):
            errors.append(f"{path}: want a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            check(item, m.group(1), f"{path}[{i}]", errors)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        if not isinstance(value, dict):
            errors.append(f"{path}: want a map, got {type(value).__name__}")
            return
        for k, v in value.items():
            check(v, m.group(1), f"{path}.{k}", errors)
        return
    if type_name in PRIMITIVES:
        want = PRIMITIVES[type_name]
        if isinstance(value, bool) and type_name != "bool":
            errors.append(f"{path}: want {type_name}, got bool")
        elif not isinstance(value, want):
            errors.append(f"{path}: want {type_name}, got {type(value).__name__} {value!r}")
        return
    cls = getattr(k8s, type_name)
    if not isinstance(value, dict):
        errors.append(f"{path}: want an object ({type_name}), got {type(value).__name__}")
        return
    by_json = {json: attr for attr, json in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field (not in {type_name})")
            continue
        check(v, cls.openapi_types[by_json[key]], f"{path}.{key}", errors)


def expand(text, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def check_derpd(docs, derpd):
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    workloads = [d for d in docs if d["kind"] in ("DaemonSet", "StatefulSet")]
    seen = 0
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        for c in pod["containers"]:
            if c["name"] != "derpd":
                continue
            seen += 1
            where = f"{w['kind']}/{w['metadata']['name']}"
            sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
            problems = []
            if not psc.get("runAsNonRoot") or psc.get("runAsUser", 0) == 0:
                problems.append("must run as a non-root user")
            if sc.get("privileged"):
                problems.append("must not be privileged")
            caps = sc.get("capabilities", {})
            if caps.get("drop") != ["ALL"] or caps.get("add") != ["NET_BIND_SERVICE"]:
                problems.append("must drop ALL capabilities and add only NET_BIND_SERVICE")
            if not sc.get("readOnlyRootFilesystem"):
                problems.append("must have a read-only root file system")
            prof = psc.get("seccompProfile", {})
            if prof.get("type") != "Localhost" or prof.get("localhostProfile") != "derpd.json":
                problems.append("must run under the Localhost seccomp profile derpd.json")
            if not pod.get("hostNetwork") or pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
                problems.append("must use hostNetwork with dnsPolicy ClusterFirstWithHostNet")
            if "livenessProbe" not in c or "readinessProbe" not in c:
                problems.append("must have liveness and readiness probes")
            drain = 10
            for a in c.get("args", []):
                m = re.fullmatch(r"-+drain-timeout=(\d+)s", a)
                if m:
                    drain = int(m.group(1))
            if pod.get("terminationGracePeriodSeconds", 30) <= drain:
                problems.append("the grace period must outlast --drain-timeout")
            if problems:
                raise SystemExit("\n".join(f"FAIL: {where}: {p}" for p in problems))
            env = {}
            for ef in c.get("envFrom", []):
                env.update(configmaps[ef["configMapRef"]["name"]])
            fields = {"spec.nodeName": "node-1", "metadata.name": "derpd-0"}
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = expand(e["value"], env)
                else:
                    env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
            args = [expand(a, env) for a in c.get("args", [])]
            run = subprocess.run([derpd, "-check-config"] + args, env=env, capture_output=True,
                                 text=True)
            if run.returncode != 0:
                raise SystemExit(f"FAIL: {where}: derpd -check-config {args} refused: "
                                 f"{run.stdout}{run.stderr}")
            host = env.get("DERP_DOMAIN", "")
            if not host or f"  -hostname {host}\n" not in run.stdout:
                raise SystemExit(f"FAIL: {where}: derpd did not take DERP_DOMAIN={host}:\n"
                                 f"{run.stdout}")
            print(f"ok: {where}: hardened; derpd accepts its settings (hostname {host})")
    if seen == 0:
        raise SystemExit("FAIL: no derpd container in a DaemonSet or StatefulSet")


def main():
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    if not docs:
        raise SystemExit("FAIL: no objects")
    client = ApiClient()
    for d in docs:
        name, cls = model_for(d.get("apiVersion", ""), d.get("kind", ""))
        where = f"{d['kind']}/{d.get('metadata', {}).get('name', '?')}"
        errors = []
        check(d, name, where, errors)
        if errors:
            print("\n".join(f"FAIL: {e}" for e in errors))
            sys.exit(1)
        try:  # required fields and enums, as the models check them
            client._ApiClient__deserialize(d, name)
        except ValueError as e:
            print(f"FAIL: {where}: {e}")
            sys.exit(1)
        print(f"ok: {where} ({name})")
    if len(sys.argv) == 3 and sys.argv[1] == "--derpd":
        check_derpd(docs, sys.argv[2])


if __name__ == "__main__":
    main()
