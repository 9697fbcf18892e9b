{{/*
Object names are fixed (latchkey-manager, latchkey-tokenserver, …), as in
config/default: the CRDs, ClusterRoles and admission policy are cluster-wide, so
there is one Latchkey per cluster, and the binaries' defaults name the same objects.
*/}}

{{/* Labels Helm adds to every object, besides the ones config/ has. */}}
{{- define "latchkey.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* Selector labels of a component: (dict "component" "manager"). */}}
{{- define "latchkey.selectorLabels" -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/name: latchkey
{{- end }}

{{/* Every label of a component's objects: (dict "component" "manager" "root" $). */}}
{{- define "latchkey.labels" -}}
{{ include "latchkey.selectorLabels" . }}
app.kubernetes.io/part-of: latchkey
{{ include "latchkey.helmLabels" .root }}
{{- end }}

{{- define "latchkey.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "latchkey.issuerURL" -}}
{{- if .Values.issuerURL -}}
{{ .Values.issuerURL }}
{{- else -}}
{{ ternary "https" "http" (not (empty .Values.tokenserver.tls.secretName)) }}://latchkey-tokenserver.{{ .Release.Namespace }}.svc
{{- end -}}
{{- end }}

{{/* --namespaces, when the install is confined to a list of namespaces. */}}
{{- define "latchkey.namespacesArg" -}}
{{- if .Values.namespaces }}
- --namespaces={{ join "," .Values.namespaces }}
{{- end }}
{{- end }}

{{/*
The pod-level settings every component shares: (dict "component" "manager" "values" .Values.manager "root" $).
*/}}
{{- define "latchkey.podSpec" -}}
serviceAccountName: latchkey-{{ .component }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 0 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
{{- toYaml . | nindent 0 }}
{{- end }}
{{- with .values.affinity }}
affinity:
{{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
{{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* TLS volume and flags of a server component, from .values.tls.secretName. */}}
{{- define "latchkey.tlsArgs" -}}
{{- if .tls.secretName }}
- --tls-cert-file=/etc/latchkey/tls/tls.crt
- --tls-key-file=/etc/latchkey/tls/tls.key
{{- end }}
{{- end }}

{{/* The TLS Secret's mount and volume (list items), for a component with tls.secretName. */}}
{{- define "latchkey.tlsVolumeMount" -}}
- name: tls
  mountPath: /etc/latchkey/tls
  readOnly: true
{{- end }}

{{- define "latchkey.tlsVolume" -}}
- name: tls
  secret:
    secretName: {{ .tls.secretName }}
{{- end }}

{{/* Whether prometheus-operator objects are rendered (monitoring.renderMode). */}}
{{- define "latchkey.renderMonitoring" -}}
{{- $mode := .Values.monitoring.renderMode -}}
{{- if or (eq $mode "always") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
true
{{- end -}}
{{- end }}

{{/*
The metrics Service of a component, kept apart from the Service clients use so
that it does not publish the metrics port: (dict "component" "tokenserver" "port" 9090 "root" $).
*/}}
{{- define "latchkey.metricsService" -}}
apiVersion: v1
kind: Service
metadata:
  name: latchkey-{{ .component }}-metrics
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "latchkey.labels" . | nindent 4 }}
    latchkey.dev/metrics: "true"
spec:
  selector:
    {{- include "latchkey.selectorLabels" . | nindent 4 }}
  ports:
  - name: metrics
    port: {{ .port }}
    targetPort: metrics
{{- end }}

{{/*
The PodDisruptionBudget of a component, from .values.podDisruptionBudget; none
when it is null or empty: (dict "component" "tokenserver" "values" .Values.tokenserver "root" $).
*/}}
{{- define "latchkey.podDisruptionBudget" -}}
{{- with .values.podDisruptionBudget }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: latchkey-{{ $.component }}
  namespace: {{ $.root.Release.Namespace }}
  labels:
    {{- include "latchkey.labels" $ | nindent 4 }}
spec:
  {{- /* Helm merges a user's map into the default {minAvailable: 1}: maxUnavailable, when set, wins. */}}
  {{- if not (kindIs "invalid" .maxUnavailable) }}
  maxUnavailable: {{ .maxUnavailable | toJson }}
  {{- else if not (kindIs "invalid" .minAvailable) }}
  minAvailable: {{ .minAvailable | toJson }}
  {{- end }}
  {{- with .unhealthyPodEvictionPolicy }}
  unhealthyPodEvictionPolicy: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "latchkey.selectorLabels" $ | nindent 6 }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints of a server component: .values.topologySpreadConstraints,
or by default spread over nodes: (dict "component" "tokenserver" "values" .Values.tokenserver).
*/}}
{{- define "latchkey.topologySpread" -}}
topologySpreadConstraints:
{{- if .values.topologySpreadConstraints }}
{{- toYaml .values.topologySpreadConstraints | nindent 0 }}
{{- else }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "latchkey.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* The components installed, as a JSON list: fromJsonArray (include "latchkey.components" .). */}}
{{- define "latchkey.components" -}}
{{- $components := list "manager" "tokenserver" }}
{{- if .Values.authz.enabled }}{{ $components = append $components "authz" }}{{ end }}
{{- toJson $components }}
{{- end }}

{{/*
The data of the token server's secret-scanning ConfigMap: config.yaml, the
--secret-scanning-config file, and keys-<name>.json for each reporter whose key
list is given inline (publicKeys, written as JSON), which config.yaml names as
its keysFile. A name listed twice fails the install, as it would the token server.
*/}}
{{- define "latchkey.secretScanningData" -}}
{{- $reporters := list }}
{{- $names := dict }}
{{- range .Values.tokenserver.secretScanning.reporters }}
{{- if hasKey $names .name }}
{{- fail (printf "tokenserver.secretScanning.reporters: %s is listed twice" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- $r := omit . "publicKeys" }}
{{- if .publicKeys }}
{{- $_ := set $r "keysFile" (printf "/etc/latchkey/secret-scanning/keys-%s.json" .name) }}
{{- end }}
{{- $reporters = append $reporters $r }}
{{- end }}
config.yaml: |
  {{- toYaml (dict "reporters" $reporters) | nindent 2 }}
{{- range .Values.tokenserver.secretScanning.reporters }}
{{- if .publicKeys }}
keys-{{ .name }}.json: {{ .publicKeys | toJson | quote }}
{{- end }}
{{- end }}
{{- end }}
