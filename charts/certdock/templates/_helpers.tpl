{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "certdock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "certdock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "certdock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "certdock.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Immutable in a StatefulSet: never add release-varying values here. */}}
{{- define "certdock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certdock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "certdock.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where certdock keeps its CA keys and journals (CERTDOCK_STATE_DIR): certdock's default. */}}
{{- define "certdock.stateDir" -}}/var/lib/certdock{{- end }}

{{/*
Where the state volume is mounted: the state directory's parent, not the state directory itself.
certdock creates the state directory and sets it to mode 0700, which only the directory's owner may
do; a volume's root directory belongs to root (fsGroup only gives the group write access), so
uid 65532 could not chmod it ("Operation not permitted"). A subdirectory it creates itself is its own.
*/}}
{{- define "certdock.volumeMountPath" -}}/var/lib{{- end }}

{{/*
The API certificate's names (CERTDOCK_API_NAME): the Traefik host first, because agents outside the
cluster reach the CA by it, then the Service's cluster DNS names for clients inside, then apiNames.
*/}}
{{- define "certdock.apiNames" -}}
{{- $svc := include "certdock.fullname" . }}
{{- $names := list }}
{{- if .Values.traefik.enabled }}
{{- $names = append $names .Values.traefik.host }}
{{- end }}
{{- $names = concat $names (list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace)) }}
{{- $names = concat $names .Values.apiNames }}
{{- $names | uniq | join "," }}
{{- end }}

{{/*
The Secret the mTLS TLSOption trusts (clientAuth.secretNames), or "" when no CA source is set.
Precedence: traefik.clientCA (rendered by this chart), traefik.clientCASecret, ca.existingSecret.
*/}}
{{- define "certdock.clientCASecretName" -}}
{{- if .Values.traefik.clientCA }}
{{- printf "%s-client-ca" (include "certdock.fullname" .) }}
{{- else if .Values.traefik.clientCASecret }}
{{- .Values.traefik.clientCASecret }}
{{- else if .Values.ca.existingSecret }}
{{- .Values.ca.existingSecret }}
{{- end }}
{{- end }}

{{/*
"true" when the mTLS TLSOption is rendered. Fails closed: a TLSOption that requires client
certificates but trusts no CA must never be rendered, so `enabled: true` without a source is an error.
*/}}
{{- define "certdock.mtlsEnabled" -}}
{{- $mode := .Values.traefik.mtlsOption.enabled }}
{{- $source := include "certdock.clientCASecretName" . }}
{{- if and .Values.traefik.enabled (ne (toString $mode) "false") }}
{{- if $source }}
{{- print "true" }}
{{- else if eq (toString $mode) "true" }}
{{- fail "traefik.mtlsOption.enabled=true needs the CA bundle the TLSOption trusts: set traefik.clientCA (e.g. --set-file traefik.clientCA=roots.pem, fetched from https://<host>/roots.pem), traefik.clientCASecret, or ca.existingSecret (with a ca.crt key). See docs/kubernetes.md." }}
{{- end }}
{{- end }}
{{- end }}

{{- define "certdock.mtlsOptionName" -}}
{{- default (printf "%s-mtls" (include "certdock.fullname" .)) .Values.traefik.mtlsOption.name }}
{{- end }}

{{- define "certdock.sniOptionName" -}}
{{- printf "%s-sni-strict-disable" (include "certdock.fullname" .) }}
{{- end }}

{{/* certdock's settings, as the CERTDOCK_* environment variables (they win over the TOML file). */}}
{{- define "certdock.env" -}}
- name: CERTDOCK_STATE_DIR
  value: {{ include "certdock.stateDir" . | quote }}
- name: CERTDOCK_LISTEN
  value: "0.0.0.0:8443"
- name: CERTDOCK_API_NAME
  value: {{ include "certdock.apiNames" . | quote }}
- name: CERTDOCK_DEFAULT_TTL
  value: {{ .Values.ttl.default | quote }}
- name: CERTDOCK_MIN_TTL
  value: {{ .Values.ttl.min | quote }}
- name: CERTDOCK_MAX_TTL
  value: {{ .Values.ttl.max | quote }}
{{- with .Values.allowDomains }}
- name: CERTDOCK_ALLOW_DOMAIN
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.denyDomains }}
- name: CERTDOCK_DENY_DOMAIN
  value: {{ join "," . | quote }}
{{- end }}
- name: CERTDOCK_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if .Values.config }}
- name: CERTDOCK_CONFIG
  value: /etc/certdock/certdock.toml
{{- end }}
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}

{{/* Every container: no privilege, nothing written outside the mounted volumes. */}}
{{- define "certdock.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}
