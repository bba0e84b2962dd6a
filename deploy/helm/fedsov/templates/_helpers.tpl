{{/*
The pieces every fedsov node is made of. Each takes a dict:
  root: the chart's top context; node: the node's values (defaults merged);
  component: coordinator | aggregator | site; serves: true for the roles that listen.
*/}}

{{- define "fedsov.config" -}}/fedsov/node/node.toml{{- end -}}

{{/* The node's values over its role's defaults. */}}
{{- define "fedsov.merged" -}}
{{- $defaults := deepCopy (.defaults | default dict) -}}
{{- $node := mergeOverwrite $defaults (deepCopy .node) -}}
{{- toYaml $node -}}
{{- end -}}

{{- define "fedsov.labels" -}}
app.kubernetes.io/name: fedsov
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
fedsov/node: {{ .node.name }}
{{- with .node.jurisdiction }}
fedsov/jurisdiction: {{ . }}
{{- end }}
{{- end -}}

{{- define "fedsov.selector" -}}
app.kubernetes.io/name: fedsov
app.kubernetes.io/instance: {{ .root.Release.Name }}
fedsov/node: {{ .node.name }}
{{- end -}}

{{/* The kit's layout for this node: the chart's `kit` with the node's over it. */}}
{{- define "fedsov.kit" -}}
{{- $kit := mergeOverwrite (deepCopy .root.Values.kit) (deepCopy (.node.kit | default dict)) -}}
configMap: {{ $kit.configMap | default (printf "%s-kit" .node.name) }}
files: {{ toJson $kit.files }}
tlsSecret: {{ $kit.tlsSecret | default (printf "%s-tls" .node.name) }}
certFile: {{ $kit.certFile | default (printf "%s.pem" .node.name) }}
keyFile: {{ $kit.keyFile | default (printf "%s.key" .node.name) }}
{{- end -}}

{{/*
`fedsov health` dials the node's own server over mTLS with its own certificate.
Kubernetes' native grpc probe cannot: it speaks plaintext or TLS without a client
certificate, and every fedsov server requires one (mTLS), so the probe is an exec.
*/}}
{{- define "fedsov.healthProbe" -}}
exec:
  command: [fedsov, health, --config, {{ include "fedsov.config" . }}, --timeout, "5"]
timeoutSeconds: {{ .root.Values.probes.timeoutSeconds }}
{{- end -}}

