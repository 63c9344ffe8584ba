//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hearthlab/hearth/internal/acmetest"
)

const (
	relayDomain      = "relay.test"
	relayTunnelToken = "e2e-tunnel-token-0123456789"
	relayAdminKey    = "e2e-admin-key-0123456789abcdef"
)

// TestRelayOllamaCLI is the remote laptop: the real ollama CLI with OLLAMA_AUTH=1 signs its
// requests with ~/.ollama/id_ed25519 and talks to https://relay.test, whose certificate Pebble
// issued; `hearth relay` checks the signature against the keys registered with `hearth token
// create --ollama-key` and sends the call through the frp tunnel to a `hearth agent` at home,
// in front of the real Ollama. The CLI trusts only Pebble's root (SSL_CERT_FILE) and reaches
// relay.test through a CONNECT proxy that dials 127.0.0.1, so no name resolution is needed.
// The subtests run in order.
func TestRelayOllamaCLI(t *testing.T) {
	s := use(t)
	s.agentOnly(t)
	rl := startRelay(t, s)
	rl.startHome(t, s)
	proxy := startConnectProxy(t, fmt.Sprintf("%s:%d", relayDomain, rl.httpsPort), fmt.Sprintf("127.0.0.1:%d", rl.httpsPort))
	host := fmt.Sprintf("https://%s:%d", relayDomain, rl.httpsPort)
	laptop, stranger := newOllamaKey(t, "laptop"), newOllamaKey(t, "stranger")
	env := func(k ollamaKey) []string {
		return []string{"HOME=" + k.home, "OLLAMA_AUTH=1", "SSL_CERT_FILE=" + rl.issuerFile,
			"HTTPS_PROXY=" + proxy.URL(), "https_proxy=" + proxy.URL(), "HTTP_PROXY=" + proxy.URL(), "http_proxy=" + proxy.URL()}
	}

	t.Run("register the laptop's key", func(t *testing.T) {
		out := runHearth(t, s, "token", "create", "--name", "laptop", "--ollama-key", laptop.pub, "--db", rl.db)
		fp := ssh.FingerprintSHA256(laptop.sshPub)
		if !strings.Contains(out, "The ollama CLI with key "+fp+" may also sign in") {
			t.Errorf("hearth token create --ollama-key printed no line for key %s:\n%s", fp, out)
		}
		// The running relay reloads its tokens every 2 s; until then the key is unknown to it.
		var r cliResult
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if r = s.ollamaCLIEnv(t, host, env(laptop), "list"); r.code == 0 {
				return
			}
		}
		t.Fatalf("ollama list with the registered key still fails 10 s after hearth token create: exit %d\nstderr: %s", r.code, r.stderr)
	})

	t.Run("ollama list", func(t *testing.T) {
		connects := proxy.connects()
		r := s.ollamaCLIEnv(t, host, env(laptop), "list")
		if r.code != 0 {
			t.Fatalf("ollama list through the relay: exit %d\nstderr: %s", r.code, r.stderr)
		}
		if !tableFirstColumn(r.stdout)["tiny:latest"] {
			t.Errorf("ollama list through the relay has no row tiny:latest:\n%s", r.stdout)
		}
		if proxy.connects() == connects {
			t.Errorf("ollama list did not go through the CONNECT proxy to %s: what did it talk to?", relayDomain)
		}
	})

	t.Run("ollama run tiny streams", func(t *testing.T) {
		// The capture proxy holds Ollama's stream after its first line; the CLI clears its
		// spinner (ESC[2K on stderr) when it has parsed a first chunk, and prints its text.
		// Seeing either while Ollama's answer is held proves every hop (agent, tunnel, relay)
		// passed the chunk on at once.
		var r cliResult
		for try := 1; try <= 3; try++ {
			var held bool
			r, held = rl.runHeld(t, s, host, env(laptop))
			if r.code != 0 {
				t.Fatalf("ollama run tiny through the relay: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if held && strings.TrimSpace(r.stdout) != "" {
				break
			}
			// tiny's output is noise: now and then its first token is also its last, or the
			// answer prints nothing. Such a run says nothing about streaming.
			t.Logf("try %d: the hold kept nothing back (%v) or the CLI printed no text; stderr: %q", try, !held, r.stderr)
			if try == 3 {
				t.Errorf("3 runs of ollama run tiny through the relay: no run streamed text past a held chunk")
			}
		}
		m := regexp.MustCompile(`(?m)^eval count:\s+(\d+) token`).FindStringSubmatch(r.stderr)
		if m == nil {
			t.Errorf("ollama run --verbose printed no eval count: the stream's last chunk did not arrive\nstderr: %q", r.stderr)
		}
	})

	// What the CLI sends for `ollama list` (a liveness probe, then the listing), signed here the
	// way it signs, so the relay's answers can be seen whole.
	t.Run("relay answers an unregistered key", func(t *testing.T) {
		for _, c := range []struct {
			method, path string
			status       int
			want         string
		}{
			{http.MethodHead, "/", 200, ""}, // as Ollama does: HEAD has no body to carry a refusal
			{http.MethodGet, "/api/tags", 403, "this ollama key is not registered on the relay"},
		} {
			code, body, err := rl.signed(c.method, c.path, stranger)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s signed by an unregistered key: %d %s", c.method, c.path, code, body)
			if code != c.status || !strings.Contains(body, c.want) {
				t.Errorf("%s %s signed by an unregistered key: %d %q, want %d with %q", c.method, c.path, code, body, c.status, c.want)
			}
		}
	})

	t.Run("unregistered key is refused", func(t *testing.T) {
		before := s.capture.count()
		r := s.ollamaCLIEnv(t, host, env(stranger), "list")
		msg := lastErrorLine(r.stderr)
		t.Logf("ollama list with an unregistered key: exit %d, %q", r.code, msg)
		if r.code == 0 {
			t.Fatalf("ollama list with an unregistered key: exit 0, want a refusal\nstdout: %s", r.stdout)
		}
		const want = "this ollama key is not registered on the relay"
		if !strings.Contains(msg, want) || !strings.Contains(msg, "hearth token create") {
			t.Errorf("ollama list with an unregistered key says %q; want it to say %q and how to register (hearth token create)", msg, want)
		}
		if n := s.capture.count() - before; n != 0 {
			t.Errorf("%d requests reached Ollama from an unregistered key, want 0", n)
		}
		// The laptop's key still works: the refusal locked no one out.
		if r := s.ollamaCLIEnv(t, host, env(laptop), "list"); r.code != 0 {
			t.Errorf("ollama list with the registered key after the refusal: exit %d\nstderr: %s", r.code, r.stderr)
		}
	})

	if refused := proxy.refused(); len(refused) > 0 {
		t.Logf("the ollama CLI also asked the proxy for %v (refused)", refused)
	}
}

