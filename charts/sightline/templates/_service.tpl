{{/*
One Python service: ServiceAccount, Deployment, Service, PodDisruptionBudget and autoscaler.
All services run the same image; `python -m services.<name>` picks the service.
Args: dict root, name.
*/}}
{{- define "sightline.pythonService" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := include "sightline.serviceValues" . | fromYaml -}}
{{- $ctx := dict "root" $root "name" $name -}}
{{- $fullname := include "sightline.componentName" $ctx -}}
{{- $portName := $svc.protocol -}}
{{- $tls := $root.Values.tls -}}
{{- $tlsSecret := printf $tls.secretNameFormat $fullname -}}
{{- $gatewayCA := and $tls.enabled (eq $name "ingest") $tls.gatewayClientCA.existingSecret -}}
{{- $keyFiles := include "sightline.keyFiles" (dict "root" $root "name" $name "keys" $svc.keys) | fromYamlArray -}}
{{- $keyVolumes := dict -}}
{{- range $keyFiles -}}
{{- if .item -}}
{{- $_ := set $keyVolumes .secret (append (default list (get $keyVolumes .secret)) .item) -}}
{{- end -}}
{{- end -}}
{{- $triggers := list -}}
{{- if $root.Values.keda.enabled -}}
{{- with $svc.autoscaling.redisStreamLag -}}
{{- $meta := dict "address" (required "redis.kedaAddress is required for KEDA redis-streams triggers" $root.Values.redis.kedaAddress) "stream" (required (printf "services.%s.autoscaling.redisStreamLag.stream must name a key of settings" $name) (index $root.Values.settings .stream)) "consumerGroup" .consumerGroup "lagCount" (toString .lagCount) "enableTLS" (toString $root.Values.redis.enableTLS) -}}
{{- $trigger := dict "type" "redis-streams" "metadata" $meta -}}
{{- if $root.Values.redis.passwordKey -}}
{{- $_ := set $trigger "authenticationRef" (dict "name" (printf "%s-redis" (include "sightline.fullname" $root))) -}}
{{- end -}}
{{- $triggers = append $triggers $trigger -}}
{{- end -}}
{{- end -}}
{{ include "sightline.serviceAccount" $ctx }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "sightline.labels" $ctx | nindent 4 }}
spec:
  {{- if $svc.singleWriter }}
  {{- /* The only writer of its store (the audit trail): never two pods, not even during a rollout. */}}
  {{- if or $svc.autoscaling.enabled (ne (int $svc.replicas) 1) }}
  {{- fail (printf "services.%s is its store's only writer: replicas 1, autoscaling off" $name) }}
  {{- end }}
  replicas: 1
  revisionHistoryLimit: 5
  strategy:
    type: Recreate
  {{- else }}
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  {{- end }}
  selector:
    matchLabels:
      {{- include "sightline.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "sightline.labels" $ctx | nindent 8 }}
      annotations:
        checksum/settings: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- include "sightline.scrapeAnnotations" (dict "port" $svc.metricsPort) | nindent 8 }}
        {{- with $svc.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $fullname }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $svc.terminationGracePeriodSeconds }}
      securityContext:
        {{- include "sightline.podSecurityContext" (dict "uid" 10001) | nindent 8 }}
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "sightline.selectorLabels" $ctx | nindent 14 }}
      containers:
        - name: {{ $name }}
          image: "{{ $root.Values.image.services.repository }}:{{ $root.Values.image.services.tag | default $root.Chart.AppVersion }}"
          imagePullPolicy: {{ $root.Values.image.services.pullPolicy }}
          command: ["python", "-m", "services.{{ $name }}"]
          ports:
            - name: {{ $portName }}
              containerPort: {{ $svc.port }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $svc.metricsPort }}
              protocol: TCP
            {{- if and $tls.enabled (eq $svc.protocol "grpc") }}
            - name: health
              containerPort: {{ $tls.healthPort }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "sightline.fullname" $root }}-settings
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: SIGHTLINE_SERVICE_NAME
              value: {{ $name }}
            - name: SIGHTLINE_{{ upper $svc.protocol }}_PORT
              value: {{ $svc.port | quote }}
            - name: SIGHTLINE_METRICS_PORT
              value: {{ $svc.metricsPort | quote }}
            - name: OTEL_SERVICE_NAME
              value: sightline-{{ $name }}
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: "service.namespace=sightline,deployment.environment={{ $root.Values.global.environment }},k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)"
            {{- include "sightline.connectionEnv" (dict "root" $root "svc" $svc "name" $name) | nindent 12 }}
            {{- if $tls.enabled }}
            # TLS (services/common/tls.py): its certificate, re-read when the mounted Secret changes, and the CA it
            # verifies the services it calls against.
            - name: SIGHTLINE_TLS_CERT_FILE
              value: {{ $tls.mountPath }}/tls.crt
            - name: SIGHTLINE_TLS_KEY_FILE
              value: {{ $tls.mountPath }}/tls.key
            - name: SIGHTLINE_TLS_CA_FILE
              value: {{ $tls.mountPath }}/ca.crt
            {{- if eq $svc.protocol "grpc" }}
            - name: SIGHTLINE_HEALTH_PORT
              value: {{ $tls.healthPort | quote }}
            {{- else }}
            - name: SIGHTLINE_HTTP_TLS
              value: {{ $tls.webServesHttps | quote }}
            {{- end }}
            {{- if eq $name "ingest" }}
            # Camera gateways: mutual TLS, client certificates naming their site (docs/security.md).
            - name: SIGHTLINE_TLS_REQUIRE_CLIENT_CERT
              value: "true"
            - name: SIGHTLINE_TLS_CLIENT_CA_FILE
              value: {{ if $gatewayCA }}{{ $tls.mountPath }}-gateways/ca.crt{{ else }}{{ $tls.mountPath }}/ca.crt{{ end }}
            {{- end }}
            {{- else }}
            - name: SIGHTLINE_TLS_ENABLED
              value: "false"
            {{- end }}
            {{- range $file := $keyFiles }}
            {{- if $file.env }}
            - name: {{ $file.env }}
              value: {{ $file.path }}
            {{- end }}
            {{- end }}
            {{- with $svc.autoscaling.redisStreamLag }}
            # The consumer group the service reads the stream with; the KEDA trigger watches the same one.
            - name: SIGHTLINE_MATCHER__GROUP
              value: {{ .consumerGroup | quote }}
            {{- end }}
            {{- range $key, $value := $svc.env }}
            - name: {{ $key }}
              value: {{ $value | quote }}
            {{- end }}
          {{- if eq $svc.protocol "grpc" }}
          {{- $probePort := ternary $tls.healthPort $svc.port $tls.enabled }}
          startupProbe:
            grpc:
              port: {{ $probePort }}
            periodSeconds: 2
            failureThreshold: 30
          readinessProbe:
            grpc:
              port: {{ $probePort }}
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            grpc:
              port: {{ $probePort }}
              {{- with $svc.livenessService }}
              service: {{ . }}
              {{- end }}
            periodSeconds: 10
            failureThreshold: 6
          {{- else }}
          startupProbe:
            httpGet:
              path: {{ $svc.healthPath }}
              port: {{ $portName }}
              scheme: {{ ternary "HTTPS" "HTTP" (and $tls.enabled $tls.webServesHttps) }}
            periodSeconds: 2
            failureThreshold: 30
          readinessProbe:
            httpGet:
              path: {{ $svc.healthPath }}
              port: {{ $portName }}
              scheme: {{ ternary "HTTPS" "HTTP" (and $tls.enabled $tls.webServesHttps) }}
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: {{ $svc.healthPath }}
              port: {{ $portName }}
              scheme: {{ ternary "HTTPS" "HTTP" (and $tls.enabled $tls.webServesHttps) }}
            periodSeconds: 10
            failureThreshold: 6
          {{- end }}
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- include "sightline.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $tls.enabled }}
            - name: tls
              mountPath: {{ $tls.mountPath }}
              readOnly: true
            {{- end }}
            {{- if $gatewayCA }}
            - name: tls-gateways
              mountPath: {{ $tls.mountPath }}-gateways
              readOnly: true
            {{- end }}
            {{- range $secret, $_ := $keyVolumes }}
            - name: keys-{{ $secret }}
              mountPath: {{ $root.Values.keys.mountPath }}/{{ $secret }}
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if $tls.enabled }}
        - name: tls
          secret:
            secretName: {{ $tlsSecret }}
            defaultMode: 0440
        {{- end }}
        {{- if $gatewayCA }}
        - name: tls-gateways
          secret:
            secretName: {{ $gatewayCA }}
            defaultMode: 0440
            items:
              - key: ca.crt
                path: ca.crt
        {{- end }}
        {{- range $secret, $items := $keyVolumes }}
        - name: keys-{{ $secret }}
          secret:
            secretName: {{ (index $root.Values.keys $secret).existingSecret }}
            defaultMode: 0440
            items:
              {{- range $items }}
              - key: {{ . }}
                path: {{ . }}
              {{- end }}
        {{- end }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "sightline.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "sightline.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: {{ $portName }}
      port: {{ $svc.port }}
      targetPort: {{ $portName }}
      {{- if eq $svc.protocol "grpc" }}
      appProtocol: grpc
      {{- end }}
    - name: metrics
      port: {{ $svc.metricsPort }}
      targetPort: metrics
{{- if and $tls.enabled $tls.certManager.enabled }}
---
# cert-manager issues and renews the component's certificate into the Secret its pods mount (usages: server, and
# client for the calls it makes); the servers pick up each renewal without a restart.
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "sightline.labels" $ctx | nindent 4 }}
spec:
  secretName: {{ $tlsSecret }}
  duration: {{ $tls.certManager.duration }}
  renewBefore: {{ $tls.certManager.renewBefore }}
  privateKey:
    algorithm: ECDSA
    size: 256
    rotationPolicy: Always
  usages:
    - server auth
    - client auth
  commonName: {{ $fullname }}
  dnsNames:
    - {{ $fullname }}
    - {{ $fullname }}.{{ $root.Release.Namespace }}.svc
    - {{ $fullname }}.{{ $root.Release.Namespace }}.svc.cluster.local
    {{- with $svc.tlsDnsNames }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  issuerRef:
    {{- toYaml $tls.certManager.issuerRef | nindent 4 }}
{{- end }}
{{ include "sightline.pdb" $ctx }}
{{ include "sightline.autoscaler" (dict "root" $root "name" $name "autoscaling" $svc.autoscaling "triggers" $triggers) }}
{{- end -}}

{{/*
Address variables for everything in connectsTo - the same list the NetworkPolicies are drawn from. MongoDB and
Redis: the service's own connection string (its own user), the Secret's key named after the service.
Args: dict root, svc, name.
*/}}
{{- define "sightline.connectionEnv" -}}
{{- $root := .root -}}
{{- $components := include "sightline.components" $root | fromYaml -}}
{{- range $target := .svc.connectsTo }}
{{- if eq $target "mongodb" }}
- name: SIGHTLINE_MONGO_URI
  valueFrom:
    secretKeyRef:
      name: {{ include "sightline.mongoSecretName" $root }}
      key: {{ $.name }}
{{- else if eq $target "redis" }}
- name: SIGHTLINE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "sightline.redisSecretName" $root }}
      key: {{ $.name }}
{{- else if not (hasKey $components $target) }}
{{- fail (printf "services.%s.connectsTo names %q, which is neither mongodb, redis nor an enabled component" $.name $target) }}
{{- else if eq $target "triton" }}
- name: SIGHTLINE_TRITON_URL
  value: "{{ include "sightline.componentName" (dict "root" $root "name" "triton") }}:{{ $root.Values.triton.grpcPort }}"
{{- else }}
- name: SIGHTLINE_{{ upper $target }}_ADDRESS
  value: "{{ include "sightline.componentName" (dict "root" $root "name" $target) }}:{{ (index $components $target).port }}"
{{- end }}
{{- end }}
{{- end -}}
