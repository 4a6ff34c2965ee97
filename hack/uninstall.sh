#!/usr/bin/env bash
# Removes the Bottlerocket update operator from the cluster of the current kubeconfig, leaving
# no node cordoned and no host pinned:
#
#   1. deletes every UpdatePolicy; the controller, still running, releases the nodes each one
#      holds (uncordons what it cordoned, clears its intent for the agents) and only then lets
#      the policy go (its finalizer);
#   2. waits until no UpdatePolicy is left and no BottlerocketNode names one, at most
#      TIMEOUT seconds (default 600), and stops with the nodes still held if that runs out;
#   3. deletes the rest: the objects of dist/install.yaml, or with --helm the release and then
#      the CRDs (which Helm never deletes).
#
#   hack/uninstall.sh                                   an install from dist/install.yaml (make deploy)
#   hack/uninstall.sh --helm RELEASE [--namespace NS]   a Helm release (NS: the release's namespace)
#
# KUBECTL and HELM name the binaries (default: kubectl, helm).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL="${KUBECTL:-kubectl}"
HELM="${HELM:-helm}"
TIMEOUT="${TIMEOUT:-600}"
release="" release_ns=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --helm) release="$2"; shift 2 ;;
    --namespace|-n) release_ns="$2"; shift 2 ;;
    *) echo "usage: $0 [--helm RELEASE [--namespace NS]]" >&2; exit 2 ;;
  esac
done

log() { printf '[uninstall] %s\n' "$*" >&2; }

if "$KUBECTL" get crd updatepolicies.updates.bottlerocket.aws >/dev/null 2>&1; then
  log "deleting every UpdatePolicy; the controller releases the nodes they hold"
  "$KUBECTL" delete updatepolicies.updates.bottlerocket.aws --all --wait=false >/dev/null

  # Nodes still held: BottlerocketNodes that name a policy, with their phase.
  held() {
    "$KUBECTL" get bottlerocketnodes.updates.bottlerocket.aws \
      -o jsonpath='{range .items[?(@.spec.policy)]}{.metadata.name} (policy {.spec.policy}, {.status.phase}){"\n"}{end}'
  }
  policies() { "$KUBECTL" get updatepolicies.updates.bottlerocket.aws -o name; }

  deadline=$((SECONDS + TIMEOUT))
  while :; do
    p="$(policies)" h="$(held)"
    [[ -z "$p" && -z "$h" ]] && break
    if (( SECONDS >= deadline )); then
      log "after ${TIMEOUT}s the controller has not released everything; nothing else was deleted."
      [[ -z "$p" ]] || log "policies still there: $(echo "$p" | tr '\n' ' ')"
      [[ -z "$h" ]] || { log "nodes still held:"; echo "$h" | sed 's/^/[uninstall]   /' >&2; }
      log "is the controller running? kubectl -n bottlerocket-update-operator get deploy bottlerocket-update-controller"
      log "a node in Draining waits for its PodDisruptionBudgets; run this again (TIMEOUT=seconds) once it can go on."
      exit 1
    fi
    log "waiting for $(echo "$p" | grep -c . || true) policies and $(echo "$h" | grep -c . || true) held nodes ($((deadline - SECONDS))s left)"
    sleep 5
  done
  log "every node is released"
else
  log "no UpdatePolicy CRD: nothing to release"
fi

if [[ -n "$release" ]]; then
  log "helm uninstall $release"
  "$HELM" uninstall "$release" ${release_ns:+--namespace "$release_ns"}
  log "deleting the CRDs (Helm leaves them)"
  "$KUBECTL" delete --ignore-not-found -f charts/bottlerocket-update-operator/crds/
else
  log "deleting the objects of dist/install.yaml"
  "$KUBECTL" delete --ignore-not-found --wait=false -f dist/install.yaml
fi
log "done; nodes keep the label bottlerocket.aws/updater-interface-version (kubectl label nodes --all bottlerocket.aws/updater-interface-version- removes it)"
