// Package certs keeps the relay's TLS certificates: obtained and renewed by ACME
// (certmagic), with the relay's own listeners answering the HTTP-01 and TLS-ALPN-01
// challenges, or a certificate the user brings (tls.cert / tls.key), re-read when its files
// change. It uses nothing else of the relay; the relay root wires it.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/logging"
)

// Certs keeps the relay's TLS certificates: obtained and renewed by ACME (certmagic), or a
// certificate the user brings (tls.cert / tls.key). The relay serves ACME challenges itself:
// HTTP-01 on its port-80 listener (HTTPHandler), TLS-ALPN-01 on its HTTPS listener (TLSConfig).
type Certs struct {
	logger *slog.Logger

	// ACME; nil when the user brings a certificate.
	magic  *certmagic.Config
	cache  *certmagic.Cache
	issuer *certmagic.ACMEIssuer
	// solverPlaceholder is where certmagic is told to start its own challenge servers. It
	// is already taken (by us), so certmagic assumes that whatever listens there can answer
	// challenges and binds nothing — the relay's own listeners do answer them.
	solverPlaceholder net.Listener

	// byo is the certificate the user brought; nil with ACME.
	byo *byoCertificate

	life context.Context // ends when Run ends: stops obtaining
	stop context.CancelFunc
	wg   sync.WaitGroup // one per host being obtained

	mu      sync.Mutex
	ran     bool
	stopped bool
	domains map[string]bool // cfg.Domains: always served
	managed map[string]bool // hosts given to Manage
}

// NewCerts prepares certificates from the relay config; nothing is obtained before Manage.
// A nil logger discards; the caller names the component.
func New(cfg config.Relay, logger *slog.Logger) (*Certs, error) {
	logger = logging.OrDiscard(logger)
	c := &Certs{logger: logger, domains: make(map[string]bool), managed: make(map[string]bool)}
	for _, d := range cfg.Domains {
		c.domains[certHostOf(d)] = true
	}
	var err error
	if cfg.TLS.Cert != "" || cfg.TLS.Key != "" {
		c.byo, err = loadBYOCertificate(cfg.TLS.Cert, cfg.TLS.Key, logger)
	} else {
		err = c.setUpACME(cfg)
	}
	if err != nil {
		return nil, err
	}
	c.life, c.stop = context.WithCancel(context.Background())
	return c, nil
}

func (c *Certs) setUpACME(cfg config.Relay) error {
	var roots *x509.CertPool
	if cfg.ACME.CARoot != "" {
		pemBytes, err := os.ReadFile(cfg.ACME.CARoot)
		if err != nil {
			return fmt.Errorf("relay: acme.ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("relay: acme.ca_root %s: no PEM certificate in it", cfg.ACME.CARoot)
		}
	}
	http01, tlsALPN01 := len(cfg.ACME.Challenges) == 0, len(cfg.ACME.Challenges) == 0
	for _, ch := range cfg.ACME.Challenges {
		http01 = http01 || ch == "http-01"
		tlsALPN01 = tlsALPN01 || ch == "tls-alpn-01"
	}
	http01 = http01 && cfg.Listen.HTTP != ""
	if !http01 && !tlsALPN01 {
		return errors.New("relay: no ACME challenge can work: use tls-alpn-01, or http-01 with listen.http on")
	}

	placeholder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("relay: certs: %w", err)
	}
	placeholderPort := placeholder.Addr().(*net.TCPAddr).Port

	zlog := zap.New(&certmagicLogCore{handler: c.logger.With("lib", "certmagic").Handler()})
	var magic *certmagic.Config
	c.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zlog,
	})
	var defaultName string
	if len(cfg.Domains) > 0 {
		defaultName = certHostOf(cfg.Domains[0]) // for clients that send no SNI
	}
	magic = certmagic.New(c.cache, certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: cfg.ACME.Storage},
		Logger:            zlog,
		OnEvent:           c.onCertEvent,
		KeySource:         certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		DefaultServerName: defaultName,
		Issuers:           []certmagic.Issuer{}, // not nil, or certmagic builds a default issuer
	})
	c.issuer = certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                      cfg.ACME.CA, // "" = Let's Encrypt production (retries try staging first)
		Email:                   cfg.ACME.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    !http01,
		DisableTLSALPNChallenge: !tlsALPN01,
		ListenHost:              "127.0.0.1",
		AltHTTPPort:             placeholderPort,
		AltTLSALPNPort:          placeholderPort,
		Logger:                  zlog,
	})
	magic.Issuers = []certmagic.Issuer{c.issuer}
	c.magic = magic
	c.solverPlaceholder = placeholder
	return nil
}

// TLSConfig is for the HTTPS listener (and the tunnel listener): the certificate by SNI,
// TLS-ALPN-01 answers, TLS 1.2 or later. Each call returns a new config.
func (c *Certs) TLSConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if c.byo != nil {
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.byo.current(), nil }
		return cfg
	}
	cfg.GetCertificate = c.magic.GetCertificate
	cfg.NextProtos = append(cfg.NextProtos, acmez.ACMETLS1Protocol)
	return cfg
}

