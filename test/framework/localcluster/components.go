package localcluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Client rate limits: the components' defaults (20/30) make a fleet of hundreds of nodes and
// pods crawl.
const (
	componentQPS   = "200"
	componentBurst = "400"
	adminQPS       = 200
	adminBurst     = 400
)

// ports of the components.
type ports struct {
	etcdClient, etcdPeer, apiserver, kcm, scheduler, kwok int
}

// startEnv is what the components' start functions need.
type startEnv struct {
	opts        Options
	ports       ports
	pki         *pki
	kubeconfigs map[string]string
}

// start generates the credentials and starts every component in order.
func (c *Cluster) start(ctx context.Context, opts Options) error {
	began := time.Now()
	p, err := newPKI(filepath.Join(c.Dir, "pki"))
	if err != nil {
		return err
	}
	free, err := FreePorts(6)
	if err != nil {
		return err
	}
	pt := ports{free[0], free[1], free[2], free[3], free[4], free[5]}
	server := "https://" + hostPort(pt.apiserver)
	c.pki, c.server = p, server
	kubeconfigs := map[string]string{}
	for _, user := range []string{userAdmin, userKCM, userScheduler, userKwok} {
		path, _, err := p.kubeconfig(c.Dir, user, server)
		if err != nil {
			return err
		}
		kubeconfigs[user] = path
	}
	c.Kubeconfig = kubeconfigs[userAdmin]
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return fmt.Errorf("loading the admin kubeconfig: %w", err)
	}
	c.Config.QPS, c.Config.Burst = adminQPS, adminBurst
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("creating the admin client: %w", err)
	}

	env := &startEnv{opts: opts, ports: pt, pki: p, kubeconfigs: kubeconfigs}
	steps := []func(*startEnv) (*process, wait.ConditionWithContextFunc, error){
		c.startEtcd, c.startAPIServer, c.startKCM, c.startScheduler, c.startKwok,
	}
	for _, start := range steps {
		t := time.Now()
		proc, healthy, err := start(env)
		if err != nil {
			return err
		}
		if err := waitHealthy(ctx, opts.StartTimeout, proc, healthy); err != nil {
			return err
		}
		proc.healthy = healthy
		c.log.Info("Component healthy", "component", proc.name, "after", time.Since(t).Round(time.Millisecond))
	}
	c.log.Info("Cluster up", "after", time.Since(began).Round(time.Millisecond), "kubeconfig", c.Kubeconfig)
	return nil
}

// waitHealthy polls healthy until it holds, failing early if the process exits.
func waitHealthy(ctx context.Context, timeout time.Duration, p *process, healthy wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		ok, _ := healthy(ctx)
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to be healthy (log: %s): %w", p.name, p.log, err)
	}
	return nil
}

// httpHealthy is a condition that holds when url answers 200. The components' serving
// certificates are self-signed at their start, hence no verification for this local probe.
func httpHealthy(url string) wait.ConditionWithContextFunc {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // local health probe
	}}
	return func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close() // only the status is read
		return resp.StatusCode == http.StatusOK, nil
	}
}

func (e *startEnv) bin(name string) string { return filepath.Join(e.opts.BinDir, name) }

func (c *Cluster) startEtcd(e *startEnv) (*process, wait.ConditionWithContextFunc, error) {
	client, peer := "http://"+hostPort(e.ports.etcdClient), "http://"+hostPort(e.ports.etcdPeer)
	p, err := c.run("etcd", e.bin("etcd"), nil,
		"--name=localcluster",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=localcluster="+peer,
		"--unsafe-no-fsync", // a throwaway cluster: no need to wait for the disk
		"--log-level=warn",
	)
	return p, httpHealthy(client + "/health"), err
}

func (c *Cluster) startAPIServer(e *startEnv) (*process, wait.ConditionWithContextFunc, error) {
	p := e.pki
	args := []string{
		"--etcd-servers=http://" + hostPort(e.ports.etcdClient),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(e.ports.apiserver),
		// 1.37 refuses a loopback --advertise-address with the default reconciler: leave it unset
		// and keep the kubernetes Service's endpoints out of the picture.
		"--endpoint-reconciler-type=none",
		"--tls-cert-file=" + p.servingCert, "--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saPublicKeyFile,
		"--service-account-signing-key-file=" + p.saPrivateKeyFile,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--requestheader-client-ca-file=" + p.frontProxyCAFile,
		"--requestheader-allowed-names=" + frontProxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.frontProxyClient, "--proxy-client-key-file=" + p.frontProxyKey,
		"--cert-dir=" + filepath.Join(c.Dir, "pki", "apiserver"),
		// The API server's identity towards real kubelets (test/framework/realnode), and the CA
		// it verifies them with. It cannot dial them yet: their Nodes have no address (see
		// docs/local-cluster.md, Real nodes).
		"--kubelet-certificate-authority=" + p.caFile,
		"--kubelet-client-certificate=" + p.kubeletClient, "--kubelet-client-key=" + p.kubeletClientKey,
	}
	if e.opts.AuditLog {
		policy := filepath.Join(c.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(e.opts.AuditPolicy), 0o600); err != nil {
			return nil, nil, fmt.Errorf("writing the audit policy: %w", err)
		}
		c.AuditLogPath = filepath.Join(c.Dir, auditLogPrefix+auditLogExt)
		args = append(args, "--audit-policy-file="+policy, "--audit-log-path="+c.AuditLogPath,
			"--audit-log-mode=blocking")
	}
	proc, err := c.run("kube-apiserver", e.bin("kube-apiserver"), nil, args...)
	ready := func(ctx context.Context) (bool, error) {
		body, err := c.Clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	}
	return proc, ready, err
}

// commonArgs are the flags kube-controller-manager and kube-scheduler share.
func commonArgs(kubeconfig string, port int) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--leader-elect=false",
		"--kube-api-qps=" + componentQPS,
		"--kube-api-burst=" + componentBurst,
	}
}

func (c *Cluster) startKCM(e *startEnv) (*process, wait.ConditionWithContextFunc, error) {
	p := e.pki
	args := append(commonArgs(e.kubeconfigs[userKCM], e.ports.kcm),
		"--cert-dir="+filepath.Join(c.Dir, "pki", "kcm"),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+p.saPrivateKeyFile,
		"--root-ca-file="+p.caFile,
		"--cluster-signing-cert-file="+p.caFile, "--cluster-signing-key-file="+p.caKeyFile,
		"--requestheader-client-ca-file="+p.frontProxyCAFile,
		"--client-ca-file="+p.caFile,
		"--service-cluster-ip-range="+serviceCIDR,
	)
	proc, err := c.run("kube-controller-manager", e.bin("kube-controller-manager"), nil, args...)
	return proc, httpHealthy(fmt.Sprintf("https://%s/healthz", hostPort(e.ports.kcm))), err
}

func (c *Cluster) startScheduler(e *startEnv) (*process, wait.ConditionWithContextFunc, error) {
	args := append(commonArgs(e.kubeconfigs[userScheduler], e.ports.scheduler),
		"--cert-dir="+filepath.Join(c.Dir, "pki", "scheduler"))
	proc, err := c.run("kube-scheduler", e.bin("kube-scheduler"), nil, args...)
	return proc, httpHealthy(fmt.Sprintf("https://%s/healthz", hostPort(e.ports.scheduler))), err
}
