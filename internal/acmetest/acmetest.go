// Package acmetest runs a real ACME server for tests, in-process: Pebble's WFE, CA and VA
// (github.com/letsencrypt/pebble/v2) behind HTTPS on 127.0.0.1, and challtestsrv's DNS server
// answering 127.0.0.1 for every name, so that Pebble validates HTTP-01 and TLS-ALPN-01 against
// the server under test on 127.0.0.1. Only tests may import it.
package acmetest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// LeftoverGoroutine is the function of the one goroutine that outlives Start's cleanup:
// Pebble's VA starts a task loop that nothing can stop. Leak checks should ignore it.
const LeftoverGoroutine = "github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"

// Options say where Pebble's VA finds the server under test.
type Options struct {
	// HTTPPort is the port the VA connects to on 127.0.0.1 for HTTP-01 (the server's port 80).
	HTTPPort int
	// TLSPort is the port the VA connects to on 127.0.0.1 for TLS-ALPN-01 (the server's 443).
	TLSPort int
}

// CA is a running Pebble. Everything it started is stopped by t.Cleanup.
type CA struct {
	// DirectoryURL is the ACME directory, https://127.0.0.1:<port>/dir.
	DirectoryURL string
	// ServerRootPEM is the root that signs Pebble's own HTTPS certificate: what an ACME client
	// must trust to talk to DirectoryURL (hearth's acme.ca_root).
	ServerRootPEM []byte
	// ServerRootFile is ServerRootPEM written to a file in a test temp dir.
	ServerRootFile string
	// DNSAddr is challtestsrv's DNS server (UDP and TCP), which Pebble's VA uses.
	DNSAddr string

	ca   *ca.CAImpl
	logs *logBuffer
}

// IssuerRootPEM is the root of the certificates Pebble issues (made fresh by each Start).
func (c *CA) IssuerRootPEM() []byte { return c.ca.GetRootCert(0).PEM() }

// RootPool trusts only IssuerRootPEM: use it in clients of a server whose certificate
// Pebble issued.
func (c *CA) RootPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.GetRootCert(0).Cert)
	return pool
}

// ServerRootPool trusts only ServerRootPEM: use it in ACME clients of DirectoryURL.
func (c *CA) ServerRootPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.ServerRootPEM)
	return pool
}

// Logs returns what Pebble and challtestsrv logged so far (the last 256 KiB).
func (c *CA) Logs() string { return c.logs.String() }

// Start runs Pebble and its DNS server until the test ends. It sets PEBBLE_VA_NOSLEEP=1 and
// PEBBLE_WFE_NONCEREJECT=0 for the test (so it cannot be used with t.Parallel). When the test
// fails, Pebble's log is written to the test log.
func Start(t testing.TB, opts Options) *CA {
	t.Helper()
	if opts.HTTPPort <= 0 || opts.TLSPort <= 0 {
		t.Fatalf("acmetest: Options.HTTPPort and TLSPort are required (got %d, %d)", opts.HTTPPort, opts.TLSPort)
	}
	// Pebble reads these when its VA and WFE are built: validate at once, never reject a
	// good nonce, and validate for real.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "0")

	logs := &logBuffer{max: 256 << 10}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("acmetest: Pebble log:\n%s", logs.String())
		}
	})
	logger := log.New(logs, "pebble ", log.Lmicroseconds)

	dnsAddr := startDNS(t, logs)

	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "acmetest default profile"}}
	// ECDSA keeps start-up fast; the chain is root → intermediate → leaf.
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, dnsAddr, store)
	// Retry-After 0: clients poll at their own pace (acmez: every 250 ms).
	frontEnd := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	rootPEM, serverCert, err := serverCertificate()
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	rootFile := filepath.Join(t.TempDir(), "pebble-server-root.pem")
	if err := os.WriteFile(rootFile, rootPEM, 0o600); err != nil {
		t.Fatalf("acmetest: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("acmetest: listen: %v", err)
	}
	srv := &http.Server{
		Handler:           frontEnd.Handler(),
		ErrorLog:          logger,
		ReadHeaderTimeout: 10 * time.Second,
	}
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12})
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("acmetest: serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})

	return &CA{
		DirectoryURL:   "https://" + ln.Addr().String() + wfe.DirectoryPath,
		ServerRootPEM:  rootPEM,
		ServerRootFile: rootFile,
		DNSAddr:        dnsAddr,
		ca:             authority,
		logs:           logs,
	}
}

// startDNS runs challtestsrv's DNS server on a port free for both UDP and TCP, answering
// 127.0.0.1 to every A query and nothing to AAAA, and returns its address once it answers.
func startDNS(t testing.TB, logs *logBuffer) string {
	t.Helper()
	var lastErr error
	for range 5 {
		addr, err := freeUDPAndTCPPort()
		if err != nil {
			lastErr = err
			continue
		}
		srv, err := challtestsrv.New(challtestsrv.Config{
			DNSAddrs: []string{addr},
			Log:      log.New(logs, "challtestsrv ", log.Lmicroseconds),
		})
		if err != nil {
			t.Fatalf("acmetest: challtestsrv: %v", err)
		}
		srv.SetDefaultDNSIPv4("127.0.0.1")
		srv.SetDefaultDNSIPv6("") // no AAAA: the server under test listens on 127.0.0.1 only
		srv.Run()
		// challtestsrv binds in goroutines and only logs a failure: wait until both the UDP
		// and the TCP server answer, so that Shutdown never races a server still starting.
		if lastErr = waitDNS(addr); lastErr == nil {
			t.Cleanup(srv.Shutdown)
			return addr
		}
		// Someone took the port between our probe and challtestsrv's bind; whichever server
		// did start is stopped, and we try another port.
		srv.Shutdown()
	}
	t.Fatalf("acmetest: DNS server did not start: %v", lastErr)
	return ""
}

// freeUDPAndTCPPort finds a 127.0.0.1 port that is free for both protocols right now.
func freeUDPAndTCPPort() (string, error) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer tl.Close()
	addr := tl.Addr().String()
	ul, err := net.ListenPacket("udp", addr)
	if err != nil {
		return "", err
	}
	ul.Close()
	return addr, nil
}

func waitDNS(addr string) error {
	q := new(dns.Msg)
	q.SetQuestion("probe.acmetest.", dns.TypeA)
	deadline := time.Now().Add(5 * time.Second)
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 250 * time.Millisecond}
		for {
			in, _, err := c.Exchange(q, addr)
			if err == nil && len(in.Answer) == 1 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s %s: %v", network, addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// serverCertificate makes a root and a leaf for 127.0.0.1, localhost and pebble, for Pebble's
// own HTTPS (the role of pebble's test/certs, made fresh so no private key is shared).
func serverCertificate() (rootPEM []byte, leaf tls.Certificate, err error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, err
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "acmetest Pebble server root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, leaf, err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, leaf, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost", "pebble"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		return nil, leaf, err
	}
	leaf = tls.Certificate{Certificate: [][]byte{leafDER, rootDER}, PrivateKey: leafKey}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), leaf, nil
}

// logBuffer keeps the tail of the logs; Pebble's goroutines may still write after the test
// ended, which t.Log would not allow.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Port returns the port of a "host:port" address, for building Options from listeners.
func Port(t testing.TB, addr net.Addr) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	return n
}
