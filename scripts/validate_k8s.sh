#!/usr/bin/env bash
# Validate the Helm chart without a cluster:
#   1. helm lint --strict for every values profile,
#   2. helm template for each profile (default, cpu, gpu, dev; KEDA off and on),
#   3. kubernetes-validate --strict of every rendered object against the oldest and newest Kubernetes
#      versions we support. KEDA's CRD kinds have no schema in kubernetes-validate: they are skipped,
#      and the script says so; any other object without a schema is a failure.
# Prints the number of rendered objects per profile; exits non-zero on any failure.
#
# Tools: scripts/install_k8s_tools.sh (helm into .tools/bin, kubernetes-validate into the venv).
# Usage: scripts/validate_k8s.sh [--keep DIR]   (--keep: leave the rendered manifests in DIR)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="${repo_root}/charts/sightline"
export PATH="${repo_root}/.tools/bin:${PATH}"

# Oldest supported (Chart.yaml kubeVersion; native gRPC probes are GA in 1.27) and newest known.
read -r -a KUBE_VERSIONS <<< "${KUBE_VERSIONS:-1.27.0 1.35.0}"
# CRD API groups whose kinds kubernetes-validate cannot know.
CRD_GROUPS_RE='^(keda\.sh)/'

out_dir=""
if [[ "${1:-}" == "--keep" ]]; then
  out_dir="$2"
  mkdir -p "${out_dir}"
else
  out_dir="$(mktemp -d)"
  trap 'rm -rf "${out_dir}"' EXIT
fi

for tool in helm kubernetes-validate; do
  command -v "${tool}" >/dev/null || { echo "error: ${tool} not found; run scripts/install_k8s_tools.sh" >&2; exit 2; }
done

keda_on=(--set keda.enabled=true --set redis.kedaAddress=redis.data.svc:6379 --set redis.passwordKey=password)
declare -A profiles=(
  [default]=""
  [default+keda]="${keda_on[*]}"
  [cpu]="-f ${chart}/values-cpu.yaml"
  [cpu+keda]="-f ${chart}/values-cpu.yaml ${keda_on[*]}"
  [gpu]="-f ${chart}/values-gpu.yaml"
  [gpu+keda]="-f ${chart}/values-gpu.yaml ${keda_on[*]}"
  [dev]="-f ${chart}/values-dev.yaml"
  [edge]="-f ${chart}/values-edge.yaml"
)

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

declare -A counts=()
for profile in $(printf '%s\n' "${!profiles[@]}" | sort); do
  read -r -a args <<< "${profiles[${profile}]}"
  echo "== ${profile}"
  if ! helm lint --strict --quiet "${chart}" "${args[@]}"; then
    fail "${profile}: helm lint --strict"
    continue
  fi
  rendered="${out_dir}/${profile}.yaml"
  declare -A skipped=()
  for version in "${KUBE_VERSIONS[@]}"; do
    if ! helm template sightline "${chart}" --namespace sightline --kube-version "${version}" "${args[@]}" \
        > "${rendered}"; then
      fail "${profile}: helm template (Kubernetes ${version})"
      continue
    fi
    report="$(kubernetes-validate --strict --quiet --kubernetes-version "${version}" "${rendered}" 2>&1)" \
      || fail "${profile}: kubernetes-validate --strict against ${version}"
    while IFS= read -r line; do
      [[ -z "${line}" ]] && continue
      if [[ "${line}" =~ ^WARN\ .*"Couldn't find schema for kind "([^ ]+)" with api version "([^ ]+) ]]; then
        kind="${BASH_REMATCH[1]}"
        api="${BASH_REMATCH[2]}"
        if [[ "${api}" =~ ${CRD_GROUPS_RE} ]]; then
          if [[ -z "${skipped[${kind}]:-}" ]]; then
            skipped[${kind}]=1
            echo "   skipped schema check: ${kind} (${api}) is a CRD kubernetes-validate does not know"
          fi
        else
          fail "${profile}: no schema for ${kind} (${api}) in Kubernetes ${version}"
        fi
      else
        echo "   ${line}"   # ERROR/FATAL lines; kubernetes-validate's exit status counted them above
      fi
    done <<< "${report}"
  done
  counts[${profile}]="$(grep -c '^kind: ' "${rendered}" || true)"
  echo "   $(grep '^kind: ' "${rendered}" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}' | sed 's/, $//')"
done

echo "== deploy/loadtest-job.yaml"
for version in "${KUBE_VERSIONS[@]}"; do
  kubernetes-validate --strict --quiet --kubernetes-version "${version}" "${repo_root}/deploy/loadtest-job.yaml" \
    || fail "deploy/loadtest-job.yaml against ${version}"
done

echo
echo "rendered manifests per profile (validated against Kubernetes ${KUBE_VERSIONS[*]}):"
for profile in $(printf '%s\n' "${!counts[@]}" | sort); do
  printf '  %-14s %3d\n' "${profile}" "${counts[${profile}]}"
done

if (( failures > 0 )); then
  echo "${failures} failure(s)"
  exit 1
fi
echo "all profiles valid"
