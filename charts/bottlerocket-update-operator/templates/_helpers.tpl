{{/*
Hand-written helpers of the generated templates (hack/chartgen writes every other template).
*/}}

{{/* The namespace of the operator's objects: namespace.name, or the release's. */}}
{{- define "bottlerocket-update-operator.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end }}

{{/* The labels every object gets from the release, and the common labels. */}}
{{- define "bottlerocket-update-operator.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The image of both components: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "bottlerocket-update-operator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}
