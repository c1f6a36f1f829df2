package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

var typeOfConfig = reflect.TypeFor[Config]()

// checkFields walks the YAML tree alongside the Go type and reports every
// mapping key the type does not have, and every value of the wrong shape (a
// scalar where a mapping or list belongs, text where a number belongs), with
// its full path and line. yaml's own errors name a Go type ("not found in
// type config.Pool", "cannot unmarshal !!str into config.Limits"), which
// tells an operator nothing about where in the file the mistake is.
func checkFields(n *yaml.Node, t reflect.Type, path string, es *Errors) {
	if n == nil {
		return
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			checkFields(c, t, path, es)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		checkFields(n.Alias, t, path, es)
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the field at its default
	}
	if reflect.PointerTo(t).Implements(typeOfUnmarshaler) || isLeaf(t.Kind()) {
		checkLeaf(n, t, path, es)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		fields := yamlFields(t)
		if n.Kind != yaml.MappingNode {
			// Issue 17: `budget: -5s` got yaml's "cannot unmarshal !!str
			// into config.Limits", which names neither the field nor what
			// to write instead.
			es.add(orTop(path), "expected a mapping of %s (line %d), not %s; e.g. %s",
				strings.Join(sortedNames(fields), ", "), n.Line, describe(n), exampleOf(path, fields))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			p := join(path, k.Value)
			if !ok {
				es.add(p, "unknown field (line %d); known fields here: %s", k.Line, strings.Join(sortedNames(fields), ", "))
				continue
			}
			checkFields(v, ft, p, es)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			es.add(orTop(path), "expected a list (line %d), not %s; write [a, b] or one \"- item\" per line", n.Line, describe(n))
			return
		}
		for i, c := range n.Content {
			checkFields(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), es)
		}
	}
}

// yamlFields maps a struct's YAML keys to their types, flattening inline
// structs.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for k, v := range yamlFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

var typeOfUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// isLeaf reports whether a field of kind k holds one scalar value.
func isLeaf(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// checkLeaf decodes a scalar field's node on its own, so that a value of
// the wrong shape is reported with the field's path and what it expects
// instead of yaml's "cannot unmarshal !!str `x` into int".
func checkLeaf(n *yaml.Node, t reflect.Type, path string, es *Errors) {
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	if reflect.PointerTo(t).Implements(typeOfUnmarshaler) {
		es.add(orTop(path), "%v", err) // its own message says what it expects
		return
	}
	var want string
	switch t.Kind() {
	case reflect.Bool:
		want = "true or false"
	case reflect.String:
		want = "a single value (text)"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	default:
		want = "a whole number"
	}
	es.add(orTop(path), "expected %s (line %d), not %s", want, n.Line, describe(n))
}

// describe names what a node holds, for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// exampleOf shows the shape a mapping field takes, with its first field.
func exampleOf(path string, fields map[string]reflect.Type) string {
	names := sortedNames(fields)
	if len(names) == 0 {
		return "{}"
	}
	first := names[0]
	if _, ok := fields["worker_time"]; ok {
		first = "worker_time" // a budget's field that matters most
	} else if _, ok := fields["name"]; ok {
		first = "name"
	}
	v := "..."
	if ft := fields[first]; ft == reflect.TypeFor[*Duration]() || ft == reflect.TypeFor[Duration]() {
		v = "60s"
	}
	key := path
	if i := strings.LastIndexAny(key, ".]"); i >= 0 {
		key = key[i+1:]
	}
	if key == "" {
		return fmt.Sprintf("{%s: %s}", first, v)
	}
	return fmt.Sprintf("%s: {%s: %s}", key, first, v)
}

func sortedNames(fields map[string]reflect.Type) []string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// orTop names the document itself when the path is empty.
func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
