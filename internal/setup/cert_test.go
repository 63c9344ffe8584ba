package setup_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/setup"
)

// TestInitRelaySaysWhatIsWrongWithTheCertificate: init writes the config all the same (the
// files may come later), but says when the brought pair would not serve the domain.
func TestInitRelaySaysWhatIsWrongWithTheCertificate(t *testing.T) {
	pki := t.TempDir()
	future := time.Now().Add(90 * 24 * time.Hour)
	good, goodKey := hearthtest.WriteCert(t, pki, time.Now().Add(-time.Hour), future, "ai.example.com")
	other, otherKey := hearthtest.WriteCert(t, pki, time.Now().Add(-time.Hour), future, "other.example.com")
	expired, expiredKey := hearthtest.WriteCert(t, t.TempDir(), time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour), "ai.example.com")
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
