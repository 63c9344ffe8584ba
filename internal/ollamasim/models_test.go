package ollamasim

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestUnknownModel pins Ollama v0.17.4's per-route 404 texts, which differ: most handlers
// check the manifest first ('NAME'), the embedding ones fail in the scheduler (%q, "try
// pulling it first"), and /v1 wraps whatever the handler said as an api_error.
func TestUnknownModel(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	tests := []struct {
		method, path, body string
		contentType, want  string
	}{
		{"POST", "/api/chat", chatBody("nope", true, ""), ctJSONGin, `{"error":"model 'nope' not found"}`},
		{"POST", "/api/generate", `{"model":"nope","prompt":"x"}`, ctJSONGin, `{"error":"model 'nope' not found"}`},
		{"POST", "/api/show", `{"model":"nope"}`, ctJSONGin, `{"error":"model 'nope' not found"}`},
		{"POST", "/api/show", `{"name":"nope:7b"}`, ctJSONGin, `{"error":"model 'nope:7b' not found"}`},
		{"POST", "/api/embed", `{"model":"nope","input":"x"}`, ctJSONGin, `{"error":"model \"nope\" not found, try pulling it first"}`},
		{"POST", "/api/embeddings", `{"model":"nope","prompt":"x"}`, ctJSONGin, `{"error":"model \"nope\" not found, try pulling it first"}`},
		{"DELETE", "/api/delete", `{"model":"nope"}`, ctJSONGin, `{"error":"model 'nope' not found"}`},
		{"POST", "/api/copy", `{"source":"nope","destination":"x"}`, ctJSONGin, `{"error":"model \"nope\" not found"}`},
		{"POST", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, ctJSON,
			`{"error":{"message":"model 'nope' not found","type":"api_error","param":null,"code":null}}` + "\n"},
		{"POST", "/v1/completions", `{"model":"nope","prompt":"x","stream":true}`, ctJSON,
			`{"error":{"message":"model 'nope' not found","type":"api_error","param":null,"code":null}}` + "\n"},
		{"POST", "/v1/embeddings", `{"model":"nope","input":"x"}`, ctJSON,
			`{"error":{"message":"model \"nope\" not found, try pulling it first","type":"api_error","param":null,"code":null}}` + "\n"},
		{"GET", "/v1/models/nope", ``, ctJSON,
			`{"error":{"message":"model 'nope' not found","type":"api_error","param":null,"code":null}}` + "\n"},
	}
	for _, tt := range tests {
		res := do(testCtx(t), t, c, tt.method, s.URL()+tt.path, tt.body)
		if res.status != 404 || res.header.Get("Content-Type") != tt.contentType || res.body != tt.want {
			t.Errorf("%s %s: %d %q %s\nwant 404 %q %s", tt.method, tt.path, res.status, res.header.Get("Content-Type"), res.body, tt.contentType, tt.want)
		}
	}
	if st := s.Stats(); st.Requests != 0 || st.ColdLoads != 0 {
		t.Errorf("stats %+v after only unknown models", st)
	}
}

