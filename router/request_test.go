package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// sessionOf is the session key as computed before scanRequest existed: hash/fnv over the
// normalised model, the system content, a zero byte and the user content.
func sessionOf(model, system, user string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(model))
	_, _ = h.Write([]byte(system))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(user))
	return strconv.FormatUint(h.Sum64(), 36)
}

var bigContent = strings.Repeat(`lorem \"ipsum\" \u00e9 \\ dolor `, 4000)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name, body           string
		model, session, fail string // fail: the 400 message expected
		fast                 bool   // scanRequest reads it without encoding/json
	}{
		{name: "minimal", body: `{"model":"tiny"}`, model: "tiny:latest", fast: true},
		{name: "stream true", body: `{"model":"tiny","stream":true}`, model: "tiny:latest", fast: true},
		{name: "stream false", body: ` {"stream" : false , "model" : "Tiny:1b" } `, model: "tiny:1b", fast: true},
		{name: "stream absent, messages", body: `{"model":"tiny","messages":[{"role":"user","content":"hello"}]}`,
			model: "tiny:latest", session: sessionOf("tiny:latest", "", `"hello"`), fast: true},
		{name: "system then user", body: `{"messages":[{"role":"system","content":"be brief"},{"role":"assistant","content":null},{"content":"hi","role":"user"},{"role":"user","content":"again"}],"model":"tiny"}`,
			model: "tiny:latest", session: sessionOf("tiny:latest", `"be brief"`, `"hi"`), fast: true},
		{name: "second system ignored", body: `{"model":"tiny","messages":[{"role":"system","content":"a"},{"role":"system","content":"b"},{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
			model: "tiny:latest", session: sessionOf("tiny:latest", `"a"`, `[{"type":"text","text":"x"}]`), fast: true},
		{name: "system without content", body: `{"model":"tiny","messages":[{"role":"system"},{"role":"system","content":"b"},{"role":"user","content":1}]}`,
			model: "tiny:latest", session: sessionOf("tiny:latest", `"b"`, `1`), fast: true},
		{name: "user without content", body: `{"model":"tiny","messages":[{"role":"user"},{"role":"user","content":"x"}]}`, model: "tiny:latest", fast: true},
		{name: "user content null", body: `{"model":"tiny","messages":[{"role":"user","content":null}]}`,
			model: "tiny:latest", session: sessionOf("tiny:latest", "", "null"), fast: true},
		{name: "content with spaces inside", body: `{"model":"tiny","messages":[{"role":"user","content": { "a" : [ 1 , 2e-3 ] } }]}`,
			model: "tiny:latest", session: sessionOf("tiny:latest", "", `{ "a" : [ 1 , 2e-3 ] }`), fast: true},
		{name: "nested objects", body: `{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"model":{"type":"string"},"messages":{"x":[[[{}]]]}}}}}],"options":{"temperature":0.0,"stop":["\n"]},"model":"tiny","x":[1,-2.5E+3,true,false,null,"\ud83d\ude00"]}`,
			model: "tiny:latest", fast: true},
		{name: "model after big fields", body: `{"messages":[{"role":"user","content":"` + bigContent + `"}],"images":["` + strings.Repeat("QUJD", 10000) + `"],"model":"tiny"}`,
			model: "tiny:latest", session: sessionOf("tiny:latest", "", `"`+bigContent+`"`), fast: true},
		{name: "escaped strings elsewhere", body: `{"prompt":"say \"hi\"\\n\/\b\f\n\r\t\u0041","model":"tiny","suffix":"é"}`, model: "tiny:latest", fast: true},
		{name: "name for older clients", body: `{"name":"tiny"}`, model: "tiny:latest", fast: true},
		{name: "model wins over name", body: `{"name":"other","model":"tiny"}`, model: "tiny:latest", fast: true},
		{name: "escaped model", body: `{"model":"ti\u006ey"}`, model: "tiny:latest"},
		{name: "unicode model", body: `{"model":"modèle"}`, model: "modèle:latest"},
		{name: "key in another case", body: `{"Model":"tiny"}`, model: "tiny:latest"},
		{name: "repeated model: last wins", body: `{"model":"a","model":"tiny"}`, model: "tiny:latest"},
		{name: "model null, name set", body: `{"model":null,"name":"tiny"}`, model: "tiny:latest"},
		{name: "role in another case", body: `{"model":"tiny","messages":[{"ROLE":"user","Content":"x"}]}`, model: "tiny:latest", session: sessionOf("tiny:latest", "", `"x"`)},
		{name: "repeated messages", body: `{"model":"tiny","messages":[{"role":"user","content":1}],"messages":[{"content":2}]}`, model: "tiny:latest", session: sessionOf("tiny:latest", "", "2")},
		{name: "null message", body: `{"model":"tiny","messages":[null,{"role":"user","content":"x"}]}`, model: "tiny:latest", session: sessionOf("tiny:latest", "", `"x"`)},
		{name: "top-level null", body: `null`, fail: `model is required: name it in the "model" field (GET /api/tags or /v1/models lists what is available)`},
		{name: "no model", body: `{"stream":true}`, fail: `model is required: name it in the "model" field (GET /api/tags or /v1/models lists what is available)`, fast: true},
		{name: "blank model", body: `{"model":"  "}`, fail: `model is required: name it in the "model" field (GET /api/tags or /v1/models lists what is available)`, fast: true},
		{name: "empty", body: ``, fail: `request body is empty: send a JSON object such as {"model":"NAME", ...}`},
		{name: "cut short", body: `{"model":"tiny","messages":[`, fail: `request body is cut short after 28 bytes: send a complete JSON object`},
		{name: "trailing comma", body: `{"model":"tiny",}`, fail: `request body is not valid JSON: invalid character '}' looking for beginning of object key string (at byte 17)`},
		{name: "trailing data", body: `{"model":"tiny"} x`, fail: `request body is not valid JSON: invalid character 'x' after top-level value (at byte 18)`},
		{name: "leading zero", body: `{"model":"tiny","n":01}`, fail: `request body is not valid JSON: invalid character '1' after object key:value pair (at byte 22)`},
		{name: "bad escape", body: `{"model":"tiny","p":"\x"}`, fail: `request body is not valid JSON: invalid character 'x' in string escape code (at byte 23)`},
		{name: "control character", body: "{\"model\":\"tiny\",\"p\":\"a\tb\"}", fail: `request body is not valid JSON: invalid character '\t' in string literal (at byte 23)`},
		{name: "bare minus", body: `{"model":"tiny","n":-}`, fail: `request body is not valid JSON: invalid character '}' in numeric literal (at byte 22)`},
		{name: "not an object", body: `["tiny"]`, fail: `request body must be a JSON object, not array`},
		{name: "model not a string", body: `{"model":1}`, fail: `request body: "model" must be a string, not number`},
		{name: "messages not a list", body: `{"model":"tiny","messages":"hi"}`, fail: `request body: "messages" must be a list of {"role","content"} objects, not string`},
		{name: "role not a string", body: `{"model":"tiny","messages":[{"role":1}]}`, fail: `request body: "messages" must be a list of {"role","content"} objects, not number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, apiErr := parseRequest([]byte(tt.body))
			switch {
			case tt.fail != "":
				if apiErr == nil || apiErr.Message != tt.fail || apiErr.Status != 400 {
					t.Fatalf("got %+v, %+v; want the 400 %q", req, apiErr, tt.fail)
				}
			case apiErr != nil:
				t.Fatalf("error %+v", apiErr)
			case req.Model != tt.model || req.Session != tt.session:
				t.Fatalf("got model %q session %q, want %q %q", req.Model, req.Session, tt.model, tt.session)
			}
			if _, fast := scanRequest([]byte(tt.body)); fast != tt.fast {
				t.Errorf("scanRequest read it: %v, want %v", fast, tt.fast)
			}
			checkScanAgrees(t, []byte(tt.body))
		})
	}
}

