package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/usage"
)

// relayDomain is the relay's name in the bench; clients dial it at the relay's listener.
const relayDomain = "relay.bench.test"

// benchRelay is a relay serving only the vendor channel, running in this process.
type benchRelay struct {
	rl     *relay.Relay
	db     string
	token  string
	roots  *x509.CertPool // trusts the self-signed certificate
	cancel context.CancelFunc
	done   chan error
}

// startRelay builds a relay whose only channel is the vendor — no home channel, so every chat
// goes relay → vendor — with a bring-your-own self-signed certificate, and starts it.
func startRelay(ctx context.Context, dir, vendorBase string) (*benchRelay, error) {
	certFile, keyFile, roots, err := selfSigned(dir, relayDomain)
	if err != nil {
		return nil, err
	}
	cfg := config.DefaultRelay()
	cfg.Listen = config.RelayListen{HTTPS: "127.0.0.1:0"} // no port 80: the certificate is brought
	cfg.Domains = []string{relayDomain}
	cfg.TLS = config.TLSFiles{Cert: certFile, Key: keyFile}
	cfg.Tunnel = config.RelayTunnel{Bind: "127.0.0.1:0", Token: "bench-tunnel-token-0123456789", Home: "home"}
	cfg.DB = filepath.Join(dir, "relay.db")
	cfg.AdminKey = "bench-admin-key-0123456789"
	cfg.Limits.RequestsPerMinute = 100_000_000 // the bench measures the relay, not its rate limit
	cfg.Channels = []config.Channel{{
		Name: "vendor", Type: "openai", BaseURL: vendorBase, Keys: []string{relayKey}, Models: []string{benchModel},
	}}
	// Warnings and errors only: the access log would be the bench's largest cost.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rl, err := relay.New(cfg, "", logger)
	if err != nil {
		return nil, err
	}
	token, _, err := rl.Store().Create(ctx, tokens.Spec{Name: "bench"})
	if err != nil {
		rctx, cancel := context.WithCancel(ctx)
		cancel()
		_ = rl.Run(rctx) // closes what New opened
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	b := &benchRelay{rl: rl, db: cfg.DB, token: token, roots: roots, cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- rl.Run(rctx) }()
	return b, nil
}

// stop ends the relay and waits for Run to return: by then it has let requests in flight
// finish and written the last batch of usage records.
func (b *benchRelay) stop() error {
	b.cancel()
	return <-b.done
}

// usageRecords reads, after stop, how many usage records the relay wrote, by channel.
func (b *benchRelay) usageRecords(ctx context.Context) (map[string]int64, error) {
	store, err := tokens.Open(b.db, nil)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	rows, err := usage.Read(ctx, store, "channel", time.Unix(0, 0))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, r := range rows {
		out[r.Key] = r.Requests
	}
	return out, nil
}

// client is a keep-alive HTTPS client (HTTP/1.1, as the direct client) that trusts the
// relay's certificate and dials its domain at the relay's listener.
func (b *benchRelay) client() *http.Client {
	addr := b.rl.HTTPSAddr().String()
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: b.roots, ServerName: relayDomain},
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		DisableCompression:  true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// waitReady waits for /healthz over HTTPS, which also proves the client trusts the certificate.
func waitReady(client *http.Client, base string) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("relay at %s not ready after 10s: %v", base, last)
}

// selfSigned writes a self-signed ECDSA certificate for host and its key into dir.
func selfSigned(dir, host string) (certFile, keyFile string, roots *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(90 * 24 * time.Hour), // past the relay's "expires soon" warning
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots, nil
}