func TestPull(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	d := digestOf(Model{Name: "tiny:latest", Size: defaultSize})
	tests := []struct {
		name, body  string
		status      int
		contentType string
		want        string
	}{
		{"unknown streams the error after the manifest line", `{"model":"nope"}`, 200, ctNDJSON,
			`{"status":"pulling manifest"}` + "\n" + `{"error":"pull model manifest: file does not exist"}` + "\n"},
		{"unknown without streaming is a 500", `{"model":"nope","stream":false}`, 500, ctJSON,
			`{"error":"pull model manifest: file does not exist"}`},
		{"known streams progress to success", `{"name":"tiny"}`, 200, ctNDJSON, strings.Join([]string{
			`{"status":"pulling manifest"}`,
			`{"status":"pulling ` + d[:12] + `","digest":"sha256:` + d + `","total":1073741824}`,
			`{"status":"pulling ` + d[:12] + `","digest":"sha256:` + d + `","total":1073741824,"completed":1073741824}`,
			`{"status":"verifying sha256 digest"}`,
			`{"status":"writing manifest"}`,
			`{"status":"success"}`, ``}, "\n")},
		{"known without streaming", `{"model":"tiny","stream":false}`, 200, ctJSON, `{"status":"success"}`},
		{"invalid name", `{}`, 400, ctJSONGin, `{"error":"invalid model name"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, c, s.URL()+"/api/pull", tt.body)
			if res.status != tt.status || res.header.Get("Content-Type") != tt.contentType || res.body != tt.want {
				t.Errorf("got %d %q\n%s\nwant %d %q\n%s", res.status, res.header.Get("Content-Type"), res.body, tt.status, tt.contentType, tt.want)
			}
		})
	}
	if n := len(listNames(t, c, s.URL())); n != 1 {
		t.Errorf("%d models after pulls, want the one there was", n)
	}
}

// listNames is /api/tags' model names, sorted.
func listNames(t *testing.T, c *http.Client, url string) []string {
	t.Helper()
	tags := decode[struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}](t, get(t, c, url+"/api/tags").body)
	var names []string
	for _, m := range tags.Models {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

func TestModelManagement(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	const helloDigest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" // of "hello"
	steps := []struct {
		name, method, path, body string
		status                   int
		want                     string
		wantModels               string // /api/tags names after the step, sorted
	}{
		{"copy", "POST", "/api/copy", `{"source":"tiny","destination":"tiny-copy"}`, 200, ``, "tiny-copy:latest,tiny:latest"},
		{"copy bad destination", "POST", "/api/copy", `{"source":"tiny","destination":"bad name"}`, 400, `{"error":"destination \"bad name\" is invalid"}`, "tiny-copy:latest,tiny:latest"},
		{"delete", "DELETE", "/api/delete", `{"model":"tiny-copy"}`, 200, ``, "tiny:latest"},
		{"delete again", "DELETE", "/api/delete", `{"model":"tiny-copy"}`, 404, `{"error":"model 'tiny-copy' not found"}`, "tiny:latest"},
		{"delete invalid", "DELETE", "/api/delete", `{}`, 400, `{"error":"name \"\" is invalid"}`, "tiny:latest"},
		{"create from", "POST", "/api/create", `{"model":"made","from":"tiny","stream":false}`, 200, `{"status":"success"}`, "made:latest,tiny:latest"},
		{"create from unknown", "POST", "/api/create", `{"model":"x","from":"nope"}`, 200,
			`{"status":"pulling manifest"}` + "\n" + `{"error":"pull model manifest: file does not exist"}` + "\n", "made:latest,tiny:latest"},
		{"create from nothing", "POST", "/api/create", `{"model":"x"}`, 400, `{"error":"neither 'from' or 'files' was specified"}`, "made:latest,tiny:latest"},
		{"blob unknown", "HEAD", "/api/blobs/" + helloDigest, ``, 404, ``, "made:latest,tiny:latest"},
		{"blob bad digest", "POST", "/api/blobs/sha256:abc", `hello`, 400, `{"error":"invalid digest format"}`, "made:latest,tiny:latest"},
		{"blob mismatch", "POST", "/api/blobs/sha256:" + strings.Repeat("0", 64), `hello`, 400,
			`{"error":"digest mismatch, expected \"sha256:` + strings.Repeat("0", 64) + `\", got \"` + helloDigest + `\""}`, "made:latest,tiny:latest"},
		{"blob upload", "POST", "/api/blobs/" + helloDigest, `hello`, 201, ``, "made:latest,tiny:latest"},
		{"blob known", "HEAD", "/api/blobs/" + helloDigest, ``, 200, ``, "made:latest,tiny:latest"},
		{"create from files", "POST", "/api/create", `{"model":"fromfile","files":{"m.gguf":"` + helloDigest + `"},"stream":false}`, 200, `{"status":"success"}`, "fromfile:latest,made:latest,tiny:latest"},
	}
	for _, st := range steps {
		res := do(testCtx(t), t, c, st.method, s.URL()+st.path, st.body)
		if res.status != st.status || res.body != st.want {
			t.Errorf("%s: %d %s, want %d %s", st.name, res.status, res.body, st.status, st.want)
		}
		got := listNames(t, c, s.URL())
		if strings.Join(got, ",") != st.wantModels {
			t.Errorf("%s: models %v, want %s", st.name, got, st.wantModels)
		}
	}

	s.AddModel(Model{Name: "user/added:v2", Size: 42})
	s.RemoveModel("made")
	got := listNames(t, c, s.URL())
	if strings.Join(got, ",") != "fromfile:latest,tiny:latest,user/added:v2" {
		t.Errorf("after AddModel/RemoveModel: %v", got)
	}
	if res := post(t, c, s.URL()+"/api/chat", chatBody("user/added:v2", false, "")); res.status != 200 {
		t.Errorf("chat with an added model: %d %s", res.status, res.body)
	}
}
