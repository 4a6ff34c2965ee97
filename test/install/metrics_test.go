package install_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// TestMetricsAreServedToTheirReadersOnly runs the operator's binary in both modes, each on a
// token of its own service account as installed, and scrapes their metrics endpoints as the
// install serves them: HTTPS, and only to a client the API server authenticates and lets get
// /metrics. It proves both roles may ask the API server (TokenReview, SubjectAccessReview)
// and that the install's metrics-reader role is what a scraper needs.
func TestMetricsAreServedToTheirReadersOnly(t *testing.T) {
	installed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "operator")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the operator: %v\n%s", err, out)
	}

	// A scraper bound to the install's reader role, and one bound to nothing.
	const scraper = "metrics-scraper"
	createFixture(ctx, t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: scraper, Namespace: namespace}})
	createFixture(ctx, t, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: scraper},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: find(t, "ClusterRole", "bottlerocket-update-operator-metrics-reader").GetName()},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: scraper, Namespace: namespace}},
	})
	const stranger = "metrics-stranger"
	createFixture(ctx, t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: stranger, Namespace: namespace}})
	reader := tokenConfig(ctx, t, scraper, nil).BearerToken
	other := tokenConfig(ctx, t, stranger, nil).BearerToken

	for _, tc := range []struct {
		mode, sa string
		args     []string
	}{
		{"-controller", controllerSA, []string{"-operator-namespace", namespace}},
		// No BottlerocketNode names this node: the agent waits for one, and serves its metrics.
		{"-agent", agentSA, []string{"-node-name", "metrics-node", "-api-socket", filepath.Join(dir, "api.sock")}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			addr := freeAddress(t)
			cmd := exec.CommandContext(ctx, bin, append([]string{tc.mode, "-kubeconfig", writeKubeconfig(t, dir, tokenConfig(ctx, t, tc.sa, nil)),
				"-metrics-bind-address", addr, "-health-probe-bind-address", "127.0.0.1:0"}, tc.args...)...)
			var logs strings.Builder
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if t.Failed() {
					t.Logf("the operator's log:\n%s", logs.String())
				}
			})
			url := "https://" + addr + "/metrics"
			eventually(t, "the metrics endpoint answers over HTTPS", func() error {
				_, _, err := scrape(ctx, url, "")
				return err
			})
			for _, c := range []struct {
				who, token string
				want       int
			}{
				{"no token", "", http.StatusUnauthorized},
				{"a token the API server does not know", "not-a-token", http.StatusUnauthorized},
				{"a service account without the reader role", other, http.StatusForbidden},
				{"the reader role's service account", reader, http.StatusOK},
			} {
				code, body, err := scrape(ctx, url, c.token)
				if err != nil {
					t.Fatal(err)
				}
				if code != c.want {
					t.Errorf("%s: HTTP %d (%s), want %d", c.who, code, strings.TrimSpace(body), c.want)
				}
				if code == http.StatusOK && !strings.Contains(body, "bottlerocket_update_operator_build_info") {
					t.Errorf("%s: the scrape holds no build info:\n%s", c.who, body)
				}
			}
		})
	}
}

// scrape gets url over TLS (the endpoint's certificate is self-signed) with token as bearer.
func scrape(ctx context.Context, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a self-signed certificate, made at start
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("getting %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// freeAddress returns a loopback address no one listens on.
func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// writeKubeconfig writes cfg (a bearer token for the test's API server) as a kubeconfig.
func writeKubeconfig(t *testing.T, dir string, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	f, err := os.CreateTemp(dir, "*.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if err := clientcmd.WriteToFile(*kc, f.Name()); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
