package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// selfSigned writes a certificate for 127.0.0.1 and its key; it returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "delta-exporter test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSAndBasicAuth: with --web.config.file the exporter speaks only
// TLS and answers only with the right credentials: a scrape without them,
// with a wrong password, over plain HTTP or from a client that does not
// trust the certificate gets no metrics.
func TestTLSAndBasicAuth(t *testing.T) {
	bin := binary(t)
	dir, cfgDir := t.TempDir(), t.TempDir()
	w := newWriter(t, dir)
	w.request()
	certFile, keyFile, pool := selfSigned(t, cfgDir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(cfgDir, "web.yml")
	if err := os.WriteFile(webConfig, []byte(fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
basic_auth_users:
  prometheus: %s
`, certFile, keyFile, hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	start(t, bin, "--snapshots.dir="+dir, "--attribution.trust-afters", "--data.dir="+t.TempDir(), "--web.listen-address="+addr, "--web.config.file="+webConfig)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(c *http.Client, url, user, pass string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	metrics := "https://" + addr + "/metrics"
	waitFor(t, "the pair published over TLS with credentials", 30*time.Second, func() (bool, string) {
		code, body, err := get(client, metrics, "prometheus", "s3cret")
		return err == nil && code == 200 && strings.Contains(body, "llm_request_e2e_seconds_count"), fmt.Sprint(code, err)
	})
	for _, tc := range []struct {
		name       string
		client     *http.Client
		url        string
		user, pass string
		wantCode   int // 0: the request must fail
	}{
		{"no credentials", client, metrics, "", "", http.StatusUnauthorized},
		{"wrong password", client, metrics, "prometheus", "guess", http.StatusUnauthorized},
		{"unknown user", client, metrics, "admin", "s3cret", http.StatusUnauthorized},
		{"health without credentials", client, "https://" + addr + "/-/healthy", "", "", http.StatusUnauthorized},
		{"plain HTTP", &http.Client{Timeout: 5 * time.Second}, "http://" + addr + "/metrics", "prometheus", "s3cret", http.StatusBadRequest},
		{"untrusted certificate", &http.Client{Timeout: 5 * time.Second}, metrics, "prometheus", "s3cret", 0},
	} {
		code, body, err := get(tc.client, tc.url, tc.user, tc.pass)
		if tc.wantCode == 0 {
			if err == nil {
				t.Errorf("%s: answered %d", tc.name, code)
			}
			continue
		}
		if err != nil || code != tc.wantCode || strings.Contains(body, "llm_request") {
			t.Errorf("%s: %d %v, want %d and no metrics", tc.name, code, err, tc.wantCode)
		}
	}
}
