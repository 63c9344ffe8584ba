package setup_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/setup"
)

// writeCert writes a self-signed certificate for name, valid until notAfter, and its key.
func writeCert(t *testing.T, dir, name string, notAfter time.Time) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// TestInitRelaySaysWhatIsWrongWithTheCertificate: init writes the config all the same (the
// files may come later), but says when the brought pair would not serve the domain.
func TestInitRelaySaysWhatIsWrongWithTheCertificate(t *testing.T) {
	pki := t.TempDir()
	future := time.Now().Add(90 * 24 * time.Hour)
	good, goodKey := writeCert(t, pki, "ai.example.com", future)
	other, otherKey := writeCert(t, pki, "other.example.com", future)
	expired, expiredKey := writeCert(t, t.TempDir(), "ai.example.com", time.Now().Add(-24*time.Hour))
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"a good pair", good, goodKey, ""},
		{"swapped", goodKey, good, "do not load as a certificate and its key"},
		{"the key of another", good, otherKey, "do not load as a certificate and its key"},
		{"not there yet", filepath.Join(pki, "missing.pem"), goodKey, "no such file or directory"},
		{"another name", other, otherKey, "is not for ai.example.com"},
		{"ended", expired, expiredKey, "ended on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ch chownLog
			w, err := setup.WriteRelay(setup.Relay{Domain: "ai.example.com", Cert: tc.cert, Key: tc.key, Dir: t.TempDir(), StateDir: t.TempDir()}, testEnv(&ch))
			if err != nil {
				t.Fatalf("init relay refused to write: %v", err)
			}
			next := strings.Join(w.Next, "\n")
			switch {
			case tc.want == "" && strings.Contains(next, "Note:"):
				t.Errorf("a good pair got a note:\n%s", next)
			case tc.want != "" && !strings.Contains(next, tc.want):
				t.Errorf("want a note with %q:\n%s", tc.want, next)
			}
		})
	}
}