// relayProc is `hearth relay` on 127.0.0.1 with a certificate for relay.test from an
// in-process Pebble.
type relayProc struct {
	*agentProc
	httpsPort  int
	tunnel     string // tunnel.bind
	db         string // its token database
	issuerFile string // Pebble's issuer root, the only root a client needs
	client     *http.Client
}

// startRelay starts Pebble and `hearth relay`, and returns once the relay serves
// https://relay.test/healthz with a certificate that Pebble issued. Both stop when t ends.
// extra is appended to its relay.yaml (channels:, routes:).
func startRelay(t *testing.T, s *stack, extra ...string) *relayProc {
	t.Helper()
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	httpPort, httpsPort, tunnelPort := ports[0], ports[1], ports[2]
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: httpPort, TLSPort: httpsPort})
	dir := t.TempDir()
	rl := &relayProc{httpsPort: httpsPort, tunnel: fmt.Sprintf("127.0.0.1:%d", tunnelPort),
		db: filepath.Join(dir, "relay.db"), issuerFile: filepath.Join(dir, "pebble-issuer.pem")}
	if err := os.WriteFile(rl.issuerFile, ca.IssuerRootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "relay.yaml")
	yaml := fmt.Sprintf(`listen:
  https: "127.0.0.1:%d"
  http: "127.0.0.1:%d"
domains: [%s]
acme:
  ca: %q
  ca_root: %q
  storage: %q
  challenges: [http-01]
tunnel:
  bind: %q
  token: %q
  home: home
db: %q
admin_key: %q
`, httpsPort, httpPort, relayDomain, ca.DirectoryURL, ca.ServerRootFile, filepath.Join(dir, "certs"),
		rl.tunnel, relayTunnelToken, rl.db, relayAdminKey) + strings.Join(extra, "")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := s.startHearth("relay", relayDomain, "https://"+relayDomain, filepath.Join(dir, "relay.log"),
		"--config", cfg, "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	rl.agentProc = a
	t.Cleanup(a.stop)
	printLogOnFailure(t, a)

	rl.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.RootPool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", httpsPort))
		},
	}}
	t.Cleanup(rl.client.CloseIdleConnections)
	start := time.Now()
	rl.waitFor(t, "a certificate for relay.test from Pebble and /healthz", 90*time.Second, func() string {
		code, body, err := rl.get("/healthz", "")
		if err != nil {
			return err.Error()
		}
		if code != 200 {
			return fmt.Sprintf("/healthz: %d %s", code, body)
		}
		return ""
	})
	t.Logf("the relay served relay.test with Pebble's certificate %v after it started", time.Since(start).Round(10*time.Millisecond))
	return rl
}

