package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// seenFile keeps, in node.data_dir, the models each wake rule's node had when this agent last
// saw it alive: an agent restarted while the PC sleeps still knows what waking it serves.
const seenFile = "wake-seen.json"

// loadSeen reads what was saved; a missing file is an empty record.
func loadSeen(dir string) (map[string][]string, error) {
	seen := map[string][]string{}
	data, err := os.ReadFile(filepath.Join(dir, seenFile))
	if os.IsNotExist(err) {
		return seen, nil
	}
	if err != nil {
		return seen, fmt.Errorf("agent: %w", err)
	}
	if err := json.Unmarshal(data, &seen); err != nil {
		return map[string][]string{}, fmt.Errorf("agent: %s is not the JSON hearth wrote (%v): it will be rewritten", filepath.Join(dir, seenFile), err)
	}
	return seen, nil
}

// saveSeen writes the record atomically (a temporary file renamed over the old one).
func saveSeen(dir string, seen map[string][]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	data, err := json.Marshal(seen)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	tmp, err := os.CreateTemp(dir, seenFile+".*")
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("agent: write %s: %v %v", tmp.Name(), werr, cerr)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, seenFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

func sameSeen(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}
