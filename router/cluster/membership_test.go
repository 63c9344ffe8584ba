package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/router"
)

func TestMembershipJoinLeaveRejoin(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			seed := startMember(t, "node-0", memberOpts{})
			nodes := []*memberNode{seed}
			for i := 1; i < n; i++ {
				nodes = append(nodes, startMember(t, fmt.Sprintf("node-%d", i), memberOpts{join: []string{seed.m.Addr()}}))
			}
			var all []string
			for _, nd := range nodes {
				all = append(all, nd.name)
			}
			for _, nd := range nodes {
				hearthtest.Eventually(t, nd.name+" sees "+strings.Join(all, ","), waitTimeout, seesExactly(nd.m, all))
				var selves []string
				for _, p := range nd.m.Peers() {
					if p.Self {
						selves = append(selves, p.Name)
					}
					if p.Meta.API == "" || !p.Meta.BackendOK || p.Meta.Slots != 4 {
						t.Errorf("%s sees %s with meta %+v", nd.name, p.Name, p.Meta)
					}
				}
				if !slices.Equal(selves, []string{nd.name}) {
					t.Errorf("%s: Self peers %v, want only itself", nd.name, selves)
				}
			}

			last := nodes[n-1]
			last.stop()
			if !last.logs.has(slog.LevelInfo, "left the cluster") {
				t.Errorf("%s did not log a confirmed leave; logs:\n%s", last.name, last.logs)
			}
			rest := all[:n-1]
			for _, nd := range nodes[:n-1] {
				hearthtest.Eventually(t, nd.name+" sees "+last.name+" leave", waitTimeout, seesExactly(nd.m, rest))
			}
			// A failure is declared by some node's suspicion timer; a leave never is.
			for _, nd := range nodes[:n-1] {
				if nd.logs.has(slog.LevelInfo, "Marking "+last.name+" as failed") {
					t.Errorf("%s saw %s fail instead of leave", nd.name, last.name)
				}
			}

			again := startMember(t, last.name, memberOpts{join: []string{seed.m.Addr()}})
			t.Logf("%s restarted on %s (was %s)", last.name, again.m.Addr(), last.m.Addr())
			for _, nd := range append(nodes[:n-1:n-1], again) {
				hearthtest.Eventually(t, nd.name+" sees the restarted "+last.name, waitTimeout, seesExactly(nd.m, all))
			}
		})
	}
}

func TestMembershipInventoryBroadcast(t *testing.T) {
	a, b, c := startTrio(t, nil)
	var changes atomic.Int64
	b.m.OnChange(func() { changes.Add(1) })

	inv := testInventory(2, 20)
	a.local.set(func(_ *Meta, i *router.Inventory) { *i = inv })
	sentBefore := a.m.stats.inventoriesSent.Load()
	a.m.LocalChanged()
	for _, nd := range []*memberNode{b, c} {
		hearthtest.Eventually(t, nd.name+" sees a's new inventory", waitTimeout, func() bool { return hasInventory(nd.m, "a", inv) })
	}
	if !hasInventory(a.m, "a", inv) {
		t.Errorf("a's own Peers entry does not show its new inventory")
	}
	if sent := a.m.stats.inventoriesSent.Load() - sentBefore; sent != 1 || a.m.stats.noticesSent.Load() != 0 {
		t.Errorf("a broadcast %d whole inventories and %d notices, want 1 and 0", sent, a.m.stats.noticesSent.Load())
	}
	// Push/pull could win the race at one node, hardly at both.
	if viaB, viaC := viaOf(b.m, "a"), viaOf(c.m, "a"); viaB != "broadcast" && viaC != "broadcast" {
		t.Errorf("a's inventory reached b by %s and c by %s, want a broadcast", viaB, viaC)
	}
	hearthtest.Eventually(t, "b's OnChange ran", waitTimeout, func() bool { return changes.Load() > 0 })
}