// startHome starts an agent named home in front of the shared Ollama (through the capture
// proxy) with a tunnel to the relay, and waits until the relay routes its home channel to it.
func (rl *relayProc) startHome(t *testing.T, s *stack) {
	t.Helper()
	spec := agentSpec{Name: "home", OllamaURL: s.capture.URL(), Tunnel: &agentTunnel{
		Relay: rl.tunnel, Token: relayTunnelToken, Name: "home", CA: rl.issuerFile, ServerName: relayDomain}}
	a, err := s.startAgent(spec, filepath.Join(t.TempDir(), "home"))
	if a != nil {
		t.Cleanup(a.stop)
		printLogOnFailure(t, a)
	}
	if err != nil {
		t.Fatal(err)
	}
	rl.waitFor(t, "the home channel online", 30*time.Second, func() string {
		code, body, err := rl.get("/admin/v1/agents", "Bearer "+relayAdminKey)
		if err != nil {
			return err.Error()
		}
		if code != 200 || !strings.Contains(body, `"online":true`) {
			return fmt.Sprintf("/admin/v1/agents: %d %s", code, body)
		}
		return ""
	})
}

// get calls the relay directly (not through the CONNECT proxy) as https://relay.test.
func (rl *relayProc) get(path, auth string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "https://"+relayDomain+path, nil)
	if err != nil {
		return 0, "", err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := rl.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// waitFor polls check until it returns "" and fails t with its last answer after limit, or at
// once when the relay exits.
func (rl *relayProc) waitFor(t *testing.T, what string, limit time.Duration, check func() string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		if done, err := rl.exited(); done {
			t.Fatalf("waiting for %s: hearth relay exited: %v", what, err)
		}
		if last = check(); last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, limit, last)
		}
	}
}

// signed calls the relay directly with a request signed by k the way the ollama CLI signs
// (relay/ollamakey.go has the scheme).
func (rl *relayProc) signed(method, path string, k ollamaKey) (int, string, error) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig, err := k.signer.Sign(rand.Reader, []byte(method+","+path+"?ts="+ts))
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest(method, "https://"+relayDomain+path+"?ts="+ts, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", base64.StdEncoding.EncodeToString(k.signer.PublicKey().Marshal())+":"+
		base64.StdEncoding.EncodeToString(sig.Blob))
	resp, err := rl.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// runHearth runs a hearth command and returns its output; it must succeed.
func runHearth(t *testing.T, s *stack, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.hearthBin, args...)
	cmd.Env = append(cmd.Environ(), "HOME="+s.home())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hearth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runHeld runs `ollama run --verbose tiny "hello NONCE"` while the capture proxy holds Ollama's
// stream after its first line, and tells whether the CLI had a first chunk while the rest was
// still held at home (false: Ollama's whole answer had passed before, so nothing was proven).
func (rl *relayProc) runHeld(t *testing.T, s *stack, host string, env []string) (cliResult, bool) {
	t.Helper()
	nonce := newNonce()
	release := s.capture.hold(nonce)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.ollamaCmd(ctx, host, env, "run", "--verbose", "tiny", "hello "+nonce)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	held := false
	firstChunk := time.After(30 * time.Second)
wait:
	for {
		select {
		case err := <-done:
			done <- err
			break wait
		case <-firstChunk:
			t.Errorf("the CLI had no chunk 30 s after Ollama sent its first one (held the rest): a hop buffers the stream")
			break wait
		case <-time.After(20 * time.Millisecond):
		}
		if bytes.Contains(stderr.Bytes(), []byte("\x1b[2K")) || len(stdout.Bytes()) > 0 {
			exs := s.capture.withBody(nonce)
			if len(exs) != 1 {
				t.Fatalf("%d requests with the run's nonce reached Ollama, want 1", len(exs))
			}
			code, body := exs[0].Response()
			held = code == 200 && !bytes.Contains(body, []byte(`"done":true`))
			if held {
				t.Logf("the CLI had a first chunk %v after it started, while Ollama's answer was held at home after %d bytes",
					time.Since(started).Round(time.Millisecond), len(body))
			}
			if a := exs[0].Header.Get("Authorization"); a != "" {
				t.Errorf("the CLI's signature reached Ollama at home (Authorization %q): the relay must keep its credentials", a)
			}
			break
		}
	}
	release()
	err := <-done
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			t.Fatalf("ollama run: %v\nstderr: %s", err, res.stderr)
		}
		res.code = ee.ExitCode()
	}
	return res, held
}

// lockedBuffer is a bytes.Buffer a running process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func (l *lockedBuffer) String() string { return string(l.Bytes()) }

// ollamaKey is a HOME whose ~/.ollama/id_ed25519 the ollama CLI signs with.
type ollamaKey struct {
	home   string
	pub    string // the line of id_ed25519.pub, what `hearth token create --ollama-key` takes
	sshPub ssh.PublicKey
	signer ssh.Signer
}

// newOllamaKey writes a fresh ed25519 key pair the way `ollama serve` does on its first start
// (the CLI alone never makes one): OpenSSH private key, authorized_keys public line.
func newOllamaKey(t *testing.T, name string) ollamaKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	k := ollamaKey{home: filepath.Join(t.TempDir(), name), sshPub: sshPub, signer: signer}
	k.pub = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	dir := filepath.Join(k.home, ".ollama")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519.pub"), []byte(k.pub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}
