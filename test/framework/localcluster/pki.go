package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// keyPair is a certificate and its private key, in memory and as PEM.
type keyPair struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

// certRequest describes a certificate to issue.
type certRequest struct {
	commonName string
	orgs       []string
	usages     []x509.ExtKeyUsage
	dnsNames   []string
	ips        []net.IP
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding a key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// newCA makes a self-signed certificate authority.
func newCA(commonName string) (*keyPair, error) {
	return sign(nil, certRequest{commonName: commonName})
}

// issue makes a certificate signed by ca.
func (ca *keyPair) issue(req certRequest) (*keyPair, error) {
	return sign(ca, req)
}

// sign makes a certificate for req, signed by ca, or self-signed CA certificate when ca is nil.
func sign(ca *keyPair, req certRequest) (*keyPair, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.commonName, Organization: req.orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  req.usages,
		DNSNames:     req.dnsNames,
		IPAddresses:  req.ips,
	}
	parent, signer := tmpl, crypto.Signer(key)
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of %s: %w", req.commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate of %s: %w", req.commonName, err)
	}
	return &keyPair{
		cert: cert, key: key, keyPEM: keyPEM,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// write stores the pair as dir/name.crt and dir/name.key.
func (p *keyPair) write(dir, name string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, p.certPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", certFile, err)
	}
	if err := os.WriteFile(keyFile, p.keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", keyFile, err)
	}
	return certFile, keyFile, nil
}

// pki is every credential of the cluster, written under dir; the fields are file paths but ca.
type pki struct {
	dir                               string
	caFile, caKeyFile                 string
	frontProxyCAFile                  string
	servingCert, servingKey           string
	frontProxyClient, frontProxyKey   string
	kubeletClient, kubeletClientKey   string
	saPublicKeyFile, saPrivateKeyFile string
	ca                                *keyPair
}

// Client identities, each with its own certificate and kubeconfig.
const (
	userAdmin     = "admin"
	userKCM       = "kube-controller-manager"
	userScheduler = "kube-scheduler"
	userKwok      = "kwok"
)

// clientSubjects are the certificate subjects the built-in RBAC roles expect.
var clientSubjects = map[string]certRequest{
	userAdmin:     {commonName: "kubernetes-admin", orgs: []string{"system:masters"}},
	userKCM:       {commonName: "system:kube-controller-manager"},
	userScheduler: {commonName: "system:kube-scheduler"},
	// kwok patches every node and pod and impersonates: cluster-admin is the simple grant.
	userKwok: {commonName: "kwok", orgs: []string{"system:masters"}},
}

