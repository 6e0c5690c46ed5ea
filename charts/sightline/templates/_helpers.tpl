{{/* Names and labels ------------------------------------------------------------------------- */}}

{{- define "sightline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects. Args: dict root, name. */}}
{{- define "sightline.componentName" -}}
{{- printf "%s-%s" (include "sightline.fullname" .root) .name -}}
{{- end -}}

{{- define "sightline.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "sightline.labels" -}}
{{ include "sightline.selectorLabels" . }}
app.kubernetes.io/part-of: sightline
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Every workload pod of this release (default-deny NetworkPolicy). */}}
{{- define "sightline.releaseSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Component configuration -------------------------------------------------------------------- */}}

{{/* A Python service's values: serviceDefaults overridden by services.<name>. Args: dict root, name. */}}
{{- define "sightline.serviceValues" -}}
{{- $defaults := deepCopy .root.Values.serviceDefaults -}}
{{- toYaml (mergeOverwrite $defaults (deepCopy (index .root.Values.services .name))) -}}
{{- end -}}

{{/*
Every enabled component as {name: {port, metricsPort, exposed, connectsTo}} - the graph the NetworkPolicies are
drawn from. Triton's serving port for clients is its gRPC port.
*/}}
{{- define "sightline.components" -}}
{{- $out := dict -}}
{{- range $name, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- $metricsPort := default $.Values.serviceDefaults.metricsPort $svc.metricsPort -}}
{{- $_ := set $out $name (dict "port" $svc.port "metricsPort" $metricsPort "exposed" (default false $svc.exposed) "connectsTo" $svc.connectsTo) -}}
{{- end -}}
{{- end -}}
{{- if .Values.triton.enabled -}}
{{- $_ := set $out "triton" (dict "port" .Values.triton.grpcPort "metricsPort" .Values.triton.metricsPort "exposed" false "connectsTo" .Values.triton.connectsTo) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Secrets -------------------------------------------------------------------------------------- */}}

{{- define "sightline.mongoSecretName" -}}
{{- default (printf "%s-mongodb" (include "sightline.fullname" .)) .Values.mongodb.existingSecret -}}
{{- end -}}

{{- define "sightline.redisSecretName" -}}
{{- default (printf "%s-redis" (include "sightline.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}

{{/*
Key files a service may receive (services.<name>.keys): the Secret of `keys` they come from, the item, and the
variable naming the file for the service (services/common/auth.py, services/audit/settings.py,
services/retention/keys.py).
*/}}
{{- define "sightline.keyCatalog" -}}
token-signing: {secret: token, item: privateKey, env: SIGHTLINE_TOKEN_SIGNING_KEY_FILE}
token-public: {secret: token, item: publicKey, env: SIGHTLINE_TOKEN_PUBLIC_KEY_FILE}
audit-signing: {secret: audit, item: privateKey, env: SIGHTLINE_AUDIT_SIGNING_KEY_FILE}
audit-public: {secret: audit, item: publicKey, env: SIGHTLINE_AUDIT_PUBLIC_KEY_FILE}
data-master: {secret: data, item: masterKey, env: SIGHTLINE_DATA_MASTER_KEY_FILE}
service-signing: {secret: services, env: SIGHTLINE_SERVICE_KEY_FILE}
service-public: {secret: services, env: SIGHTLINE_SERVICE_PUBLIC_KEYS_DIR}
{{- end -}}

{{/* One service's key files as a list of {secret, item (file name), env, path}. Args: dict root, name, keys. */}}
{{- define "sightline.keyFiles" -}}
{{- $catalog := include "sightline.keyCatalog" . | fromYaml -}}
{{- $out := list -}}
{{- range $key := .keys -}}
{{- if not (hasKey $catalog $key) -}}
{{- fail (printf "services.%s.keys names %q; known: %s" $.name $key (keys $catalog | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $k := index $catalog $key -}}
{{- $dir := printf "%s/%s" $.root.Values.keys.mountPath $k.secret -}}
{{- if eq $key "service-signing" -}}
{{- /* The service's own key for its calls to audit (services/common/service_tokens.py). */ -}}
{{- $item := printf "service_%s_ed25519.pem" $.name -}}
{{- $out = append $out (dict "secret" $k.secret "item" $item "env" $k.env "path" (printf "%s/%s" $dir $item)) -}}
{{- else if eq $key "service-public" -}}
{{- /* A folder of the writers' public keys (the audit service); the variable names the folder. */ -}}
{{- range $writer := $.root.Values.keys.services.writers -}}
{{- $out = append $out (dict "secret" $k.secret "item" (printf "service_%s_ed25519.pub.pem" $writer) "env" "" "path" "") -}}
{{- end -}}
{{- $out = append $out (dict "secret" $k.secret "item" "" "env" $k.env "path" $dir) -}}
{{- else -}}
{{- $item := index (index $.root.Values.keys $k.secret) $k.item -}}
{{- $out = append $out (dict "secret" $k.secret "item" $item "env" $k.env "path" (printf "%s/%s" $dir $item)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Pod hardening -------------------------------------------------------------------------------- */}}

{{/* Args: uid. */}}
{{- define "sightline.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sightline.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* PodDisruptionBudget. Args: dict root, name. */}}
{{- define "sightline.pdb" -}}
{{- if .root.Values.global.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "sightline.componentName" . }}
  labels:
    {{- include "sightline.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .root.Values.global.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "sightline.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* ServiceAccount without an automounted API token (no workload talks to the Kubernetes API). */}}
{{- define "sightline.serviceAccount" -}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "sightline.componentName" . }}
  labels:
    {{- include "sightline.labels" . | nindent 4 }}
automountServiceAccountToken: false
{{- end -}}

{{/*
Scaling: a KEDA ScaledObject when keda.enabled and the component has KEDA triggers, else a CPU
HorizontalPodAutoscaler. Args: dict root, name, autoscaling, triggers (list, may be empty).
*/}}
{{- define "sightline.autoscaler" -}}
{{- $as := .autoscaling -}}
{{- if $as.enabled }}
{{- if and .root.Values.keda.enabled .triggers }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "sightline.componentName" . }}
  labels:
    {{- include "sightline.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ include "sightline.componentName" . }}
  minReplicaCount: {{ $as.minReplicas }}
  maxReplicaCount: {{ $as.maxReplicas }}
  pollingInterval: {{ .root.Values.keda.pollingInterval }}
  cooldownPeriod: {{ .root.Values.keda.cooldownPeriod }}
  triggers:
    {{- toYaml .triggers | nindent 4 }}
{{- else }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "sightline.componentName" . }}
  labels:
    {{- include "sightline.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "sightline.componentName" . }}
  minReplicas: {{ $as.minReplicas }}
  maxReplicas: {{ $as.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $as.targetCPUUtilizationPercentage }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Prometheus scrape annotations. Args: port. */}}
{{- define "sightline.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{/* Enabled services that list `target` (mongodb, redis) in connectsTo, sorted. Args: dict root, target. */}}
{{- define "sightline.storageClients" -}}
{{- $out := list -}}
{{- range $name, $svc := .root.Values.services -}}
{{- if and $svc.enabled (has $.target $svc.connectsTo) -}}
{{- $out = append $out $name -}}
{{- end -}}
{{- end -}}
{{- toYaml (sortAlpha $out) -}}
{{- end -}}
