package hearthtest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestVendor(t *testing.T) {
	v := NewVendor(t, VendorConfig{Model: "deepseek-chat"})
	post := func(body string) (int, string) {
		resp, err := http.Post(v.URL+"/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(`{"model":"deepseek-chat","stream":true}`); code != 200 || strings.Count(body, "data: ") != 6 ||
		!strings.Contains(body, `"content":"vendor"`) || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("stream: %d %s", code, body)
	}
	if code, body := post(`{"model":"deepseek-chat"}`); code != 200 || !strings.Contains(body, `"content":"from the vendor"`) ||
		!strings.Contains(body, `"completion_tokens":3`) {
		t.Errorf("whole answer: %d %s", code, body)
	}
	if code, _ := post(`{"model":"gpt-4o"}`); code != 400 {
		t.Errorf("another model: %d", code)
	}
	if v.Calls() != 3 {
		t.Errorf("calls %d", v.Calls())
	}
}

func TestGoroutinesFindsAndForgets(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); parkedForTheTest(stop) }()
	Eventually(t, "the goroutine to show", 5*time.Second, func() bool { return len(Goroutines("hearthtest.parkedForTheTest")) == 1 })
	close(stop)
	<-done
	if left := Goroutines("hearthtest.parkedForTheTest"); len(left) != 0 {
		t.Fatalf("a finished goroutine still listed: %v", left)
	}
}

//go:noinline
func parkedForTheTest(stop chan struct{}) { <-stop }
