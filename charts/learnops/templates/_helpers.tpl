{{/* Chart name, shortened to the 63 characters a label value allows. */}}
{{- define "learnops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every object. The release name alone when it already contains the chart
name, so `helm install learnops ...` gives "learnops-operator", not "learnops-learnops-operator".
*/}}
{{- define "learnops.fullname" -}}
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

{{- define "learnops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "learnops.labels" -}}
helm.sh/chart: {{ include "learnops.chart" . }}
{{ include "learnops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: learnops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels a selector may use: stable across upgrades. */}}
{{- define "learnops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "learnops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per component: call with (dict "ctx" $ "component" "operator"). */}}
{{- define "learnops.componentLabels" -}}
{{ include "learnops.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "learnops.componentSelectorLabels" -}}
{{ include "learnops.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "learnops.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "learnops.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The worker's ServiceAccount name. */}}
{{- define "learnops.workerServiceAccountName" -}}
{{- if .Values.worker.serviceAccount.create }}
{{- default (printf "%s-worker" (include "learnops.fullname" .)) .Values.worker.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.worker.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: repository:tag, the tag defaulting to the appVersion. */}}
{{- define "learnops.image" -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) }}
{{- end }}

{{- define "learnops.operatorImage" -}}
{{- include "learnops.image" (dict "repository" .Values.operator.image.repository "tag" .Values.operator.image.tag "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "learnops.workerImage" -}}
{{- include "learnops.image" (dict "repository" .Values.worker.image.repository "tag" .Values.worker.image.tag "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "learnops.dumpImage" -}}
{{- if .Values.dump.image.digest }}
{{- printf "%s@%s" .Values.dump.image.repository .Values.dump.image.digest }}
{{- else }}
{{- include "learnops.image" (dict "repository" .Values.dump.image.repository "tag" .Values.dump.image.tag "appVersion" .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "learnops.backupPvcName" -}}
{{- default (printf "%s-backups" (include "learnops.fullname" .)) .Values.backupStorage.name }}
{{- end }}

{{/* Where Secret volumes are mounted; the programs read *_FILE paths below it. */}}
{{- define "learnops.dbSecretDir" -}}/var/run/secrets/learnops/db{{- end }}
{{- define "learnops.openaiSecretDir" -}}/var/run/secrets/learnops/openai{{- end }}

{{/* The worker's pod spec volumes (database URL, optional API key, /tmp). */}}
{{- define "learnops.workerVolumes" -}}
- name: db
  secret:
    secretName: {{ .Values.worker.database.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.worker.database.key }}
        path: DATABASE_URL
{{- with .Values.worker.feedback.openai.existingSecret }}
- name: openai
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.worker.feedback.openai.key }}
        path: OPENAI_API_KEY
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "learnops.workerVolumeMounts" -}}
- name: db
  mountPath: {{ include "learnops.dbSecretDir" . }}
  readOnly: true
{{- if .Values.worker.feedback.openai.existingSecret }}
- name: openai
  mountPath: {{ include "learnops.openaiSecretDir" . }}
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Secret files, by path only: a value never reaches the pod spec. */}}
{{- define "learnops.workerSecretEnv" -}}
- name: DATABASE_URL_FILE
  value: {{ include "learnops.dbSecretDir" . }}/DATABASE_URL
{{- if .Values.worker.feedback.openai.existingSecret }}
- name: OPENAI_API_KEY_FILE
  value: {{ include "learnops.openaiSecretDir" . }}/OPENAI_API_KEY
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rule: DNS to any resolver. */}}
{{- define "learnops.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* NetworkPolicy egress rule: PostgreSQL, to databasePeers when given. */}}
{{- define "learnops.databaseEgress" -}}
- ports:
    {{- range .Values.networkPolicy.databasePorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.databasePeers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Whether DatabaseBackups from values can be rendered. Helm builds every object of a release
before it creates any, so on the very first install (CRD shipped by this chart, API not yet
served) a DatabaseBackup cannot be mapped and the install would fail. They are left out then
and NOTES.txt asks for one `helm upgrade`; when the CRD is managed elsewhere it must exist.
*/}}
{{- define "learnops.backupsRenderable" -}}
{{- if or (not .Values.crds.install) (.Capabilities.APIVersions.Has "learnops.io/v1alpha1/DatabaseBackup") -}}
true
{{- end -}}
{{- end }}
