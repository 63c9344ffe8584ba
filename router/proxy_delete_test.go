package router

import "testing"

// TestDeletedModel: a delete names its model in "model", or in "name" as older clients do;
// the picker prefers a node whose store holds it.
func TestDeletedModel(t *testing.T) {
	for body, want := range map[string]string{
		`{"model":"qwen3:14b"}`:    "qwen3:14b",
		`{"name":"tiny"}`:          "tiny",
		`{"model":"a","name":"b"}`: "a",
		`{"model":7}`:              "",
		`{}`:                       "",
	} {
		if got := deletedModel([]byte(body)); got != want {
			t.Errorf("%s: got %q, want %q", body, got, want)
		}
	}
}
