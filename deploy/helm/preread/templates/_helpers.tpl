{{/* The release's resource names, labels and the pieces every PreRead pod shares. */}}

{{- define "preread.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "preread.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selector labels; call with (dict "root" $ "component" "api") */}}
{{- define "preread.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "preread.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "preread.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* the image; call with (dict "root" $ "gpu" true|false) */}}
{{- define "preread.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag: pin a version, never latest" -}}
{{- end -}}
{{- if .gpu -}}
{{- $tag = printf "%s%s" $tag .root.Values.image.gpuTagSuffix -}}
{{- end -}}
{{- printf "%s:%s" .root.Values.image.repository $tag -}}
{{- end -}}

{{/* the Secret with database-url, orthanc-password, broker-url */}}
{{- define "preread.secretName" -}}
{{- if and .Values.secrets.create .Values.secrets.existingSecret -}}
{{- fail "secrets: set either existingSecret or create, not both" -}}
{{- else if .Values.secrets.create -}}
{{- printf "%s-credentials" (include "preread.fullname" .) -}}
{{- else if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- fail "secrets.existingSecret: name the Secret holding database-url, orthanc-password and broker-url (secrets.create is for dev only)" -}}
{{- end -}}
{{- end -}}

{{/* env of every PreRead container: the ConfigMap plus the three credentials */}}
{{- define "preread.envFrom" -}}
- configMapRef:
    name: {{ include "preread.fullname" . }}-settings
{{- end -}}

{{- define "preread.secretEnv" -}}
{{- $secret := include "preread.secretName" . -}}
- name: PREREAD_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: database-url}
- name: PREREAD_ORTHANC_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: orthanc-password}
- name: PREREAD_BROKER_URL
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: broker-url}
{{- end -}}

{{/* call with (dict "root" $ "claim" NAME): a claim, or an emptyDir when NAME is empty */}}
{{- define "preread.dataVolume" -}}
- name: data
{{- if .claim }}
  persistentVolumeClaim:
    claimName: {{ .claim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .root.Values.dataVolume.sizeLimit }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end -}}

{{- define "preread.dataMounts" -}}
- name: data
  mountPath: /var/lib/preread
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* pod-level settings shared by every Deployment */}}
{{- define "preread.podCommon" -}}
serviceAccountName: {{ include "preread.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
