// Package config loads hearth's YAML configuration files: strict keys reported with file and
// line, ${VAR} expansion from the environment, defaults set in one place per role and
// validation that says what to fix. Any role package and cmd/hearth may import it; it imports
// no other hearth package.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Errors is every problem found in one file, each already prefixed with file:line.
type Errors []string

func (e Errors) Error() string {
	if len(e) == 1 {
		return e[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(e), strings.Join(e, "\n  "))
}

// decodeFile reads path and decodes it strictly into dst, which holds the defaults already:
// a key absent from the file keeps its default, a key present replaces it. lookup resolves
// ${VAR} (os.LookupEnv, or an env file's values).
func decodeFile(path string, dst any, lookup func(string) (string, bool)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return decode(path, data, dst, lookup)
}

func decode(name string, data []byte, dst any, lookup func(string) (string, bool)) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file means "all defaults"
		}
		return Errors{fmt.Sprintf("%s: %s", name, yamlMessage(err))}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	var problems Errors
	checkKeys(name, root, reflect.TypeOf(dst).Elem(), "", &problems)
	expandEnv(name, root, lookup, &problems)
	if len(problems) > 0 {
		return problems
	}
	if err := root.Decode(dst); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, msg := range te.Errors {
				problems = append(problems, fmt.Sprintf("%s:%s", name, typeMessage(msg)))
			}
			return problems
		}
		return Errors{fmt.Sprintf("%s: %s", name, yamlMessage(err))}
	}
	return nil
}

var lineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlMessage turns "yaml: line 3: mapping values are not allowed in this context" into
// "3: mapping values are not allowed in this context", so the caller prefixes file:line.
func yamlMessage(err error) string {
	if m := lineRe.FindStringSubmatch(err.Error()); m != nil {
		return m[1] + ": " + m[2]
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

var unmarshalRe = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) `(.*)` into (.+)$")

// typeMessage rewrites yaml.v3's "line 4: cannot unmarshal !!str `abc` into time.Duration".
func typeMessage(msg string) string {
	m := unmarshalRe.FindStringSubmatch(msg)
	if m == nil {
		return " " + msg
	}
	want := m[4]
	switch want {
	case "time.Duration":
		want = `a duration such as "30s", "5m" or "1h"`
	case "int", "int64", "uint64":
		want = "a whole number"
	case "bool":
		want = "true or false"
	case "float64":
		want = "a number"
	case "string":
		want = "a string"
	case "config.ByteSize":
		want = `a size such as "32MiB" or "1GB"`
	default:
		if strings.HasPrefix(want, "[]") {
			want = "a list"
		} else if strings.HasPrefix(want, "map[") || strings.HasPrefix(want, "config.") {
			want = "a mapping of keys"
		}
	}
	return fmt.Sprintf("%s: %q is not %s", m[1], m[3], want)
}

// checkKeys reports every mapping key that has no field in t, with its line and the keys
// that would have been accepted, so a typo is found at once.
func checkKeys(name string, n *yaml.Node, t reflect.Type, path string, problems *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.MappingNode:
		if t.Kind() == reflect.Map {
			for i := 1; i < len(n.Content); i += 2 {
				checkKeys(name, n.Content[i], t.Elem(), path+"."+n.Content[i-1].Value, problems)
			}
			return
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeOf(time.Duration(0)) {
			return // the decoder reports the type mismatch
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i]
			ft, ok := fields[key.Value]
			if !ok {
				*problems = append(*problems, fmt.Sprintf("%s:%d: unknown key %q%s (known keys: %s)",
					name, key.Line, key.Value, where(path), strings.Join(sortedKeys(fields), ", ")))
				continue
			}
			checkKeys(name, n.Content[i+1], ft, join(path, key.Value), problems)
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice {
			for _, item := range n.Content {
				checkKeys(name, item, t.Elem(), path+"[]", problems)
			}
		}
	}
}

func where(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		fields[tag] = f.Type
	}
	return fields
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var envRe = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${VAR} in scalar values (never in keys) after parsing, so a secret that
// contains YAML syntax cannot change the document's shape. "$$" is a literal "$". A variable
// that is not set is an error: an empty key or token would otherwise fail far from its cause.
func expandEnv(name string, n *yaml.Node, lookup func(string) (string, bool), problems *Errors) {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		expanded := envRe.ReplaceAllStringFunc(n.Value, func(m string) string {
			if m == "$$" {
				return "$"
			}
			v := m[2 : len(m)-1]
			val, ok := lookup(v)
			if !ok {
				*problems = append(*problems, fmt.Sprintf("%s:%d: environment variable %s is not set (export it, or write the value here)", name, n.Line, v))
			}
			return val
		})
		if expanded != n.Value {
			n.Value = expanded
			if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				n.Tag = "" // a plain ${VAR} resolves by its value: a number, a bool, ...
			}
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			expandEnv(name, n.Content[i], lookup, problems)
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			expandEnv(name, c, lookup, problems)
		}
	}
}
