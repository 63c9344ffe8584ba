package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/hearthlab/hearth/internal/acmetest"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
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
	logs := &hearthtest.Logs{}
	again, err := New(rig.cfg, certsLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	stop := hearthtest.Run(t, "certs", again.Run)
	again.Manage(t.Context(), "relay.test")
	hearthtest.Eventually(t, "the stored certificate", 5*time.Second, func() bool { return again.Ready("relay.test") })
	stop()
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
	hearthtest.Eventually(t, "the port-80 explanation in the log", 20*time.Second, func() bool {
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
	hearthtest.Eventually(t, "the explanation for chat.test", 20*time.Second, func() bool {
		return strings.Contains(rig.logs.String(), "http://chat.test/.well-known/acme-challenge: open port 80")
	})
	if !rig.certs.serves("chat.test") {
		t.Fatal("a managed site host is not served on port 80")
	}
	siteGone()
	hearthtest.Eventually(t, "chat.test forgotten", 5*time.Second, func() bool { return !rig.certs.serves("chat.test") })
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
	logs := &hearthtest.Logs{}
	certs, err := New(cfg, certsLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	stop := hearthtest.Run(t, "certs", certs.Run)
	certs.Manage(t.Context(), "relay.test")
	want := "the ACME CA's HTTPS certificate at " + ca.DirectoryURL + " is not trusted: set acme.ca_root"
	hearthtest.Eventually(t, "the acme.ca_root explanation", 10*time.Second, func() bool { return strings.Contains(logs.String(), want) })
	stop()
}

func TestCertsBringYourOwn(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeSelfSigned(t, certFile, keyFile, "relay.test")

	cfg := config.DefaultRelay()
	cfg.Domains = []string{"relay.test"}
	cfg.TLS = config.TLSFiles{Cert: certFile, Key: keyFile}
	logs := &hearthtest.Logs{}
	certs, err := New(cfg, certsLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	stop := hearthtest.Run(t, "certs", certs.Run)

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
	certs.Manage(t.Context(), "chat.test")
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

	stop()
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
			_, err := New(cfg, nil)
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
	certs, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "certs", certs.Run)

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
