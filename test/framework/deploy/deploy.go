// Package deploy installs the operator into a local cluster as a user would (the manifests of
// dist/install.yaml, or the Helm chart: namespace, CRDs, service accounts, RBAC, admission
// policy, agent DaemonSet), for components that run in this process, and gives each of them the identity
// those manifests define: the controller a token of its service account, each agent a token
// of the agent's service account bound to the DaemonSet's pod on its node, as the kubelet
// mounts it. Requests are then authorized by the installed RBAC and the agents' writes
// confined by the installed admission policy, exactly as in a cluster.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// Names the install manifests give the operator's namespace and identities.
const (
	Namespace      = "bottlerocket-update-operator"
	AgentSA        = "bottlerocket-update-agent"
	ControllerSA   = "bottlerocket-update-controller"
	agentComponent = "agent"
	fieldOwner     = "bottlerocket-update-operator-install"
	// tokenLifetime outlasts any demo or test; the kubelet would rotate a real pod's token.
	tokenLifetime = 24 * time.Hour
)

// User names the controller and the agents authenticate as.
const (
	ControllerUser = "system:serviceaccount:" + Namespace + ":" + ControllerSA
	AgentUser      = "system:serviceaccount:" + Namespace + ":" + AgentSA
)

// NodeNameExtra is where a pod-bound token's node shows in the user's extra.
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// Identities are the controller's and the agents' identities, as the audit log shows them.
var Identities = audit.Identities{Controller: ControllerUser, Agent: AgentUser, NodeExtra: NodeNameExtra}

// Install holds the installed operator's identities.
type Install struct {
	base      *rest.Config
	clientset kubernetes.Interface

	mu      sync.Mutex
	pods    map[string]*corev1.Pod // the agent DaemonSet's pod on each node
	changed chan struct{}          // closed and replaced whenever pods changes
}

// Apply installs dist/install.yaml into the cluster of cfg (an admin), all but the controller's
// Deployment (the controller runs in this process), and follows the agent DaemonSet's pods
// until ctx ends.
func Apply(ctx context.Context, cfg *rest.Config, c client.Client) (*Install, error) {
	objs, err := manifests()
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			continue
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("installing %s %s: %w", o.GetKind(), client.ObjectKeyFromObject(o), err)
		}
	}
	return follow(ctx, cfg)
}

// HelmRelease is the release name HelmInstall installs the chart as.
const HelmRelease = "bottlerocket-update-operator"

// HelmInstall installs the operator with `helm install` of charts/bottlerocket-update-operator,
// as a user would, into the cluster of kubeconfig (an admin; cfg is the same), with the
// controller's Deployment scaled to none (the controller runs in this process), and follows the
// agent DaemonSet's pods until ctx ends. helm is the helm binary; its cache, configuration and
// data go to dir.
func HelmInstall(ctx context.Context, cfg *rest.Config, helm, kubeconfig, dir string) (*Install, error) {
	cmd := exec.CommandContext(ctx, helm, "install", HelmRelease, filepath.Join(testenv.RepoRoot(), "charts", "bottlerocket-update-operator"),
		"--namespace", "default", "--set", "controller.replicas=0")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HELM_CACHE_HOME="+filepath.Join(dir, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(dir, "helm-config"), "HELM_DATA_HOME="+filepath.Join(dir, "helm-data"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("helm install: %w\n%s", err, out)
	}
	return follow(ctx, cfg)
}

// follow starts following the agent DaemonSet's pods of an installed operator.
func follow(ctx context.Context, cfg *rest.Config) (*Install, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	in := &Install{base: cfg, clientset: cs, pods: map[string]*corev1.Pod{}, changed: make(chan struct{})}
	if err := in.followAgentPods(ctx); err != nil {
		return nil, err
	}
	return in, nil
}

// manifests reads the rendered install manifests.
func manifests() ([]*unstructured.Unstructured, error) {
	return DecodeFile(filepath.Join(testenv.RepoRoot(), "dist", "install.yaml"))
}

// DecodeFile reads the manifests in a file (see Decode).
func DecodeFile(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifests: %w", err)
	}
	objs, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return objs, nil
}

// Decode splits a multi-document YAML stream of manifests into objects, in order.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding manifests: %w", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// followAgentPods keeps pods current from an informer on the agent DaemonSet's pods.
func (in *Install) followAgentPods(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(in.clientset, 0, informers.WithNamespace(Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = "app.kubernetes.io/component=" + agentComponent
		}))
	inf := factory.Core().V1().Pods().Informer()
	update := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.Spec.NodeName == "" {
			return
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		if pod.DeletionTimestamp != nil {
			if cur := in.pods[pod.Spec.NodeName]; cur != nil && cur.UID == pod.UID {
				delete(in.pods, pod.Spec.NodeName)
			}
		} else {
			in.pods[pod.Spec.NodeName] = pod
		}
		close(in.changed)
		in.changed = make(chan struct{})
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj any) { update(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				pod = pod.DeepCopy()
				pod.DeletionTimestamp = ptr.To(metav1.Now())
				update(pod)
			}
		},
	}); err != nil {
		return fmt.Errorf("following the agent pods: %w", err)
	}
	factory.Start(ctx.Done())
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("following the agent pods: %w", ctx.Err())
	}
	return nil
}