// HTTPHandler is for the port-80 listener: it answers HTTP-01 challenges and redirects
// everything else to https:// with the same host and path (301); a Host the relay does not
// serve gets 404.
func (c *Certs) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.issuer != nil && c.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		host := certHostOf(r.Host)
		if !c.serves(host) {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
}

// Manage obtains (in the background) and keeps renewed certificates for hosts: cfg.Domains
// at start, site hosts when they appear. Calling it again for a host does nothing. Obtaining
// stops when ctx or Run ends; renewal goes on until Run ends.
func (c *Certs) Manage(ctx context.Context, hosts ...string) {
	for _, h := range hosts {
		host := certHostOf(h)
		if host == "" {
			continue
		}
		c.mu.Lock()
		if c.managed[host] || c.stopped {
			c.mu.Unlock()
			continue
		}
		c.managed[host] = true
		if c.byo != nil {
			c.mu.Unlock()
			if !c.byo.covers(host) {
				c.logger.Warn("tls.cert does not cover this host: browsers will refuse it; add the name to the certificate or remove tls.cert/tls.key to use ACME", "host", host)
			}
			continue
		}
		c.wg.Add(1)
		c.mu.Unlock()

		obtainCtx, cancel := context.WithCancel(c.life)
		stopAfter := context.AfterFunc(ctx, cancel)
		go func() {
			defer c.wg.Done()
			defer stopAfter()
			defer cancel()
			c.obtain(obtainCtx, host)
			if !c.Ready(host) {
				// Stopped (ctx ended) or gave up: a later Manage tries again.
				c.mu.Lock()
				delete(c.managed, host)
				c.mu.Unlock()
			}
		}()
	}
}

// obtain gets a certificate for host into the cache, where certmagic's maintenance renews it.
func (c *Certs) obtain(ctx context.Context, host string) {
	// A no-op when storage has one; otherwise certmagic retries with backoff (each failure
	// reaches onCertEvent), for up to 30 days.
	if err := c.magic.ObtainCertAsync(ctx, host); err != nil {
		if ctx.Err() == nil {
			c.logger.Error("gave up obtaining a certificate after 30 days; restart the relay to try again", "host", host, "error", err)
		}
		return
	}
	// Load it as managed (renewing now if it is due).
	if err := c.magic.ManageSync(ctx, []string{host}); err != nil && ctx.Err() == nil {
		c.logger.Warn("certificate obtained but not loaded", "host", host, "error", err)
	}
}

// Ready reports whether a certificate for host is in hand.
func (c *Certs) Ready(host string) bool {
	host = certHostOf(host)
	if c.byo != nil {
		return c.byo.covers(host)
	}
	for _, cert := range c.cache.AllMatchingCertificates(host) {
		if !cert.Expired() {
			return true
		}
	}
	return false
}

// Run blocks until ctx ends, then stops obtaining and certmagic's maintenance and returns
// when all of it has stopped. (certmagic keeps one package-level rate-limiter goroutine per
// CA and account, RingBufferRateLimiter, that nothing can stop; it holds no port.)
func (c *Certs) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		return errors.New("relay: certs: Run called twice")
	}
	c.ran = true
	c.mu.Unlock()

	accepted := make(chan struct{})
	if c.solverPlaceholder != nil {
		go c.drainPlaceholder(accepted)
	} else {
		close(accepted)
	}

	<-ctx.Done()
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	if c.cache != nil {
		c.cache.Stop()
	}
	if c.solverPlaceholder != nil {
		_ = c.solverPlaceholder.Close()
	}
	<-accepted
	return nil
}

// Close releases what NewCerts started (certmagic's cache goroutine, the placeholder
// listener) for a relay that fails before it runs. After Run it does nothing: Run releases
// them when it returns; and Run after Close fails.
func (c *Certs) Close() {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		return
	}
	c.ran, c.stopped = true, true
	c.mu.Unlock()
	c.stop()
	if c.cache != nil {
		c.cache.Stop()
	}
	if c.solverPlaceholder != nil {
		_ = c.solverPlaceholder.Close()
	}
}

// drainPlaceholder closes the connections certmagic makes to check that the placeholder is
// taken, so they do not pile up in the kernel's backlog.
func (c *Certs) drainPlaceholder(done chan<- struct{}) {
	defer close(done)
	for {
		conn, err := c.solverPlaceholder.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		_ = conn.Close()
	}
}

func (c *Certs) serves(host string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.domains[host] || c.managed[host]
}

// onCertEvent turns certmagic's outcomes into log lines a person can act on.
func (c *Certs) onCertEvent(_ context.Context, event string, data map[string]any) error {
	host, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		c.logger.Info("certificate obtained", "host", host, "renewal", renewal, "issuer", data["issuer"])
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil || errors.Is(err, context.Canceled) {
			return nil
		}
		c.logger.Error(explainACMEError(host, c.issuer.CA, err), "host", host, "renewal", renewal, "error", err)
	}
	return nil
}

