package certs

// The certificate tests' rig: a relay's listeners with Certs behind them and a Pebble that
// validates against them.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/acmetest"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
)

// certsRig is a relay's two listeners with Certs behind them and a Pebble that validates
// against them.
type certsRig struct {
	ctx        context.Context
	cfg        config.Relay
	certs      *Certs
	ca         *acmetest.CA
	httpsAddr  string
	logs       *hearthtest.Logs
	http01Hits atomic.Int32 // challenge fetches on port 80
	alpnHellos atomic.Int32 // acme-tls/1 handshakes on the HTTPS listener
	stop       func()       // cancels and waits for Run
}

// startCertsRig starts the listeners first, so that Pebble knows their ports; caHTTPPort,
// when not 0, sends Pebble's HTTP-01 requests elsewhere.
func startCertsRig(t *testing.T, challenges []string, caHTTPPort int) *certsRig {
	t.Helper()
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := acmetest.Options{HTTPPort: acmetest.Port(t, httpLn.Addr()), TLSPort: acmetest.Port(t, httpsLn.Addr())}
	if caHTTPPort != 0 {
		opts.HTTPPort = caHTTPPort
	}
	ca := acmetest.Start(t, opts)

	cfg := config.DefaultRelay()
	cfg.Listen = config.RelayListen{HTTPS: httpsLn.Addr().String(), HTTP: httpLn.Addr().String()}
	cfg.Domains = []string{"relay.test"}
	cfg.ACME = config.ACME{CA: ca.DirectoryURL, CARoot: ca.ServerRootFile, Storage: t.TempDir(), Challenges: challenges, Email: "ops@relay.test"}
	rig := &certsRig{ca: ca, cfg: cfg, httpsAddr: httpsLn.Addr().String(), logs: &hearthtest.Logs{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay log:\n%s", rig.logs.String())
		}
	})
	rig.certs, err = New(cfg, certsLogger(rig.logs))
	if err != nil {
		t.Fatal(err)
	}

	port80 := rig.certs.HTTPHandler()
	errLog := log.New(rig.logs, "http server: ", 0)
	httpSrv := &http.Server{ErrorLog: errLog, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			rig.http01Hits.Add(1)
		}
		port80.ServeHTTP(w, r)
	})}
	tlsCfg := rig.certs.TLSConfig()
	getCert := tlsCfg.GetCertificate
	tlsCfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == "acme-tls/1" {
			rig.alpnHellos.Add(1)
		}
		return getCert(hello)
	}
	httpsSrv := &http.Server{ErrorLog: errLog, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host)
	})}
	go httpSrv.Serve(httpLn)
	go httpsSrv.Serve(tls.NewListener(httpsLn, tlsCfg))
	t.Cleanup(func() { httpSrv.Close(); httpsSrv.Close() })

	rig.ctx = t.Context() // obtaining also stops when Run ends
	rig.stop = hearthtest.Run(t, "certs", rig.certs.Run)
	return rig
}

func (r *certsRig) waitReady(t *testing.T, host string) {
	t.Helper()
	hearthtest.Eventually(t, "a certificate for "+host, 25*time.Second, func() bool { return r.certs.Ready(host) })
}

// assertServesPebbleCertificate calls https://relay.test on the HTTPS listener as a client
// trusting only Pebble's issuer root.
func (r *certsRig) assertServesPebbleCertificate(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: r.ca.RootPool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, r.httpsAddr)
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://relay.test/v1/models")
	if err != nil {
		t.Fatalf("HTTPS to relay.test trusting Pebble's root: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello from relay.test" {
		t.Fatalf("HTTPS: %d %q", resp.StatusCode, body)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "relay.test" {
		t.Fatalf("certificate names %v, want [relay.test]", leaf.DNSNames)
	}
	if !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Fatalf("certificate issued by %q, want Pebble", leaf.Issuer.CommonName)
	}
	// Pebble's intermediate comes with the leaf; the root does not.
	issuerRoot, _ := pem.Decode(r.ca.IssuerRootPEM())
	for _, c := range resp.TLS.PeerCertificates {
		if bytes.Equal(c.Raw, issuerRoot.Bytes) {
			t.Fatal("the relay sends the root in its chain")
		}
	}
}

// stopAndCheckNothingLeft stops Run and checks that none of Certs' or certmagic's
// maintenance goroutines remain (they may take a moment to exit after signalling that they
// are done).
func (r *certsRig) stopAndCheckNothingLeft(t *testing.T) {
	t.Helper()
	r.stop()
	hearthtest.Eventually(t, "no goroutine of Certs or certmagic's cache 2s after Run returned", 2*time.Second, func() bool {
		return len(hearthtest.Goroutines("hearth/relay/certs.(*Certs)", "certmagic.(*Cache).maintainAssets")) == 0
	})
}

// certsHandshake connects to addr as relay.test, trusting only want, and returns the leaf.
func certsHandshake(t *testing.T, addr string, want *x509.Certificate) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(want)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "relay.test", RootCAs: pool})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// writeSelfSigned writes a fresh self-signed certificate and key for names.
func writeSelfSigned(t *testing.T, certFile, keyFile string, names ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour),
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
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// certsLogger logs to logs in text, at debug level: certmagic may still log after the test
// ended, which t.Log would not allow.
func certsLogger(logs *hearthtest.Logs) *slog.Logger {
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
