package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

// dateServer answers every request with a Date header *offset away from this clock.
func dateServer(offset *time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(*offset).UTC().Format(http.TimeFormat))
	})
}

// dialer sends connections for the names in to (host:port) to the addresses they map to,
// and every other one where it was meant to go.
func dialer(to map[string]string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if a, ok := to[addr]; ok {
			addr = a
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

// ntp is a fake timedatectl: synchronized or not, or err when it cannot tell.
func ntp(synced bool, err error) func(context.Context) (bool, error) {
	return func(context.Context) (bool, error) { return synced, err }
}

func clockOf(t *testing.T, r Report) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == "clock" {
			return c
		}
	}
	t.Fatalf("the %s's report has no clock check: %+v", r.Role, r.Checks)
	return Check{}
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return ln.Addr().String()
}

func TestClockCheck(t *testing.T) {
	offset := time.Duration(0)
	srv := httptest.NewServer(dateServer(&offset))
	t.Cleanup(srv.Close)
	noDate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Header()["Date"] = nil }))
	t.Cleanup(noDate.Close)
	env := Env{NTPSynchronized: ntp(false, errors.New("no systemd"))}.complete()
	client, _ := env.client("")
	relay := clockRef{whose: "the relay", url: srv.URL, client: client}

	want(t, env.clockCheck(t.Context(), []clockRef{relay}), true, "this clock agrees with the relay's within 30s.")
	offset = -5 * time.Minute
	want(t, env.clockCheck(t.Context(), []clockRef{relay}), false, "this clock is 5m0s off the relay's")

	// A reference that does not answer, or answers without the time, gives way to the next.
	offset = 0
	silent := clockRef{whose: "the peer nas", url: noDate.URL, client: client}
	broken := clockRef{whose: "the relay", broken: errors.New("tunnel.ca: no PEM certificate in it")}
	want(t, env.clockCheck(t.Context(), []clockRef{broken, silent, relay}), true, "this clock agrees with the relay's")
	got := env.clockCheck(t.Context(), []clockRef{broken, silent})
	want(t, got, false, "cannot check: no reference answered: the relay cannot be asked: tunnel.ca: no PEM certificate in it; the peer nas sent no Date header")
	if !got.Warn {
		t.Errorf("no reference and no timedatectl is a warning: %+v", got)
	}
}

// TestClockWithoutReference: with no server to ask, systemd's NTP state decides, and when it
// cannot tell, the check warns rather than passing.
func TestClockWithoutReference(t *testing.T) {
	ctx := t.Context()
	want(t, Env{NTPSynchronized: ntp(true, nil)}.complete().clockCheck(ctx, nil), true,
		"no server to compare it with; timedatectl says NTP keeps this clock synchronized.")
	want(t, Env{NTPSynchronized: ntp(false, nil)}.complete().clockCheck(ctx, nil), false,
		"no server to compare it with, and timedatectl says this clock is not NTP-synchronized: certificates and tokens expire wrongly; enable NTP")
	got := Env{NTPSynchronized: ntp(false, errors.New("System has not been booted with systemd as init system (PID 1)"))}.complete().clockCheck(ctx, nil)
	want(t, got, false, "cannot check: no server to compare it with, and timedatectl cannot tell whether NTP keeps this clock right (System has not been booted")
	if !got.Warn {
		t.Errorf("an unmade clock check warns: %+v", got)
	}

	for out, synced := range map[string]bool{"yes\n": true, "no\n": false} {
		if got, err := parseNTPSynchronized(out); err != nil || got != synced {
			t.Errorf("timedatectl printed %q: %v %v, want %v", out, got, err, synced)
		}
	}
	if _, err := parseNTPSynchronized("\n"); err == nil {
		t.Error("an empty NTPSynchronized is not an answer")
	}
}

