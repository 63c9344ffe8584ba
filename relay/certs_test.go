package relay

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
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/hearthlab/hearth/internal/acmetest"
	"github.com/hearthlab/hearth/internal/config"
)

// A real certificate for relay.test from Pebble over HTTP-01, served to a client that trusts
// only Pebble's issuer root.
func TestCertsHTTP01(t *testing.T) {
	rig := startCertsRig(t, []string{"http-01"}, 0)
	rig.certs.Manage(rig.ctx, "relay.test")
	rig.waitReady(t, "relay.test")

	rig.assertServesPebbleCertificate(t)
	if n := rig.http01Hits.Load(); n == 0 {
		t.Fatal("Pebble never fetched the HTTP-01 challenge from the relay's port-80 handler")
	}
	if n := rig.alpnHellos.Load(); n != 0 {
		t.Fatalf("%d acme-tls/1 handshakes with http-01 only", n)
	}
	rig.stopAndCheckNothingLeft(t)

	// A restarted relay finds the certificate in acme.storage and asks the CA for nothing.
	hits := rig.http01Hits.Load()
	logs := &certsTestLog{}
	again, err := NewCerts(rig.cfg, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- again.Run(ctx) }()
	again.Manage(ctx, "relay.test")
	certsWaitFor(t, 5*time.Second, "the stored certificate", func() bool { return again.Ready("relay.test") })
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(logs.String(), "obtaining certificate") || rig.http01Hits.Load() != hits {
		t.Fatalf("the restarted relay obtained a new certificate:\n%s", logs.String())
	}
}

// The same with TLS-ALPN-01 only: the challenge is answered by the HTTPS listener's TLSConfig.
func TestCertsTLSALPN01(t *testing.T) {
	rig := startCertsRig(t, []string{"tls-alpn-01"}, 0)
	rig.certs.Manage(rig.ctx, "relay.test")
	rig.waitReady(t, "relay.test")

	rig.assertServesPebbleCertificate(t)
	if n := rig.alpnHellos.Load(); n == 0 {
		t.Fatal("Pebble never made an acme-tls/1 handshake with the relay's HTTPS listener")
	}
	if n := rig.http01Hits.Load(); n != 0 {
		t.Fatalf("%d HTTP-01 fetches with tls-alpn-01 only", n)
	}
	// Managing the same host again starts nothing new.
	rig.certs.Manage(rig.ctx, "relay.test", "RELAY.test.")
	rig.stopAndCheckNothingLeft(t)
}

// Port 80 closed (Pebble's VA gets connection refused): the log says what to do, and the
// relay keeps running.
func TestCertsPortClosedIsExplained(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := acmetest.Port(t, closed.Addr())
	closed.Close()

	rig := startCertsRig(t, []string{"http-01"}, closedPort)
	rig.certs.Manage(rig.ctx, "relay.test")
	want := "the CA could not reach http://relay.test/.well-known/acme-challenge: open port 80 to the internet, or use tls-alpn-01 only"
	certsWaitFor(t, 20*time.Second, "the port-80 explanation in the log", func() bool {
		return strings.Contains(rig.logs.String(), want)
	})
	if !strings.Contains(rig.logs.String(), "level=ERROR msg=\""+want) {
		t.Fatalf("explanation not logged as an error:\n%s", rig.logs.String())
	}
	if rig.certs.Ready("relay.test") {
		t.Fatal("Ready with no certificate")
	}

	// A site whose context ends before its certificate arrives is forgotten, so that
	// managing it again starts over.
	siteCtx, siteGone := context.WithCancel(rig.ctx)
	rig.certs.Manage(siteCtx, "chat.test")
	certsWaitFor(t, 20*time.Second, "the explanation for chat.test", func() bool {
		return strings.Contains(rig.logs.String(), "http://chat.test/.well-known/acme-challenge: open port 80")
	})
	if !rig.certs.serves("chat.test") {
		t.Fatal("a managed site host is not served on port 80")
	}
	siteGone()
	certsWaitFor(t, 5*time.Second, "chat.test forgotten", func() bool { return !rig.certs.serves("chat.test") })
	rig.certs.Manage(rig.ctx, "chat.test")
	if !rig.certs.serves("chat.test") {
		t.Fatal("managing chat.test again did nothing")
	}
	rig.stopAndCheckNothingLeft(t)
}