func TestMembershipLargeInventory(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	a, b, c := startTrio(t, secret)

	inv := testInventory(300, 100)
	a.local.set(func(_ *Meta, i *router.Inventory) { *i = inv })
	a.m.LocalChanged()
	for _, nd := range []*memberNode{b, c} {
		hearthtest.Eventually(t, nd.name+" sees a's 300 models", waitTimeout, func() bool { return hasInventory(nd.m, "a", inv) })
		t.Logf("%s got a's inventory by %s", nd.name, viaOf(nd.m, "a"))
	}
	a.m.mu.Lock()
	size := len(a.m.self.wire)
	a.m.mu.Unlock()
	if got := a.m.stats.noticesSent.Load(); got != 1 {
		t.Errorf("a sent %d notices, want 1 (%d bytes do not fit a packet)", got, size)
	}
}

func TestMembershipInventoryFetch(t *testing.T) {
	secret := bytes.Repeat([]byte{3}, 16)
	a := startMember(t, "a", memberOpts{secret: secret, inv: testInventory(50, 60)})
	b := startMember(t, "b", memberOpts{secret: secret})
	url := inventoryURL(a.api)

	if err := b.m.fetchInventory(t.Context(), "a", url); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	b.m.mu.Lock()
	mb := b.m.members["a"]
	b.m.mu.Unlock()
	if mb == nil || mb.invHash != InventoryHash(testInventory(50, 60)) || len(mb.inv.Models) != 50 || mb.invVia != "fetch" {
		t.Fatalf("b stored %+v after the fetch", mb)
	}
	if err := b.m.fetchInventory(t.Context(), "b", url); err == nil || !strings.Contains(err.Error(), `answered for "a"`) {
		t.Errorf("fetching b's inventory from a's API: %v, want a name mismatch", err)
	}

	for _, tc := range []struct {
		name, method, token string
		want                int
	}{
		{"member", http.MethodGet, fetchToken(secret), http.StatusOK},
		{"no token", http.MethodGet, "", http.StatusUnauthorized},
		{"other secret", http.MethodGet, fetchToken(bytes.Repeat([]byte{4}, 16)), http.StatusUnauthorized},
		{"post", http.MethodPost, fetchToken(secret), http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, url, nil)
			if tc.token != "" {
				req.Header.Set(fetchTokenHeader, tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK && resp.Header.Get("Content-Type") != inventoryContentType {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestMembershipMetaBound(t *testing.T) {
	longAPI := "http://" + strings.Repeat("a", 380) + ".lan:11500"
	local := &memberLocal{
		meta: Meta{Role: RoleServe, API: longAPI, Slots: 65535, InFlight: 65535, Queued: 65535, BackendOK: true, StorageOK: true, PruneOwner: true},
		inv:  testInventory(200, 100),
	}
	routers := map[string]int{}
	for i := range MaxVia + 5 { // more routers than the meta keeps: the busiest stay
		routers[fmt.Sprintf("router-with-a-long-name-%03d", i)] = 65535 - i
	}
	local.meta.Via = ViaOf(routers)
	if len(local.meta.Via) != MaxVia || local.meta.Via[RouterID("router-with-a-long-name-000")] != 65535 || local.meta.Via[RouterID(fmt.Sprintf("router-with-a-long-name-%03d", MaxVia))] != 0 {
		t.Fatalf("Via keeps %v, want the %d busiest", local.meta.Via, MaxVia)
	}
	m, err := NewMembership(Config{Name: "big", Bind: "127.0.0.1:0", Profile: ProfileLocal}, local, nil)
	if err != nil {
		t.Fatalf("NewMembership with a %d-character API URL: %v", len(longAPI), err)
	}
	t.Cleanup(func() { m.Close() })
	meta := delegate{m}.NodeMeta(MaxMetaSize)
	if len(meta) == 0 || len(meta) > MaxMetaSize {
		t.Fatalf("meta is %d bytes, want 1..%d", len(meta), MaxMetaSize)
	}
	got, err := decodeMeta(meta)
	want := local.meta
	want.InvHash = InventoryHash(local.inv)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("meta decodes to %+v, %v; want %+v", got, err, want)
	}

	local.meta.API = "http://" + strings.Repeat("a", 600) + ".lan:11500"
	_, err = NewMembership(Config{Name: "too-big", Bind: "127.0.0.1:0", Profile: ProfileLocal}, local, nil)
	if err == nil || !strings.Contains(err.Error(), "API URL") || !strings.Contains(err.Error(), "512") {
		t.Errorf("NewMembership with a %d-character API URL: %v, want an error about the API URL", len(local.meta.API), err)
	}
}

func TestMembershipRunPublishesLateLocalState(t *testing.T) {
	a := startMember(t, "a", memberOpts{lateAPI: true})
	b := startMember(t, "b", memberOpts{join: []string{a.m.Addr()}})
	hearthtest.Eventually(t, "b sees the API a learned after NewMembership", waitTimeout, func() bool {
		p, ok := peerNamed(b.m, "a")
		return ok && p.Meta.API == a.api
	})
}

func TestMembershipMetaDebounce(t *testing.T) {
	a := startMember(t, "a", memberOpts{})
	b := startMember(t, "b", memberOpts{join: []string{a.m.Addr()}})
	hearthtest.Eventually(t, "b sees a", waitTimeout, seesExactly(b.m, []string{"a", "b"}))

	before := a.m.stats.metaUpdates.Load()
	for i := 1; i <= 50; i++ {
		a.local.set(func(m *Meta, _ *router.Inventory) { m.InFlight = uint16(i) })
		a.m.LocalChanged()
	}
	hearthtest.Eventually(t, "b sees a's last in-flight count", waitTimeout, func() bool {
		p, ok := peerNamed(b.m, "a")
		return ok && p.Meta.InFlight == 50
	})
	if updates := a.m.stats.metaUpdates.Load() - before; updates < 1 || updates >= 10 {
		t.Errorf("50 changes in a burst made %d meta updates, want 1 to 9", updates)
	}
}

func TestMembershipSecret(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	seed := startMember(t, "seed", memberOpts{secret: key})
	good := startMember(t, "good", memberOpts{secret: key, join: []string{seed.m.Addr()}})
	hearthtest.Eventually(t, "a node with the secret joins", waitTimeout, seesExactly(seed.m, []string{"good", "seed"}))

	wrong := startMember(t, "wrong", memberOpts{secret: bytes.Repeat([]byte{2}, 32), join: []string{seed.m.Addr()}})
	none := startMember(t, "none", memberOpts{join: []string{seed.m.Addr()}})
	for _, nd := range []*memberNode{wrong, none} {
		hearthtest.Eventually(t, nd.name+" fails to join twice", waitTimeout, func() bool { return nd.m.stats.joinFailures.Load() >= 2 })
		if got := peerNames(nd.m); !slices.Equal(got, []string{nd.name}) {
			t.Errorf("%s sees %v, want only itself", nd.name, got)
		}
		if !nd.logs.has(slog.LevelWarn, "no cluster peer answered") {
			t.Errorf("%s did not log its failed joins in words", nd.name)
		}
	}
	for _, nd := range []*memberNode{seed, good} {
		if got := peerNames(nd.m); !slices.Equal(got, []string{"good", "seed"}) {
			t.Errorf("%s sees %v, want good and seed", nd.name, got)
		}
	}
	if _, err := NewMembership(Config{Name: "short", Secret: []byte("0123456789")}, &memberLocal{}, nil); err == nil ||
		!strings.Contains(err.Error(), "secret is 10 bytes") {
		t.Errorf("a 10-byte secret: %v", err)
	}
}

func TestMembershipLogs(t *testing.T) {
	a := startMember(t, "a", memberOpts{})
	_, port, _ := strings.Cut(a.m.Addr(), ":")
	if !a.logs.hasAttr(slog.LevelDebug, "Using dynamic bind port "+port, "lib", "memberlist") {
		t.Errorf("memberlist's bind line is not a debug record with lib=memberlist; logs:\n%s", a.logs)
	}
	b := startMember(t, "b", memberOpts{join: []string{a.m.Addr()}})
	hearthtest.Eventually(t, "a logs b's stream connection", waitTimeout, func() bool {
		return a.logs.hasAttr(slog.LevelDebug, "Stream connection from=", "lib", "memberlist")
	})
	hearthtest.Eventually(t, "b logs its push/pull", waitTimeout, func() bool {
		return b.logs.hasAttr(slog.LevelDebug, "Initiating push/pull sync with:", "lib", "memberlist")
	})
	if a.logs.has(slog.LevelDebug, "[DEBUG]") || a.logs.has(slog.LevelInfo, "memberlist: ") {
		t.Errorf("memberlist prefixes left in messages:\n%s", a.logs)
	}
}

func TestMembershipStopsItsGoroutines(t *testing.T) {
	a, b, c := startTrio(t, bytes.Repeat([]byte{9}, 24))
	a.local.set(func(_ *Meta, i *router.Inventory) { *i = testInventory(300, 100) })
	a.m.LocalChanged()
	b.m.LocalChanged()
	const ours = "created by github.com/hearthlab/hearth/router/cluster.(*Membership)"
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); !strings.Contains(stacks, ours) {
		t.Fatalf("no running goroutine is %q: the check below would prove nothing", ours)
	}
	for _, nd := range []*memberNode{c, b, a} {
		nd.stop()
	}
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, ours) {
		t.Errorf("goroutines of stopped memberships remain:\n%s", stacks)
	}
	// Stopped for good: Run again is refused, Close is harmless.
	if err := a.m.Run(t.Context()); err == nil {
		t.Error("Run after a stop succeeded")
	}
	if err := a.m.Close(); err != nil {
		t.Error(err)
	}
}

func TestMembershipParseLogLine(t *testing.T) {
	for _, tc := range []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5\n", slog.LevelDebug, "Stream connection from=1.2.3.4:5"},
		{"[INFO] memberlist: Marking x as failed", slog.LevelInfo, "Marking x as failed"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: Failed to send gossip", slog.LevelError, "Failed to send gossip"},
		{"[ERR] Failed to shutdown transport: x", slog.LevelError, "Failed to shutdown transport: x"},
		{"no level at all", slog.LevelInfo, "no level at all"},
	} {
		level, msg := parseLogLine(tc.line)
		if level != tc.level || msg != tc.msg {
			t.Errorf("parseLogLine(%q) = %v %q, want %v %q", tc.line, level, msg, tc.level, tc.msg)
		}
	}
}

func TestMembershipInventoryHash(t *testing.T) {
	base := testInventory(3, 20)
	reordered := router.Inventory{Models: slices.Clone(base.Models), Loaded: slices.Clone(base.Loaded)}
	slices.Reverse(reordered.Models)
	slices.Reverse(reordered.Loaded)
	rawOnly := testInventory(3, 20)
	rawOnly.Models[0].Raw = json.RawMessage(`{"expires_at":"later"}`)
	rawOnly.Models[1].Modified = time.Now()
	resized := testInventory(3, 20)
	resized.Models[2].Size++
	unloaded := testInventory(3, 20)
	unloaded.Loaded = nil
	renamed := testInventory(3, 20)
	renamed.Models[0].Name = "other:latest"

	h := InventoryHash(base)
	for _, tc := range []struct {
		name string
		inv  router.Inventory
		same bool
	}{
		{"reordered", reordered, true},
		{"raw and times changed", rawOnly, true},
		{"size changed", resized, false},
		{"nothing loaded", unloaded, false},
		{"renamed", renamed, false},
		{"empty", router.Inventory{}, false},
	} {
		if got := InventoryHash(tc.inv) == h; got != tc.same {
			t.Errorf("%s: same hash = %v, want %v", tc.name, got, tc.same)
		}
	}
	if InventoryHash(router.Inventory{}) == 0 {
		t.Error("the empty inventory hashes to 0, which means none")
	}
}

func TestMembershipConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{}, "name is required"},
		{"bind without port", Config{Name: "a", Bind: "127.0.0.1"}, `bind "127.0.0.1"`},
		{"bind host name", Config{Name: "a", Bind: "localhost:0"}, "not an IP address"},
		{"advertise port", Config{Name: "a", Advertise: "10.0.0.1:x"}, "not a number"},
		{"advertise port 0", Config{Name: "a", Advertise: "10.0.0.1:0"}, "port 0 cannot be reached"},
		{"profile", Config{Name: "a", Profile: "wan"}, `profile "wan"`},
		{"secret", Config{Name: "a", Secret: make([]byte, 20)}, "secret is 20 bytes"},
		{"debounce", Config{Name: "a", MetaDebounce: -time.Second}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewMembership(tc.cfg, &memberLocal{}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
