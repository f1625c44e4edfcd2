{{/* Chart name, cut to the 63 characters a label value may hold. */}}
{{- define "pd-scaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. A release named after the chart (`helm install pd-scaler ...`) gets the plain
name, so the Service is `pd-scaler` and triggers use pd-scaler.<namespace>.svc.cluster.local:9090.
*/}}
{{- define "pd-scaler.fullname" -}}
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

{{- define "pd-scaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pd-scaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pd-scaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pd-scaler.labels" -}}
helm.sh/chart: {{ include "pd-scaler.chart" . }}
{{ include "pd-scaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: external-scaler
app.kubernetes.io/part-of: keda
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pd-scaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pd-scaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the connections file, or "" when there is none. */}}
{{- define "pd-scaler.connectionsSecret" -}}
{{- if .Values.connections.existingSecret }}
{{- .Values.connections.existingSecret }}
{{- else if or .Values.connections.nats .Values.connections.prometheus }}
{{- printf "%s-connections" (include "pd-scaler.fullname" .) }}
{{- end }}
{{- end }}

{{- define "pd-scaler.connectionsKey" -}}
{{- if .Values.connections.existingSecret }}
{{- .Values.connections.existingSecretKey }}
{{- else }}
{{- "connections.yaml" }}
{{- end }}
{{- end }}

{{/* The rendered connections file (only when the chart owns the Secret). */}}
{{- define "pd-scaler.connectionsFile" -}}
{{- $file := dict }}
{{- with .Values.connections.nats }}{{ $_ := set $file "nats" . }}{{ end }}
{{- with .Values.connections.prometheus }}{{ $_ := set $file "prometheus" . }}{{ end }}
{{- toYaml $file }}
{{- end }}

{{/* In-cluster DNS name KEDA triggers use as scalerAddress. */}}
{{- define "pd-scaler.address" -}}
{{- printf "%s.%s.svc.cluster.local:%v" (include "pd-scaler.fullname" .) .Release.Namespace .Values.ports.grpc }}
{{- end }}
