{{/*
The chart's name, possibly overridden.
*/}}
{{- define "httpsdelivery-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name when it already holds the chart's
name, else RELEASE-CHART; 63 characters at most (DNS label).
*/}}
{{- define "httpsdelivery-operator.fullname" -}}
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

{{/*
chart-version, for the helm.sh/chart label.
*/}}
{{- define "httpsdelivery-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator's Pods. They never change between upgrades.
*/}}
{{- define "httpsdelivery-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "httpsdelivery-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The recommended labels, on every object.
*/}}
{{- define "httpsdelivery-operator.labels" -}}
helm.sh/chart: {{ include "httpsdelivery-operator.chart" . }}
{{ include "httpsdelivery-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: httpsdelivery-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "httpsdelivery-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "httpsdelivery-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "httpsdelivery-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The watched namespaces as a comma list (--watch-namespace), or "" when the operator watches
every namespace or those a selector picks (a ClusterRole then). A list and a selector
together are refused, as the operator refuses them.
*/}}
{{- define "httpsdelivery-operator.watchNamespaces" -}}
{{- if and .Values.watchNamespaces .Values.watchNamespaceSelector }}
{{- fail "watchNamespaces and watchNamespaceSelector cannot be used together: list the namespaces (a Role in each), or label them (a ClusterRole)" }}
{{- end }}
{{- .Values.watchNamespaces | uniq | sortAlpha | join "," }}
{{- end }}

{{/*
The number of operator Pods: replicaCount, unless the deprecated `replicas` is set (it wins,
so that a values file that sets it keeps its meaning). Every template reads this, never
either value.
*/}}
{{- define "httpsdelivery-operator.replicaCount" -}}
{{- if kindIs "invalid" .Values.replicas }}
{{- .Values.replicaCount | int }}
{{- else }}
{{- .Values.replicas | int }}
{{- end }}
{{- end }}

{{/*
"true" when leader election is on: asked for, or more than one replica.
*/}}
{{- define "httpsdelivery-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (include "httpsdelivery-operator.replicaCount" . | int) 1) }}true{{ end }}
{{- end }}

{{/*
Namespace of the leader-election Lease.
*/}}
{{- define "httpsdelivery-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/*
Name of the Lease: the operator's fixed name (controller::leader::DEFAULT_LEASE_NAME). The
lease Role is restricted to it.
*/}}
{{- define "httpsdelivery-operator.leaseName" -}}
httpsdelivery-operator
{{- end }}

{{/*
Where a CA bundle from caBundle is mounted.
*/}}
{{- define "httpsdelivery-operator.caBundleDir" -}}
/etc/httpsdelivery-operator/ca
{{- end }}

{{/*
The rules of the operator's (Cluster)Role: exactly the API calls it makes.
*/}}
{{- define "httpsdelivery-operator.rules" -}}
# Watch every HttpsDelivery (list/watch) and read one (get).
- apiGroups: ["httpsdelivery.dev"]
  resources: ["httpsdeliveries"]
  verbs: ["get", "list", "watch"]
# Write the verdicts: server-side apply of the status subresource. Never the spec.
- apiGroups: ["httpsdelivery.dev"]
  resources: ["httpsdeliveries/status"]
  verbs: ["get", "patch", "update"]
# Provider mode: read the CDN accounts deliveries name (get), watch them to report whether
# their API answers (list/watch), and write their status. ClusterCdnAccounts are
# cluster-scoped: a Role (watchNamespaces) cannot grant them, so they are not used then.
- apiGroups: ["httpsdelivery.dev"]
  resources: ["cdnaccounts"{{ if not (include "httpsdelivery-operator.watchNamespaces" .) }}, "clustercdnaccounts"{{ end }}]
  verbs: ["get", "list", "watch"]
- apiGroups: ["httpsdelivery.dev"]
  resources: ["cdnaccounts/status"{{ if not (include "httpsdelivery-operator.watchNamespaces" .) }}, "clustercdnaccounts/status"{{ end }}]
  verbs: ["get", "patch", "update"]
# Read the kubernetes.io/tls Secret a delivery references (get), and watch Secrets (by
# metadata only) to notice certificate rotation (list/watch); read the credentials Secret a
# CDN account references (get), only when one does. Never create, change or delete.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Events on transitions (events.k8s.io/v1; a repeated Event is patched into a series).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# The same through the core group, for clusters that map Events there.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.auditRoutes.enabled }}
# Route audit (--audit-routes): watch the hostnames of Ingresses and HTTPRoutes. Never write them.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["list", "watch"]
{{- if .Values.auditRoutes.generate }}
# Generation (--generate-from-routes): read a route's template ConfigMap (get, never list), and
# apply (create, patch) and delete the deliveries generated from routes.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
- apiGroups: ["httpsdelivery.dev"]
  resources: ["httpsdeliveries"]
  verbs: ["create", "patch", "delete"]
{{- end }}
{{- end }}
{{- end }}
