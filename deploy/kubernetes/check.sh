#!/usr/bin/env bash
# Offline checks of deploy/kubernetes (no cluster needed, schema level only):
#  1. every manifest validates against the Kubernetes $K8S_VERSION schemas
#     with kubernetes-validate --strict (unknown fields are errors);
#  2. `kubectl kustomize` renders the directory, and the rendered output
#     validates too;
#  3. the rendered objects keep the promises of README.md: every container
#     hardened, no Service exposing an admin port, no API token mounted;
#  4. a deliberately broken manifest is refused (the validator really runs).
# kubernetes-validate is installed (pinned) into a venv under
# ${XDG_CACHE_HOME:-~/.cache}, or with `pip install --user` where python3 has
# no venv module (Debian without python3-venv).
set -euo pipefail
cd "$(dirname "$0")"

K8S_VERSION=${K8S_VERSION:-1.30.0}
KV_VERSION=1.37.0 # the PyPI package; it carries the schemas of 1.30 and later

validator=""
if command -v kubernetes-validate >/dev/null &&
    [ "$(kubernetes-validate --version 2>/dev/null)" = "$KV_VERSION" ]; then
    validator=$(command -v kubernetes-validate)
else
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/relay-ci/kubernetes-validate-$KV_VERSION"
    if [ ! -x "$venv/bin/kubernetes-validate" ]; then
        if python3 -m venv "$venv" >/dev/null 2>&1; then
            "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
        else
            rm -rf "$venv"
            echo "check.sh: no python3 venv module; pip install --user kubernetes-validate==$KV_VERSION"
            python3 -m pip install --quiet --user --disable-pip-version-check "kubernetes-validate==$KV_VERSION" || {
                echo "check.sh: cannot install kubernetes-validate (Debian: apt-get install python3-venv)" >&2
                exit 1
            }
        fi
    fi
    if [ -x "$venv/bin/kubernetes-validate" ]; then
        validator="$venv/bin/kubernetes-validate"
    else
        validator="$(python3 -m site --user-base)/bin/kubernetes-validate"
    fi
fi
# The Python that runs the validator (it has PyYAML) runs the checks of step 3.
read -r -a python <<<"$(head -1 "$validator" | sed 's/^#!//')"
command -v kubectl >/dev/null || {
    echo "check.sh: kubectl not found (Debian: apt-get install kubernetes-client)" >&2
    exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

manifests=()
for f in *.yaml; do
    [ "$f" = kustomization.yaml ] || manifests+=("$f")
done

echo "== kubernetes-validate $KV_VERSION --strict, Kubernetes $K8S_VERSION: ${manifests[*]}"
"$validator" -k "$K8S_VERSION" --strict --quiet "${manifests[@]}"

echo "== kubectl kustomize ($(kubectl version --client 2>/dev/null | tr '\n' ' '))"
kubectl kustomize . >"$tmp/rendered.yaml"
"$validator" -k "$K8S_VERSION" --strict --quiet "$tmp/rendered.yaml"

echo "== hardening and exposure of the rendered objects"
"${python[@]}" - "$tmp/rendered.yaml" <<'EOF'
import sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
errors = []
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], []).append(d["metadata"]["name"])
    name = f'{d["kind"]}/{d["metadata"]["name"]}'
    if d["kind"] == "Service":
        for p in d["spec"]["ports"]:
            if p.get("protocol") not in ("UDP", "TCP") or p["port"] != 4433:
                errors.append(f"{name} exposes {p}: only 4433 (UDP, and TCP for the carrier) may be (the admin port has no authentication)")
    if d["kind"] != "Deployment":
        continue
    pod = d["spec"]["template"]["spec"]
    if pod.get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: automountServiceAccountToken must be false")
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        errors.append(f"{name}: pod securityContext.runAsNonRoot must be true")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        want = {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        }
        for k, v in want.items():
            if sc.get(k) is not v:
                errors.append(f"{name} container {c['name']}: securityContext.{k} must be {v}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            errors.append(f"{name} container {c['name']}: capabilities must drop ALL")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{name} container {c['name']}: seccompProfile must be RuntimeDefault")
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits"):
            errors.append(f"{name} container {c['name']}: resource requests and limits are required")
        if not c.get("readinessProbe") or not c.get("livenessProbe"):
            errors.append(f"{name} container {c['name']}: readiness and liveness probes are required")
    for v in pod.get("volumes", []):
        for src in v.get("projected", {}).get("sources", []):
            for item in src.get("secret", {}).get("items", []):
                if item["key"] == "ca.key":
                    errors.append(f"{name}: the CA key must never reach a relay pod")
for kind in ["Namespace", "ConfigMap", "Deployment", "Service", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget"]:
    if kind not in kinds:
        errors.append(f"the rendered output has no {kind}")
for e in errors:
    print("check.sh:", e, file=sys.stderr)
if errors:
    sys.exit(1)
print("  " + ", ".join(f"{k} {'/'.join(v)}" for k, v in sorted(kinds.items())))
EOF

echo "== a broken manifest must be refused"
sed 's/allowPrivilegeEscalation: false/allowPrivilegeEscalation: false\n            notAField: 1/' agent.yaml >"$tmp/broken.yaml"
if "$validator" -k "$K8S_VERSION" --strict --quiet "$tmp/broken.yaml" >/dev/null 2>&1; then
    echo "check.sh: kubernetes-validate accepted an unknown field: the checks above prove nothing" >&2
    exit 1
fi

echo "deploy/kubernetes: all checks passed (schema level; no cluster was involved)"