// Controller returns a config that authenticates as the controller's service account.
func (in *Install) Controller(ctx context.Context) (*rest.Config, error) {
	return in.token(ctx, ControllerSA, nil)
}

// Agent waits until the agent DaemonSet has a pod on node (the controller labels the node for
// it) and returns a config with a token of the agent's service account bound to that pod.
func (in *Install) Agent(ctx context.Context, node string) (*rest.Config, error) {
	for {
		in.mu.Lock()
		pod, changed := in.pods[node], in.changed
		in.mu.Unlock()
		if pod != nil {
			return in.token(ctx, AgentSA, pod)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the agent's pod on %s: %w", node, ctx.Err())
		case <-changed:
		}
	}
}

// token returns a config that authenticates only with a new token of the service account sa,
// bound to pod when not nil.
func (in *Install) token(ctx context.Context, sa string, pod *corev1.Pod) (*rest.Config, error) {
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(int64(tokenLifetime.Seconds())),
	}}
	if pod != nil {
		tr.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := in.clientset.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, sa, tr, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for %s: %w", sa, err)
	}
	cfg := rest.AnonymousClientConfig(in.base)
	cfg.BearerToken = tr.Status.Token
	return cfg, nil
}

// Leases of the in-process controller: short, so that a replica that crashed is replaced
// within seconds.
const (
	leaseDuration = 4 * time.Second
	renewDeadline = 3 * time.Second
	retryPeriod   = 500 * time.Millisecond
	restartDelay  = time.Second
)

// RunController runs the controller as a replica of its Deployment would: under its service
// account's token, electing its leader in the operator's namespace on short leases, and
// started again whenever it exits (as the kubelet restarts a container: e.g. after it lost
// its lease while the API server was away), until ctx ends. Ending ctx is a crash: the lease
// is not released, the next replica waits for it to expire. The returned channel is closed
// once the controller is gone.
func (in *Install) RunController(ctx context.Context, o controllers.Options, opts ctrl.Options) (<-chan struct{}, error) {
	cfg, err := in.Controller(ctx)
	if err != nil {
		return nil, err
	}
	o.OperatorNamespace = Namespace
	opts.LeaderElection, opts.LeaderElectionID, opts.LeaderElectionNamespace = true, controllers.LeaderElectionID, Namespace
	opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod = ptr.To(leaseDuration), ptr.To(renewDeadline), ptr.To(retryPeriod)
	opts.Controller.SkipNameValidation = ptr.To(true) // every replica registers the same controllers here
	return KeepRunning(ctx, ctrl.Log.WithName("deploy"), func() (ctrl.Manager, error) {
		return controllers.NewManager(cfg, o, opts)
	}), nil
}

// KeepRunning runs the controller's manager that newManager builds until ctx ends, building
// and starting it again a second after it exits, as a Deployment's pod is restarted. Every
// start registers the same controllers in this one process, so newManager's options must
// skip controller-runtime's name validation. The channel is closed once it is gone.
func KeepRunning(ctx context.Context, logger logr.Logger, newManager func() (ctrl.Manager, error)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			mgr, err := newManager()
			if err == nil {
				err = mgr.Start(ctx)
			}
			if ctx.Err() != nil {
				return
			}
			logger.Error(err, "Controller exited; starting it again", "after", restartDelay)
			select {
			case <-ctx.Done():
			case <-time.After(restartDelay):
			}
		}
	}()
	return done
}

// AgentWrites reads an API server audit log for the requests made under the agents' identity:
// own counts, per node, the successful writes to the status of that node's own
// BottlerocketNode; foreign describes every other write attempted, refused or not.
func AgentWrites(auditLog string) (own map[string]int, foreign []string, err error) {
	own = map[string]int{}
	_, err = audit.Count(auditLog, func(ev audit.Event) bool {
		if ev.User.Username != AgentUser {
			return false
		}
		node := ev.User.Extra[NodeNameExtra]
		switch {
		case len(node) != 1 || ev.ObjectRef.Resource != "bottlerocketnodes" || ev.ObjectRef.Subresource != "status" || ev.ObjectRef.Name != node[0]:
			foreign = append(foreign, fmt.Sprintf("the agent of node %v: %s %s/%s %s (response %d)",
				node, ev.Verb, ev.ObjectRef.Resource, ev.ObjectRef.Subresource, ev.ObjectRef.Name, ev.ResponseStatus.Code))
		case ev.ResponseStatus.Code/100 == 2:
			own[node[0]]++
		}
		return false
	})
	return own, foreign, err
}