// explainACMEError says what went wrong for host in words a person can act on; ca is the
// ACME directory in use.
func explainACMEError(host, ca string, err error) string {
	var problem acme.Problem
	if errors.As(err, &problem) {
		return explainACMEProblem(host, problem)
	}
	var unknownAuthority x509.UnknownAuthorityError
	if errors.As(err, &unknownAuthority) {
		return fmt.Sprintf("the ACME CA's HTTPS certificate at %s is not trusted: set acme.ca_root to the PEM file of its root", ca)
	}
	var badName x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &badName) || errors.As(err, &invalid) {
		return fmt.Sprintf("the ACME CA's HTTPS certificate at %s is not valid (%v): check acme.ca", ca, err)
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &urlErr) {
		return fmt.Sprintf("could not reach the ACME CA at %s: check acme.ca and that this server can make outgoing HTTPS connections; certmagic retries later", ca)
	}
	return fmt.Sprintf("could not get a certificate for %s: %v; certmagic retries later", host, err)
}

func explainACMEProblem(host string, p acme.Problem) string {
	if p.Type == acme.ProblemTypeCompound || (p.Type == "" && len(p.Subproblems) > 0) {
		for _, sub := range p.Subproblems {
			if sub.Identifier.Value == "" || strings.EqualFold(sub.Identifier.Value, host) {
				inner := sub.Problem
				inner.Resource = p.Resource
				return explainACMEProblem(host, inner)
			}
		}
	}
	challenge := failedChallengeType(p)
	detail := strings.ToLower(p.Detail)
	switch p.Type {
	case acme.ProblemTypeDNS:
		return fmt.Sprintf("%s does not resolve to this server: point its A/AAAA record at this VPS (the CA said: %s)", host, p.Detail)
	case acme.ProblemTypeConnection:
		return unreachableMessage(host, challenge)
	case acme.ProblemTypeUnauthorized, acme.ProblemTypeIncorrectResponse:
		if looksLikeConnectFailure(detail) {
			return unreachableMessage(host, challenge)
		}
		if challenge == "" {
			challenge = "ACME"
		}
		return fmt.Sprintf("the CA reached %s but another server answered its %s challenge: make sure the name's A/AAAA records point only at this VPS (remove stale AAAA records) and that no other proxy or web server answers on ports 80/443 (the CA said: %s)", host, challenge, p.Detail)
	case acme.ProblemTypeRateLimited:
		return fmt.Sprintf("the CA rate-limited this account: certmagic retries later; use acme.ca staging (%s) while testing (the CA said: %s)", certmagic.LetsEncryptStagingCA, p.Detail)
	case acme.ProblemTypeCAA:
		return fmt.Sprintf("a CAA DNS record of %s forbids this CA: add the CA (letsencrypt.org for Let's Encrypt) to it or remove it", host)
	case acme.ProblemTypeTLS:
		return fmt.Sprintf("the CA's TLS connection to %s failed: port 443 must reach this relay directly, with no TLS-terminating proxy in front (the CA said: %s)", host, p.Detail)
	case acme.ProblemTypeRejectedIdentifier, acme.ProblemTypeUnsupportedIdentifier:
		return fmt.Sprintf("the CA will not issue a certificate for %s: use a public domain name that you own (the CA said: %s)", host, p.Detail)
	case acme.ProblemTypeExternalAccountRequired:
		return "the CA requires external account binding (EAB), which hearth does not support: use another acme.ca"
	}
	return fmt.Sprintf("the CA refused a certificate for %s: %s (%s); certmagic retries later", host, p.Detail, strings.TrimPrefix(p.Type, acme.ProblemTypeNamespace))
}

func unreachableMessage(host, challenge string) string {
	if challenge == acme.ChallengeTypeTLSALPN01 {
		return fmt.Sprintf("the CA could not reach %s:443 for the tls-alpn-01 challenge: open port 443 to the internet, or use http-01", host)
	}
	return fmt.Sprintf("the CA could not reach http://%s/.well-known/acme-challenge: open port 80 to the internet, or use tls-alpn-01 only", host)
}

// failedChallengeType is the type of the challenge the CA marked failed, when the problem
// carries its authorization (acmez puts it in Resource), else a guess from the detail.
func failedChallengeType(p acme.Problem) string {
	if authz, ok := p.Resource.(acme.Authorization); ok {
		for _, ch := range authz.Challenges {
			if ch.Error != nil {
				return ch.Type
			}
		}
	}
	switch d := strings.ToLower(p.Detail); {
	case strings.Contains(d, acme.ChallengeTypeTLSALPN01):
		return acme.ChallengeTypeTLSALPN01
	case strings.Contains(d, acme.ChallengeTypeHTTP01), strings.Contains(d, "/.well-known/acme-challenge"):
		return acme.ChallengeTypeHTTP01
	}
	return ""
}

func looksLikeConnectFailure(detail string) bool {
	for _, s := range []string{"connection refused", "failed to connect", "timeout during connect", "no route to host", "network is unreachable", "i/o timeout"} {
		if strings.Contains(detail, s) {
			return true
		}
	}
	return false
}

// certHostOf is the host of a Host header or a configured name: no port, lower case, no
// trailing dot.
func certHostOf(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}
