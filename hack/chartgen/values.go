package main

// valuesTemplate is the chart's values.yaml; each <component.key> is replaced by the install's
// own setting, so that the defaults render dist/install.yaml.
const valuesTemplate = `# Values of the Bottlerocket update operator's chart. The defaults install what
# dist/install.yaml installs. Helm merges a map you give with the default one: set a key to
# null to drop it (controller.affinity.podAntiAffinity: null, controller.resources.limits.cpu:
# null); a list you give replaces the default.

# image of both components (one image: -controller or -agent).
image:
  repository: bottlerocket-update-operator
  # tag defaults to the chart's appVersion.
  tag: ""
  # digest (sha256:...), when set, is used instead of the tag.
  digest: ""
  pullPolicy:<image.pullPolicy>
  # pullSecrets, as in a pod spec: [{name: my-registry}]
  pullSecrets: []

# namespace of the operator's objects. The admission policy names the agent's service account
# by it. create renders the Namespace with its Pod Security labels (the agent needs
# "privileged"); set it to false if the namespace exists already (helm install
# --create-namespace makes one without those labels). An empty name means the release's
# namespace.
namespace:
  name: bottlerocket-update-operator
  create: true

# priorityClass: the class both components' pods use by default (priorityClassName below).
priorityClass:
  create: true

# log of both components: level is debug, info, error or a number (higher logs more); format
# is json or console.
log:
  level:<log.level>
  format:<log.format>

# metrics: each component serves Prometheus metrics on :8443 behind a Service, over HTTPS, to
# clients whose bearer token the API server accepts and who may get /metrics (bind the
# ClusterRole bottlerocket-update-operator-metrics-reader to your Prometheus). Disabled, the endpoint is turned off and the Services are not rendered.
metrics:
  enabled: true
  # serviceMonitor for the Prometheus operator (needs its CRDs).
  serviceMonitor:
    enabled: false
    interval:<monitor.interval>
    # labels your Prometheus selects ServiceMonitors by.
    labels: {}
  # prometheusRule: the operator's alert rules (config/prometheus/rules.yaml) for the
  # Prometheus operator (needs its CRDs).
  prometheusRule:
    enabled: false
    # labels your Prometheus selects PrometheusRules by.
    labels: {}

# networkPolicy: the operator's pods accept only metrics scrapes and probes, and reach only
# the API server (443, 6443) and DNS.
networkPolicy:
  enabled: true

# commonLabels and commonAnnotations are added to every object the chart renders (the CRDs
# in crds/ are installed as they are).
commonLabels: {}
commonAnnotations: {}

# controller: the cluster-wide controller (a Deployment; one replica leads).
controller:
  replicas:<controller.replicas>
  # completeGrantedEvictions lets the controller delete pods, which it does only to complete
  # an eviction the API server granted but did not carry out (config/rbac/complete-evictions).
  # Off, such a pod waits for the disruption controller to give the disruption up (about two
  # minutes), and the node's status names it meanwhile.
  completeGrantedEvictions: false
  resources:<controller.resources>
  nodeSelector:<controller.nodeSelector>
  tolerations:<controller.tolerations>
  affinity:<controller.affinity>
  priorityClassName:<controller.priorityClassName>
  podLabels:<controller.podLabels>
  podAnnotations:<controller.podAnnotations>

# agent: the per-node agent (a DaemonSet on the nodes the controller labels
# bottlerocket.aws/updater-interface-version; that selector is always kept, nodeSelector adds
# to it).
agent:
  resources:<agent.resources>
  nodeSelector:<agent.nodeSelector>
  tolerations:<agent.tolerations>
  affinity:<agent.affinity>
  priorityClassName:<agent.priorityClassName>
  podLabels:<agent.podLabels>
  podAnnotations:<agent.podAnnotations>
`