// A private CA whose root is not configured: the log names acme.ca_root.
func TestCertsUntrustedCAIsExplained(t *testing.T) {
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: 1, TLSPort: 1}) // never validates
	cfg := config.DefaultRelay()
	cfg.Domains = []string{"relay.test"}
	cfg.ACME = config.ACME{CA: ca.DirectoryURL, Storage: t.TempDir(), Challenges: []string{"tls-alpn-01"}}
	logs := &certsTestLog{}
	certs, err := NewCerts(cfg, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- certs.Run(ctx) }()
	certs.Manage(ctx, "relay.test")
	want := "the ACME CA's HTTPS certificate at " + ca.DirectoryURL + " is not trusted: set acme.ca_root"
	certsWaitFor(t, 10*time.Second, "the acme.ca_root explanation", func() bool { return strings.Contains(logs.String(), want) })
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestCertsBringYourOwn(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeSelfSigned(t, certFile, keyFile, "relay.test")

	cfg := config.DefaultRelay()
	cfg.Domains = []string{"relay.test"}
	cfg.TLS = config.TLSFiles{Cert: certFile, Key: keyFile}
	logs := &certsTestLog{}
	certs, err := NewCerts(cfg, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- certs.Run(ctx) }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ErrorLog: log.New(logs, "http server: ", 0),
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }),
	}
	go srv.Serve(tls.NewListener(ln, certs.TLSConfig()))
	t.Cleanup(func() { srv.Close() })

	if !certs.Ready("relay.test") || certs.Ready("other.test") {
		t.Fatalf("Ready: relay.test %v (want true), other.test %v (want false)", certs.Ready("relay.test"), certs.Ready("other.test"))
	}
	if got := certsHandshake(t, ln.Addr().String(), first); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("served serial %v, want %v", got.SerialNumber, first.SerialNumber)
	}

	// Port 80 only redirects: there are no challenges to answer.
	rec := httptest.NewRecorder()
	certs.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://relay.test/.well-known/acme-challenge/abc", nil))
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "https://relay.test/.well-known/acme-challenge/abc" {
		t.Fatalf("port 80: %d %q, want 301 to https", rec.Code, rec.Header().Get("Location"))
	}

	// A host the certificate does not cover is served but warned about.
	certs.Manage(ctx, "chat.test")
	if !strings.Contains(logs.String(), "tls.cert does not cover this host") {
		t.Fatalf("no warning for a host outside the certificate:\n%s", logs.String())
	}

	// A renewed file is picked up (the check interval is a minute in production).
	second := writeSelfSigned(t, certFile, keyFile, "relay.test", "chat.test")
	certs.byo.every = 0
	if got := certsHandshake(t, ln.Addr().String(), second); got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatalf("after renewal served serial %v, want %v", got.SerialNumber, second.SerialNumber)
	}
	if !certs.Ready("chat.test") {
		t.Fatal("Ready(chat.test) false after the renewed certificate added it")
	}

	// A half-written renewal (key missing) keeps the certificate in use.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := certsHandshake(t, ln.Addr().String(), second); got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatalf("after a broken key file served serial %v, want %v", got.SerialNumber, second.SerialNumber)
	}
	if !strings.Contains(logs.String(), "changed but does not load") {
		t.Fatalf("broken renewal not logged:\n%s", logs.String())
	}

	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestCertsBringYourOwnErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, "relay.test")
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), keyFile, "tls.cert"},
		{"key is the cert", certFile, certFile, "tls.cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.DefaultRelay()
			cfg.Domains = []string{"relay.test"}
			cfg.TLS = config.TLSFiles{Cert: tc.cert, Key: tc.key}
			_, err := NewCerts(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// The port-80 handler with ACME: challenges aside, known hosts are redirected with their
// path and query, unknown hosts get 404.
func TestCertsHTTPHandler(t *testing.T) {
	cfg := config.DefaultRelay()
	cfg.Domains = []string{"relay.test"}
	cfg.ACME.CA = "https://127.0.0.1:1/dir" // never contacted: nothing is managed here
	cfg.ACME.Storage = t.TempDir()
	certs, err := NewCerts(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- certs.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	for _, tc := range []struct {
		name, method, target, host string
		code                       int
		location                   string
	}{
		{"known host", http.MethodGet, "/v1/models?x=1&y=2", "relay.test", 301, "https://relay.test/v1/models?x=1&y=2"},
		{"port and case", http.MethodPost, "/api/chat", "Relay.TEST:80", 301, "https://relay.test/api/chat"},
		{"root", http.MethodGet, "/", "relay.test", 301, "https://relay.test/"},
		{"no active challenge", http.MethodGet, "/.well-known/acme-challenge/tok", "relay.test", 301, "https://relay.test/.well-known/acme-challenge/tok"},
		{"unknown host", http.MethodGet, "/v1/models", "evil.test", 404, ""},
		{"IP address", http.MethodGet, "/", "203.0.113.7", 404, ""},
		{"no host", http.MethodGet, "/", "", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.target, nil)
			req.Host = tc.host
			rec := httptest.NewRecorder()
			certs.HTTPHandler().ServeHTTP(rec, req)
			if rec.Code != tc.code || rec.Header().Get("Location") != tc.location {
				t.Fatalf("%d %q, want %d %q", rec.Code, rec.Header().Get("Location"), tc.code, tc.location)
			}
		})
	}
	if certs.Ready("relay.test") {
		t.Fatal("Ready before any certificate")
	}
}

func TestCertsExplainACMEError(t *testing.T) {
	authz := func(challenge string, p acme.Problem) acme.Problem {
		p.Resource = acme.Authorization{Challenges: []acme.Challenge{
			{Type: "dns-01"},
			{Type: challenge, Error: &p},
		}}
		return p
	}
	// The way acmez and certmagic wrap an authorization failure.
	wrap := func(p acme.Problem) error {
		return fmt.Errorf("[relay.test] Obtain: %w", fmt.Errorf("solving challenge: relay.test: %w",
			fmt.Errorf("[relay.test] %w", fmt.Errorf("authorization failed: %w", p))))
	}
	const ca = "https://acme-v02.api.letsencrypt.org/directory"
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"dns", wrap(authz("http-01", acme.Problem{Type: acme.ProblemTypeDNS, Detail: "NXDOMAIN looking up A for relay.test"})),
			"relay.test does not resolve to this server: point its A/AAAA record at this VPS"},
		{"port 80 closed", wrap(authz("http-01", acme.Problem{Type: acme.ProblemTypeConnection, Detail: "127.0.0.1: Connection refused"})),
			"the CA could not reach http://relay.test/.well-known/acme-challenge: open port 80 to the internet, or use tls-alpn-01 only"},
		{"port 80 firewalled", wrap(authz("http-01", acme.Problem{Type: acme.ProblemTypeConnection, Detail: "Timeout during connect (likely firewall problem)"})),
			"open port 80 to the internet"},
		{"port 443 closed", wrap(authz("tls-alpn-01", acme.Problem{Type: acme.ProblemTypeConnection, Detail: "Connection refused"})),
			"the CA could not reach relay.test:443 for the tls-alpn-01 challenge: open port 443"},
		{"pebble tls-alpn connect", wrap(authz("tls-alpn-01", acme.Problem{Type: acme.ProblemTypeUnauthorized, Detail: "Failed to connect to 127.0.0.1:5001 for the tls-alpn-01 challenge"})),
			"open port 443 to the internet"},
		{"connection without authz", wrap(acme.Problem{Type: acme.ProblemTypeConnection, Detail: "Fetching http://relay.test/.well-known/acme-challenge/x: Connection refused"}),
			"open port 80 to the internet"},
		{"someone else answers", wrap(authz("http-01", acme.Problem{Type: acme.ProblemTypeUnauthorized, Detail: "Invalid response from http://relay.test/.well-known/acme-challenge/x: 404"})),
			"the CA reached relay.test but another server answered its http-01 challenge"},
		{"rate limited", fmt.Errorf("[relay.test] Obtain: creating new order: %w", acme.Problem{Type: acme.ProblemTypeRateLimited, Detail: "too many certificates (5) already issued for this exact set of identifiers"}),
			"the CA rate-limited this account: certmagic retries later; use acme.ca staging"},
		{"caa", wrap(authz("http-01", acme.Problem{Type: acme.ProblemTypeCAA, Detail: "CAA record prevents issuance"})),
			"a CAA DNS record of relay.test forbids this CA"},
		{"compound", fmt.Errorf("finalizing: %w", acme.Problem{Type: acme.ProblemTypeCompound, Subproblems: []acme.Subproblem{
			{Identifier: acme.Identifier{Type: "dns", Value: "other.test"}, Problem: acme.Problem{Type: acme.ProblemTypeCAA}},
			{Identifier: acme.Identifier{Type: "dns", Value: "relay.test"}, Problem: acme.Problem{Type: acme.ProblemTypeDNS, Detail: "SERVFAIL"}},
		}}), "relay.test does not resolve to this server"},
		{"rejected", wrap(acme.Problem{Type: acme.ProblemTypeRejectedIdentifier, Detail: "Domain name is on a blocklist"}),
			"the CA will not issue a certificate for relay.test"},
		{"other problem", wrap(acme.Problem{Type: acme.ProblemTypeServerInternal, Detail: "boom"}),
			"the CA refused a certificate for relay.test: boom (serverInternal); certmagic retries later"},
		{"untrusted CA", fmt.Errorf("registering account: %w", &url.Error{Op: "Get", URL: ca, Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}),
			"the ACME CA's HTTPS certificate at " + ca + " is not trusted: set acme.ca_root"},
		{"CA certificate for another name", fmt.Errorf("registering account: %w", &url.Error{Op: "Get", URL: ca, Err: &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "acme-v02.api.letsencrypt.org"}}}),
			"the ACME CA's HTTPS certificate at " + ca + " is not valid"},
		{"CA unreachable", fmt.Errorf("registering account: %w", &url.Error{Op: "Get", URL: ca, Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}),
			"could not reach the ACME CA at " + ca},
		{"anything else", errors.New("disk full"), "could not get a certificate for relay.test: disk full; certmagic retries later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := explainACMEError("relay.test", ca, tc.err)
			if !strings.HasPrefix(got, tc.want) && !strings.Contains(got, tc.want) {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// certsRig is a relay's two listeners with Certs behind them and a Pebble that validates
// against them.
type certsRig struct {
	ctx        context.Context
	cfg        config.Relay
	certs      *Certs
	ca         *acmetest.CA
	httpsAddr  string
	logs       *certsTestLog
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
	rig := &certsRig{ca: ca, cfg: cfg, httpsAddr: httpsLn.Addr().String(), logs: &certsTestLog{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay log:\n%s", rig.logs.String())
		}
	})
	rig.certs, err = NewCerts(cfg, rig.logs.logger())
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

	ctx, cancel := context.WithCancel(context.Background())
	rig.ctx = ctx
	ran := make(chan error, 1)
	go func() { ran <- rig.certs.Run(ctx) }()
	var once sync.Once
	rig.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-ran:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(rig.stop)
	return rig
}

func (r *certsRig) waitReady(t *testing.T, host string) {
	t.Helper()
	certsWaitFor(t, 25*time.Second, "a certificate for "+host, func() bool { return r.certs.Ready(host) })
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
	var left string
	deadline := time.Now().Add(2 * time.Second)
	for {
		left = ""
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "hearth/relay.(*Certs)") || strings.Contains(g, "certmagic.(*Cache).maintainAssets") {
				left = g
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine left 2s after Run returned:\n%s", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func certsWaitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, d)
		}
		time.Sleep(25 * time.Millisecond)
	}
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

// certsTestLog collects the relay's log; certmagic may still log after the test ended,
// which t.Log would not allow.
type certsTestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *certsTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *certsTestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *certsTestLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