{{- define "fedsov.deployment" -}}
{{- $kit := include "fedsov.kit" . | fromYaml -}}
{{- $image := mergeOverwrite (deepCopy .root.Values.image) (deepCopy (.node.image | default dict)) -}}
{{- $byJurisdiction := get .root.Values.jurisdictionNodeSelectors (.node.jurisdiction | default "") | default dict -}}
{{- $nodeSelector := mergeOverwrite (deepCopy $byJurisdiction) (deepCopy (.node.nodeSelector | default dict)) -}}
{{- $resources := deepCopy (.node.resources | default dict) -}}
{{- $gpu := int (.node.gpu | default 0) -}}
{{- if gt $gpu 0 -}}
{{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" $gpu) ($resources.requests | default dict)) -}}
{{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" $gpu) ($resources.limits | default dict)) -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .node.name }}
  labels:
    {{- include "fedsov.labels" . | nindent 4 }}
spec:
  replicas: 1                 # one process per node, one session per certificate
  strategy:
    type: Recreate            # never two pods of a node at once: one holds its state
  selector:
    matchLabels:
      {{- include "fedsov.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "fedsov.labels" . | nindent 8 }}
    spec:
      automountServiceAccountToken: false   # a node never talks to the Kubernetes API
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ .root.Values.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml .root.Values.podSecurityContext | nindent 8 }}
      {{- with .root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .node.runtimeClassName }}
      runtimeClassName: {{ . }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ printf "%s:%s" $image.repository $image.tag | quote }}
          imagePullPolicy: {{ $image.pullPolicy }}
          args: [{{ .component }}, --config, {{ include "fedsov.config" . }}]
          {{- if .serves }}
          ports:
            - name: grpc
              containerPort: {{ .node.port }}
              protocol: TCP
          startupProbe:
            {{- include "fedsov.healthProbe" . | nindent 12 }}
            periodSeconds: {{ .root.Values.probes.startup.periodSeconds }}
            failureThreshold: {{ .root.Values.probes.startup.failureThreshold }}
          readinessProbe:
            {{- include "fedsov.healthProbe" . | nindent 12 }}
            periodSeconds: {{ .root.Values.probes.readiness.periodSeconds }}
            failureThreshold: {{ .root.Values.probes.readiness.failureThreshold }}
          livenessProbe:
            {{- include "fedsov.healthProbe" . | nindent 12 }}
            periodSeconds: {{ .root.Values.probes.liveness.periodSeconds }}
            failureThreshold: {{ .root.Values.probes.liveness.failureThreshold }}
          {{- end }}
          env:
            - name: OMP_NUM_THREADS
              value: {{ .node.threads | default 1 | quote }}
          securityContext:
            {{- toYaml .root.Values.securityContext | nindent 12 }}
          {{- with $resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: state       # the kit folder: what the node writes beside node.toml
              mountPath: /fedsov/node
            {{- range $kit.files }}
            {{- $path := tpl . (dict "name" $.node.name "Template" $.root.Template) }}
            - name: kit         # the ConfigMap's key is the file's base name
              mountPath: {{ printf "/fedsov/node/%s" $path }}
              subPath: {{ base $path }}
              readOnly: true
            {{- end }}
            - name: tls
              mountPath: {{ printf "/fedsov/node/%s" $kit.certFile }}
              subPath: tls.crt
              readOnly: true
            - name: tls         # the private key: from the Secret only, never on a disk
              mountPath: {{ printf "/fedsov/node/%s" $kit.keyFile }}
              subPath: tls.key
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- with .node.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: kit
          configMap:
            name: {{ $kit.configMap }}
        - name: tls
          secret:
            secretName: {{ $kit.tlsSecret }}
            defaultMode: 0440   # readable by the node's group (fsGroup), no one else
        - name: state
          {{- if .node.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ printf "%s-state" .node.name }}
          {{- else }}
          emptyDir: {}          # lost with the pod: a restart starts the node afresh
          {{- end }}
        - name: tmp
          emptyDir: {}
        {{- with .node.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .node.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .node.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{- define "fedsov.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .node.name }}      # the host name in its children's [upstream] address
  labels:
    {{- include "fedsov.labels" . | nindent 4 }}
  {{- with .node.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .node.service.type }}
  selector:
    {{- include "fedsov.selector" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .node.port }}
      targetPort: grpc
      protocol: TCP
{{- end -}}

{{- define "fedsov.pvc" -}}
{{- if .node.persistence.enabled -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ printf "%s-state" .node.name }}
  labels:
    {{- include "fedsov.labels" . | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep   # `helm uninstall` leaves the node's state and ledgers
spec:
  accessModes:
    {{- toYaml .node.persistence.accessModes | nindent 4 }}
  {{- with .node.persistence.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ .node.persistence.size }}
{{- end -}}
{{- end -}}

{{/* Fails the render when two nodes share a name (their resources would collide). */}}
{{- define "fedsov.checkNames" -}}
{{- $seen := dict -}}
{{- $names := list -}}
{{- if .Values.coordinator.enabled -}}{{- $names = append $names .Values.coordinator.name -}}{{- end -}}
{{- range .Values.aggregators -}}{{- $names = append $names .name -}}{{- end -}}
{{- range .Values.sites -}}{{- $names = append $names .name -}}{{- end -}}
{{- range $names -}}
{{- if hasKey $seen . -}}
{{- fail (printf "node name %q appears twice in coordinator, aggregators and sites" .) -}}
{{- end -}}
{{- $_ := set $seen . true -}}
{{- end -}}
{{- end -}}