// newPKI generates the CAs, the API server's serving and front-proxy client certificates and the
// service-account signing key, and writes them under dir.
func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	p := &pki{dir: dir}
	ca, err := newCA("localcluster-ca")
	if err != nil {
		return nil, err
	}
	p.ca = ca
	if p.caFile, p.caKeyFile, err = ca.write(dir, "ca"); err != nil {
		return nil, err
	}
	serving, err := ca.issue(certRequest{
		commonName: "kube-apiserver",
		usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		ips: []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(serviceIP)},
	})
	if err != nil {
		return nil, err
	}
	if p.servingCert, p.servingKey, err = serving.write(dir, "apiserver"); err != nil {
		return nil, err
	}
	frontProxyCA, err := newCA("localcluster-front-proxy-ca")
	if err != nil {
		return nil, err
	}
	if p.frontProxyCAFile, _, err = frontProxyCA.write(dir, "front-proxy-ca"); err != nil {
		return nil, err
	}
	fpClient, err := frontProxyCA.issue(certRequest{
		commonName: frontProxyClientName, usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	if p.frontProxyClient, p.frontProxyKey, err = fpClient.write(dir, "front-proxy-client"); err != nil {
		return nil, err
	}
	// The API server's identity towards real kubelets (logs, exec, port-forward), which ask the
	// API server whether it may (webhook authorisation): system:masters may.
	kubeletClient, err := ca.issue(certRequest{
		commonName: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"},
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	if p.kubeletClient, p.kubeletClientKey, err = kubeletClient.write(dir, "apiserver-kubelet-client"); err != nil {
		return nil, err
	}
	if err := p.writeServiceAccountKey(); err != nil {
		return nil, err
	}
	return p, nil
}

// writeServiceAccountKey writes the key pair that signs service-account tokens.
func (p *pki) writeServiceAccountKey() error {
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("encoding the service-account public key: %w", err)
	}
	p.saPrivateKeyFile, p.saPublicKeyFile = filepath.Join(p.dir, "sa.key"), filepath.Join(p.dir, "sa.pub")
	if err := os.WriteFile(p.saPrivateKeyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("writing the service-account key: %w", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	if err := os.WriteFile(p.saPublicKeyFile, pubPEM, 0o600); err != nil {
		return fmt.Errorf("writing the service-account public key: %w", err)
	}
	return nil
}

// kubeconfig issues a client certificate for user and writes a kubeconfig for it to
// dir/<user>.kubeconfig, returning its path and the certificate.
func (p *pki) kubeconfig(dir, user, server string) (string, *keyPair, error) {
	return p.kubeconfigFor(dir, user, clientSubjects[user], server)
}

// kubeconfigFor issues a client certificate of subject req and writes a kubeconfig for it to
// dir/<user>.kubeconfig, returning its path and the certificate.
func (p *pki) kubeconfigFor(dir, user string, req certRequest, server string) (string, *keyPair, error) {
	req.usages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cert, err := p.ca.issue(req)
	if err != nil {
		return "", nil, err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.ca.certPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cert.certPEM, ClientKeyData: cert.keyPEM}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
	cfg.CurrentContext = "local"
	path := filepath.Join(dir, user+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", nil, fmt.Errorf("writing the kubeconfig of %s: %w", user, err)
	}
	return path, cert, nil
}

// KubeletCredentials are the files a real kubelet of the cluster needs.
type KubeletCredentials struct {
	// Kubeconfig holds the kubelet's client identity, system:node:<node> in system:nodes: what
	// the Node authoriser grants a kubelet's requests to (the Node object, its pods, their secrets,
	// token and access reviews for its own webhook authentication and authorisation).
	// https://kubernetes.io/docs/reference/access-authn-authz/node/
	Kubeconfig string
	// CAFile is the cluster's CA: it verifies the API server and, on the kubelet's port, the
	// API server's client certificate (authentication.x509.clientCAFile).
	CAFile string
	// ServingCert and ServingKey are the kubelet's serving certificate for 127.0.0.1, signed
	// by the CA the API server verifies kubelets with (--kubelet-certificate-authority).
	ServingCert, ServingKey string
}

// KubeletCredentials issues, under dir, the credentials of a real kubelet registering the
// Node named node.
func (c *Cluster) KubeletCredentials(dir, node string) (*KubeletCredentials, error) {
	if c.pki == nil {
		return nil, errors.New("issuing kubelet credentials: the cluster is not started")
	}
	if node == "" {
		return nil, errors.New("issuing kubelet credentials: empty node name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	creds := &KubeletCredentials{CAFile: c.pki.caFile}
	var err error
	if creds.Kubeconfig, _, err = c.pki.kubeconfigFor(dir, "kubelet", certRequest{
		commonName: "system:node:" + node, orgs: []string{"system:nodes"},
	}, c.server); err != nil {
		return nil, err
	}
	serving, err := c.pki.ca.issue(certRequest{
		commonName: "system:node:" + node,
		usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		dnsNames:   []string{node},
		ips:        []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		return nil, err
	}
	if creds.ServingCert, creds.ServingKey, err = serving.write(dir, "kubelet-serving"); err != nil {
		return nil, err
	}
	return creds, nil
}
