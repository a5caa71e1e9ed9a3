{{/*
Object names are fixed (not prefixed with the release name): the pods register the webhooks into
the configurations named dualstack-webhook and reach themselves through the Service of that name
(--register-webhooks, --service in deployment.yaml), and the objects stay equal to manifests/base
(tests/helm checks it). One release per cluster.
*/}}

{{/* The policy file: .Values.policy, or the example shipped in files/policy.yaml. */}}
{{- define "dualstack-webhook.policy" -}}
{{- if .Values.policy -}}
{{- .Values.policy -}}
{{- else -}}
{{- .Files.Get "files/policy.yaml" -}}
{{- end -}}
{{- end -}}
