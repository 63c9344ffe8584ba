package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDist checks what `make dist` wrote into $HEARTH_DIST (deploy/check.sh runs it on dist/):
// every Linux binary is static, and every .rpm carries the binary, the units and the scripts
// that make the hearth user and stop the services on removal. No rpm tools are needed: the
// header is read here (the .debs are dpkg-deb's, in check.sh).
func TestDist(t *testing.T) {
	dir := os.Getenv("HEARTH_DIST")
	if dir == "" {
		t.Skip("HEARTH_DIST is not set: deploy/check.sh runs this on make dist's dist/")
	}
	bins, _ := filepath.Glob(filepath.Join(dir, "hearth-linux-*"))
	rpms, _ := filepath.Glob(filepath.Join(dir, "*.rpm"))
	if len(bins) == 0 {
		t.Fatalf("no hearth-linux-* binary in %s: run make dist", dir)
	}
	for _, bin := range bins {
		if problem := notStatic(bin); problem != "" {
			t.Errorf("%s is not a static binary: %s (build it with CGO_ENABLED=0, as deploy/dist.sh does)", filepath.Base(bin), problem)
		}
	}
	for _, rpm := range rpms {
		checkRPM(t, rpm)
	}
	t.Logf("checked %d Linux binaries and %d rpms", len(bins), len(rpms))
}

// notStatic says why the ELF file at path would need a dynamic loader ("" when it would not).
func notStatic(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(p.Open())
			return "it names the dynamic loader " + strings.TrimRight(string(interp), "\x00")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return "it needs " + strings.Join(libs, ", ")
	}
	return ""
}

func TestNotStaticFindsTheLoader(t *testing.T) {
	if got := notStatic("/bin/sh"); !strings.Contains(got, "dynamic loader") {
		t.Errorf("/bin/sh (dynamically linked): %q", got)
	}
	exe, _ := os.Executable() // a test binary: static with CGO_ENABLED=0, else linked to libc
	if got := notStatic(exe); got != "" && !strings.Contains(got, "dynamic loader") {
		t.Errorf("the test binary: %q", got)
	}
}

func checkRPM(t *testing.T, path string) {
	t.Helper()
	name := filepath.Base(path)
	h, err := readRPMHeader(path)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	files := map[string]bool{}
	dirs, bases, idx := h.strs(rpmTagDirNames), h.strs(rpmTagBaseNames), h.int32s(rpmTagDirIndexes)
	for i, b := range bases {
		if i < len(idx) && int(idx[i]) < len(dirs) {
			files[dirs[idx[i]]+b] = true
		}
	}
	for _, f := range []string{"/usr/bin/hearth", "/usr/lib/systemd/system/hearth-agent.service", "/usr/lib/systemd/system/hearth-relay.service"} {
		if !files[f] {
			t.Errorf("%s lacks %s (it has %v)", name, f, files)
		}
	}
	if post := h.string(rpmTagPostIn); !strings.Contains(post, "useradd --system") {
		t.Errorf("%s: its %%post does not create the hearth user:\n%s", name, post)
	}
	if preun := h.string(rpmTagPreUn); !strings.Contains(preun, "disable --now") {
		t.Errorf("%s: its %%preun does not stop the services:\n%s", name, preun)
	}
	if got := h.string(rpmTagName); got != "hearth" {
		t.Errorf("%s: package name %q", name, got)
	}
}

// The RPM header tags read here (rpm's lib/rpmtag.h).
const (
	rpmTagName       = 1000
	rpmTagPostIn     = 1024
	rpmTagPreUn      = 1025
	rpmTagDirIndexes = 1116
	rpmTagBaseNames  = 1117
	rpmTagDirNames   = 1118
)

// rpmHeader is an RPM header's index and data store.
type rpmHeader struct {
	entries map[uint32]rpmEntry
	store   []byte
}

type rpmEntry struct{ typ, offset, count uint32 }

// readRPMHeader reads the main header of the package at path: after the 96-byte lead comes
// the signature header, padded to 8 bytes, and then the main header, each a magic, an index
// of (tag, type, offset, count) and a data store.
func readRPMHeader(path string) (rpmHeader, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return rpmHeader{}, err
	}
	if len(data) < 96 || !bytes.Equal(data[:4], []byte{0xed, 0xab, 0xee, 0xdb}) {
		return rpmHeader{}, errors.New("not an RPM package (no lead)")
	}
	_, size, err := parseRPMHeader(data[96:])
	if err != nil {
		return rpmHeader{}, fmt.Errorf("signature header: %w", err)
	}
	off := 96 + (size+7)/8*8
	h, _, err := parseRPMHeader(data[off:])
	if err != nil {
		return rpmHeader{}, fmt.Errorf("main header: %w", err)
	}
	return h, nil
}

func parseRPMHeader(b []byte) (rpmHeader, int, error) {
	if len(b) < 16 || !bytes.Equal(b[:3], []byte{0x8e, 0xad, 0xe8}) {
		return rpmHeader{}, 0, errors.New("no header magic")
	}
	n, storeSize := int(binary.BigEndian.Uint32(b[8:])), int(binary.BigEndian.Uint32(b[12:]))
	size := 16 + 16*n + storeSize
	if n > 1<<16 || size > len(b) {
		return rpmHeader{}, 0, errors.New("truncated header")
	}
	h := rpmHeader{entries: map[uint32]rpmEntry{}, store: b[16+16*n : size]}
	for i := range n {
		e := b[16+16*i:]
		h.entries[binary.BigEndian.Uint32(e)] = rpmEntry{binary.BigEndian.Uint32(e[4:]), binary.BigEndian.Uint32(e[8:]), binary.BigEndian.Uint32(e[12:])}
	}
	return h, size, nil
}

// strs is a STRING (6) or STRING_ARRAY (8) entry's NUL-terminated strings.
func (h rpmHeader) strs(tag uint32) []string {
	e, ok := h.entries[tag]
	if !ok || (e.typ != 6 && e.typ != 8) || int(e.offset) > len(h.store) {
		return nil
	}
	var out []string
	rest := h.store[e.offset:]
	for range e.count {
		s, after, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			break
		}
		out, rest = append(out, string(s)), after
	}
	return out
}

func (h rpmHeader) string(tag uint32) string {
	if s := h.strs(tag); len(s) > 0 {
		return s[0]
	}
	return ""
}

// int32s is an INT32 (4) entry's values.
func (h rpmHeader) int32s(tag uint32) []uint32 {
	e, ok := h.entries[tag]
	if !ok || e.typ != 4 || int(e.offset)+4*int(e.count) > len(h.store) {
		return nil
	}
	out := make([]uint32, e.count)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(h.store[int(e.offset)+4*i:])
	}
	return out
}
