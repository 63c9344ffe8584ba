package tokens

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/auth"
	"golang.org/x/crypto/ssh"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

func TestOllamaSignatureVerify(t *testing.T) {
	priv, pub, _ := hearthtest.OllamaKey(t)
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, _ := ssh.NewPublicKey(&ecKey.PublicKey)

	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		window time.Duration
		want   error
	}{
		{"valid", func() *http.Request { return hearthtest.SignLikeOllama(t, priv, "POST", "/api/chat", now) }, 0, nil},
		{"valid, 4 minutes old", func() *http.Request {
			return hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now.Add(-4*time.Minute))
		}, 0, nil},
		{"valid, clock 4 minutes ahead", func() *http.Request { return hearthtest.SignLikeOllama(t, priv, "HEAD", "/", now.Add(4*time.Minute)) }, 0, nil},
		{"stale", func() *http.Request {
			return hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now.Add(-6*time.Minute))
		}, 0, ErrStaleSignature},
		{"from the future", func() *http.Request {
			return hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now.Add(6*time.Minute))
		}, 0, ErrStaleSignature},
		{"narrow window", func() *http.Request {
			return hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now.Add(-time.Minute))
		}, 30 * time.Second, ErrStaleSignature},
		{"other method", func() *http.Request {
			r := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now)
			r.Method = "DELETE"
			return r
		}, 0, ErrBadSignature},
		{"other path", func() *http.Request {
			r := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now)
			r.URL.Path = "/api/delete"
			return r
		}, 0, ErrBadSignature},
		{"ts changed", func() *http.Request {
			r := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now)
			r.URL.RawQuery = "ts=" + strconv.FormatInt(now.Unix()+1, 10)
			return r
		}, 0, ErrBadSignature},
		{"no ts", func() *http.Request {
			r := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now)
			r.URL.RawQuery = ""
			return r
		}, 0, ErrMalformedSignature},
		{"another key's name on the signature", func() *http.Request {
			r := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now)
			_, sig, _ := strings.Cut(r.Header.Get("Authorization"), ":")
			_, other, _ := hearthtest.OllamaKey(t)
			r.Header.Set("Authorization", base64.StdEncoding.EncodeToString(other.Marshal())+":"+sig)
			return r
		}, 0, ErrBadSignature},
		{"ecdsa key", func() *http.Request {
			r := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now)
			_, sig, _ := strings.Cut(r.Header.Get("Authorization"), ":")
			r.Header.Set("Authorization", base64.StdEncoding.EncodeToString(ecPub.Marshal())+":"+sig)
			return r
		}, 0, ErrMalformedSignature},
		{"not base64", func() *http.Request {
			r := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now)
			r.Header.Set("Authorization", "%%%:%%%")
			return r
		}, 0, ErrMalformedSignature},
		{"basic auth", func() *http.Request {
			r := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", now)
			r.SetBasicAuth("user", "pass")
			return r
		}, 0, ErrMalformedSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := VerifyOllamaSignature(tc.req(), now, tc.window)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err == nil && !bytes.Equal(got, pub.Marshal()) {
				t.Errorf("returned key is not the signer's")
			}
		})
	}
}

// The format is proven against ollama's own signing code (auth.Sign), not guessed.
func TestOllamaSignatureFromOllamaAuthSign(t *testing.T) {
	line := hearthtest.OllamaHome(t)
	pub, _, err := parseOllamaKey(line)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/tags"}, {"POST", "/api/chat"}, {"HEAD", "/"}, {"DELETE", "/api/delete"},
	} {
		ts := strconv.FormatInt(now.Unix(), 10)
		header, err := auth.Sign(t.Context(), []byte(fmt.Sprintf("%s,%s?ts=%s", tc.method, tc.path, ts)))
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(tc.method, tc.path+"?ts="+ts, nil)
		r.Header.Set("Authorization", header)
		got, err := VerifyOllamaSignature(r, now, 0)
		if err != nil || !bytes.Equal(got, pub.Marshal()) {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
		}
		if _, err := VerifyOllamaSignature(r, now.Add(10*time.Minute), 0); !errors.Is(err, ErrStaleSignature) {
			t.Errorf("%s %s ten minutes later: %v, want stale", tc.method, tc.path, err)
		}
	}
}

func TestOllamaKeyParse(t *testing.T) {
	_, pub, line := hearthtest.OllamaKey(t)
	_, other, otherLine := hearthtest.OllamaKey(t)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPub, _ := ssh.NewPublicKey(&ecKey.PublicKey)
	ecLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ecPub)))
	for _, tc := range []struct {
		name, in, wantLine, wantErr string
		wantKey                     ssh.PublicKey
	}{
		{name: "line with comment", in: "  " + line + "\n", wantLine: line, wantKey: pub},
		{name: "bare base64", in: strings.Fields(otherLine)[1], wantLine: strings.Join(strings.Fields(otherLine)[:2], " "), wantKey: other},
		{name: "ecdsa", in: ecLine, wantErr: "a ecdsa-sha2-nistp256 key; the ollama CLI signs with ssh-ed25519"},
		{name: "garbage", in: "hello world", wantErr: "ollama key: not an ssh public key"},
		{name: "two keys", in: line + "\n" + otherLine, wantErr: "more than one key"},
		{name: "private key", in: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...", wantErr: "that is a private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, got, err := parseOllamaKey(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.wantLine || !bytes.Equal(key.Marshal(), tc.wantKey.Marshal()) {
				t.Fatalf("got %q %v, want %q", got, err, tc.wantLine)
			}
		})
	}
}