// agentAPI serves GET /hearth/v1/cluster with view, as the running agent answers it.
func agentAPI(t *testing.T, view string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hearth/v1/cluster" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, view)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestAgentClock: an agent with a relay compares its clock with the relay's; a cluster-only
// agent (no tunnel.relay) with its peers', as the running agent's cluster view lists them.
func TestAgentClock(t *testing.T) {
	relayOffset, peerOffset := time.Duration(0), time.Duration(0)
	relayAddr, caFile := tlsServer(t, "relay.test", dateServer(&relayOffset))
	peer := httptest.NewServer(dateServer(&peerOffset))
	t.Cleanup(peer.Close)
	env := Env{Dial: dialer(map[string]string{"relay.test:443": relayAddr}), NTPSynchronized: ntp(false, errors.New("no systemd"))}
	ctx := t.Context()

	alone := agentAPI(t, `{"self":"gpu","nodes":[{"name":"gpu","self":true,"api":"http://127.0.0.1:1"}]}`)
	tunneled := config.Agent{Node: config.Node{Listen: alone}, Tunnel: config.Tunnel{Relay: "203.0.113.5:7000", ServerName: "relay.test", CA: caFile}}
	want(t, clockOf(t, Agent(ctx, tunneled, env)), true, "this clock agrees with the relay's within 30s.")
	relayOffset = 2 * time.Minute
	want(t, clockOf(t, Agent(ctx, tunneled, env)), false, "this clock is 2m0s off the relay's")

	withPeer := agentAPI(t, `{"self":"gpu","nodes":[{"name":"gpu","self":true},{"name":"nas","api":"`+peer.URL+`"}]}`)
	clusterOnly := config.Agent{Node: config.Node{Listen: withPeer}}
	want(t, clockOf(t, Agent(ctx, clusterOnly, env)), true, "this clock agrees with the peer nas's within 30s.")
	peerOffset = -3 * time.Minute
	want(t, clockOf(t, Agent(ctx, clusterOnly, env)), false, "this clock is 3m0s off the peer nas's")

	// The relay out of reach, the peers answer.
	peerOffset = 0
	tunneled.Node.Listen = withPeer
	env.Dial = dialer(map[string]string{"relay.test:443": closedAddr(t)})
	want(t, clockOf(t, Agent(ctx, tunneled, env)), true, "this clock agrees with the peer nas's within 30s.")

	// Alone, and the agent not running: nobody to ask but systemd.
	stopped := config.Agent{Node: config.Node{Listen: closedAddr(t)}}
	got := clockOf(t, Agent(ctx, stopped, env))
	want(t, got, false, "cannot check: no server to compare it with")
	if !got.Warn {
		t.Errorf("an agent with no reference warns: %+v", got)
	}
	env.NTPSynchronized = ntp(true, nil)
	want(t, clockOf(t, Agent(ctx, stopped, env)), true, "timedatectl says NTP keeps this clock synchronized.")
}

// TestRelayClock: a relay on ACME compares its clock with its CA; one with a brought
// certificate with acme.ca when it names one, else asks systemd, and says which it used.
func TestRelayClock(t *testing.T) {
	offset := time.Duration(0)
	caAddr, caRoot := tlsServer(t, "acme.test", dateServer(&offset))
	env := Env{Dial: dialer(map[string]string{"acme.test:443": caAddr}), NTPSynchronized: ntp(false, errors.New("no systemd"))}
	ctx := t.Context()
	acme := config.Relay{ACME: config.ACME{CA: "https://acme.test/directory", CARoot: caRoot}}
	brought := acme
	brought.TLS = config.TLSFiles{Cert: "relay.crt", Key: "relay.key"}
	for name, cfg := range map[string]config.Relay{"ACME": acme, "brought certificate and acme.ca": brought} {
		offset = 0
		want(t, clockOf(t, Relay(ctx, cfg, env)), true, "this clock agrees with the ACME CA's within 30s.")
		offset = 10 * time.Minute
		if c := clockOf(t, Relay(ctx, cfg, env)); c.OK || c.Warn || c.Say != "this clock is 10m0s off the ACME CA's: certificates and tokens expire wrongly; enable NTP (timedatectl set-ntp true)." {
			t.Errorf("%s, a skewed CA: %+v", name, c)
		}
	}

	alone := config.Relay{TLS: config.TLSFiles{Cert: "relay.crt", Key: "relay.key"}}
	got := clockOf(t, Relay(ctx, alone, env))
	want(t, got, false, "cannot check: no server to compare it with, and timedatectl cannot tell")
	if !got.Warn {
		t.Errorf("a brought certificate and no NTP answer warns: %+v", got)
	}
	env.NTPSynchronized = ntp(true, nil)
	want(t, clockOf(t, Relay(ctx, alone, env)), true, "no server to compare it with; timedatectl says NTP keeps this clock synchronized.")
	env.NTPSynchronized = ntp(false, nil)
	want(t, clockOf(t, Relay(ctx, alone, env)), false, "timedatectl says this clock is not NTP-synchronized")
}