// checkScanAgrees: whatever scanRequest reads, encoding/json reads the same way.
func checkScanAgrees(t *testing.T, body []byte) {
	t.Helper()
	got, ok := scanRequest(body)
	if !ok {
		return
	}
	want, err := decodeRequest(body)
	if err != nil {
		t.Fatalf("scanRequest accepted %q, encoding/json says %v", body, err)
	}
	if got.model != want.model || got.name != want.name || got.hasUser != want.hasUser ||
		!bytes.Equal(got.system, want.system) || (got.system == nil) != (want.system == nil) ||
		!bytes.Equal(got.user, want.user) || (got.user == nil) != (want.user == nil) {
		t.Fatalf("%q: scanRequest read %+v, encoding/json %+v", body, got, want)
	}
}

// TestScanRequestDeclinesInvalidJSON: no malformed body gets past the scanner; each of these
// is cut or altered from a valid one.
func TestScanRequestDeclinesInvalidJSON(t *testing.T) {
	valid := `{"model":"tiny","stream":false,"x":[1,-0.5e+2,true,false,null,{"a":"\u00e9\n"}],"messages":[{"role":"user","content":"hi"}]}`
	for i := range len(valid) {
		for _, b := range [][]byte{[]byte(valid[:i]), append([]byte(valid[:i]), valid[i+1:]...)} {
			if _, ok := scanRequest(b); ok != json.Valid(b) && ok {
				t.Errorf("scanRequest accepted invalid %q", b)
			}
			checkScanAgrees(t, b)
		}
	}
}

func FuzzScanRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"tiny","messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]}`,
		`{"model":"tiny","x":[1,-2.5E+3,true,false,null,"\ud83d"],"y":{"z":{}}}`,
		`{"name":"a","stream":true}`,
		`{"model":"a","messages":[{"role":"user"},{"role":"user","content":[1]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, ok := scanRequest(body); ok && !json.Valid(body) {
			t.Fatalf("scanRequest accepted invalid %q", body)
		}
		checkScanAgrees(t, body)
	})
}

func BenchmarkParseRequest(b *testing.B) {
	for _, bm := range []struct{ name, body string }{
		{"small", `{"model":"bench","stream":false,"messages":[{"role":"user","content":"hello"}]}`},
		{"conversation", `{"model":"bench","messages":[{"role":"system","content":"be brief"},` +
			strings.Repeat(`{"role":"user","content":"`+strings.Repeat("word ", 200)+`"},{"role":"assistant","content":"ok \"quoted\""},`, 50) +
			`{"role":"user","content":"last"}],"options":{"temperature":0.2}}`},
	} {
		b.Run(bm.name, func(b *testing.B) {
			body := []byte(bm.body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseRequest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestReadBody: announced and unannounced lengths, the limit exactly, one byte over, and a
// broken body.
func TestReadBody(t *testing.T) {
	s := &Server{cfg: ServerConfig{MaxBody: 1000}}
	tooLarge := "request body is larger than 1000 bytes (node.max_body): send less, or raise node.max_body in the agent config"
	tests := []struct {
		name   string
		body   io.Reader
		length int64 // -1: chunked
		want   string
		fail   string
	}{
		{"empty", http.NoBody, 0, "", ""},
		{"announced", strings.NewReader(`{"model":"tiny"}`), 16, `{"model":"tiny"}`, ""},
		{"chunked", strings.NewReader(`{"model":"tiny"}`), -1, `{"model":"tiny"}`, ""},
		{"chunked, many reads", iotest.OneByteReader(strings.NewReader(strings.Repeat("x", 999))), -1, strings.Repeat("x", 999), ""},
		{"at the limit", strings.NewReader(strings.Repeat("x", 1000)), 1000, strings.Repeat("x", 1000), ""},
		{"announced over the limit", strings.NewReader(strings.Repeat("x", 1001)), 1001, "", tooLarge},
		{"chunked over the limit", strings.NewReader(strings.Repeat("x", 5000)), -1, "", tooLarge},
		{"broken", failingReader{}, -1, "", "could not read the request body: connection reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/chat", tt.body)
			r.ContentLength = tt.length
			got, apiErr := s.readBody(r)
			switch {
			case tt.fail != "":
				if apiErr == nil || apiErr.Message != tt.fail {
					t.Fatalf("got %q, %+v; want %q", got, apiErr, tt.fail)
				}
			case apiErr != nil || string(got) != tt.want:
				t.Fatalf("got %q, %+v; want %q", got, apiErr, tt.want)
			}
		})
	}
}
