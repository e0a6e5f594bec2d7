{{/* Names and labels shared by every template. */}}
{{- define "imageshift.name" -}}{{ default .Chart.Name .Values.nameOverride | trunc 53 | trimSuffix "-" }}{{- end }}

{{/* 53 characters at most, leaving room for the suffixes of the names built on it (-metrics, -leader). */}}
{{- define "imageshift.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{ .Values.fullnameOverride | trunc 53 | trimSuffix "-" }}
{{- else -}}
{{- $name := include "imageshift.name" . -}}
{{- if contains $name .Release.Name -}}{{ .Release.Name | trunc 53 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- end }}

{{/* The leader-election Lease, one per release: two releases in a namespace do not share a leader. */}}
{{- define "imageshift.leaseName" -}}{{ include "imageshift.fullname" . }}-leader{{- end }}

{{- define "imageshift.labels" -}}
app.kubernetes.io/name: {{ include "imageshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "imageshift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imageshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "imageshift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "imageshift.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ required "serviceAccount.name is required with serviceAccount.create=false (binding ImageShift's permissions to the namespace's default account would give them to every pod using it)" .Values.serviceAccount.name }}{{- end -}}
{{- end }}

{{- define "imageshift.tlsSecretName" -}}{{ include "imageshift.fullname" . }}-tls{{- end }}

{{/* Namespaces never mutated: kube-system, the release namespace, and the user's list. */}}
{{- define "imageshift.excludedNamespaces" -}}
{{- $excluded := list "kube-system" .Release.Namespace -}}
{{- range .Values.excludedNamespaces }}{{ $excluded = append $excluded . }}{{ end -}}
{{ toJson (uniq $excluded) }}
{{- end }}

{{/* clientConfig of a webhook entry; caBundle is filled by ImageShift (selfManaged) or cert-manager. */}}
{{- define "imageshift.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "imageshift.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
{{- end }}

{{- define "imageshift.webhookAnnotations" -}}
{{- if eq .Values.certificates.mode "certManager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "imageshift.fullname" . }}
{{- end }}
{{- end }}

{{/* Pods and the ephemeralcontainers subresource (kubectl debug), on CREATE and UPDATE. */}}
{{- define "imageshift.podRules" -}}
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["pods", "pods/ephemeralcontainers"]
    scope: Namespaced
{{- end }}

{{/*
verification.deadline, refused unless under timeoutSeconds: past the webhook's timeout the API
server gives up on the call, and a fallback decided at the deadline would never be heard.
*/}}
{{- define "imageshift.verifyDeadline" -}}
{{- $deadline := .Values.verification.deadline -}}
{{- if ge (trimSuffix "s" $deadline | float64) (float64 .Values.timeoutSeconds) -}}
{{- fail (printf "verification.deadline %s must be less than timeoutSeconds (%v s): the API server would give up on the webhook before the checks end" $deadline .Values.timeoutSeconds) -}}
{{- end -}}
{{ $deadline }}
{{- end }}
