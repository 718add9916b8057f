// Package config loads a component's typed configuration: defaults set by the caller, then a
// YAML file (strict: unknown keys are errors), then environment variables named by `env` struct
// tags, then the component's own validation. Every error names the key at fault.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Validator is implemented by every component config.
type Validator interface {
	Validate() error
}

// KeyError reports a bad configuration value under its dotted key.
type KeyError struct {
	Key    string
	Value  string
	Reason string
}

func (e *KeyError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("config key %q: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("config key %q: value %q: %s", e.Key, e.Value, e.Reason)
}

// Errorf builds a KeyError.
func Errorf(key, value, format string, args ...any) error {
	return &KeyError{Key: key, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// Prefix re-roots the keys of KeyErrors inside err under prefix, so a nested block's
// validation can report "kafka.brokers" while only knowing "brokers".
func Prefix(prefix string, err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		return &KeyError{Key: prefix + "." + ke.Key, Value: ke.Value, Reason: ke.Reason}
	}
	return err
}

// Load fills dst (a pointer to a struct already holding defaults) from the YAML file at path (if
// path is not empty), then from the environment, then validates it.
func Load(path string, dst Validator) error { return LoadWith(path, dst, nil) }

// LoadWith is Load with overrides: values of the environment layer's variable names
// (HERALD_REGION_NAME, ...) that win over both the file and the process environment, as a
// command's flags do. Empty values are ignored.
func LoadWith(path string, dst Validator, overrides map[string]string) error {
	lookup := func(k string) (string, bool) {
		if v := overrides[k]; v != "" {
			return v, true
		}
		return os.LookupEnv(k)
	}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading config: %w", err)
		}
		if err := decodeYAML(raw, dst); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if err := ApplyEnv(dst, lookup); err != nil {
		return err
	}
	if e, ok := dst.(EnvDependent); ok {
		if err := e.ApplyDependentEnv(lookup); err != nil {
			return err
		}
	}
	return dst.Validate()
}

// EnvDependent is a config with environment variables whose names depend on its own values
// (a region's jurisdiction picks its cluster's variable); they apply after the tagged ones.
type EnvDependent interface {
	ApplyDependentEnv(lookup func(string) (string, bool)) error
}

func decodeYAML(raw []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file keeps the defaults
		}
		return nameKeys(raw, err)
	}
	return nil
}

// ApplyEnv sets fields tagged `env:"NAME"` from lookup. Supported kinds: string, bool, ints,
// time.Duration, []string (comma separated). Errors name the variable and the key it sets.
func ApplyEnv(dst any, lookup func(string) (string, bool)) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: ApplyEnv needs a pointer to a struct, got %T", dst)
	}
	return applyEnv(v.Elem(), "", lookup)
}

var durationType = reflect.TypeOf(time.Duration(0))

func applyEnv(v reflect.Value, prefix string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key := yamlName(f)
		if prefix != "" {
			key = prefix + "." + key
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			if err := applyEnv(fv, key, lookup); err != nil {
				return err
			}
			continue
		}
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		raw, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setValue(fv, raw); err != nil {
			return &KeyError{Key: key, Value: raw, Reason: fmt.Sprintf("from environment variable %s: %v", name, err)}
		}
	}
	return nil
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func setValue(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type %s", fv.Type())
		}
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		fv.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported type %s", fv.Type())
	}
	return nil
}

var lineRE = regexp.MustCompile(`line (\d+): `)

// nameKeys adds the dotted key to yaml.v3's "line N: cannot unmarshal" messages, which name
// only the line.
func nameKeys(raw []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(raw, &root) != nil {
		return err
	}
	keys := map[int]string{}
	collectKeys(&root, "", keys)
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			if n, convErr := strconv.Atoi(sm[1]); convErr == nil && keys[n] != "" {
				m = fmt.Sprintf("key %q: %s", keys[n], m)
			}
		}
		msgs = append(msgs, m)
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

func collectKeys(n *yaml.Node, prefix string, out map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			collectKeys(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			out[n.Content[i+1].Line] = key // the deepest key on a line wins
			collectKeys(n.Content[i+1], key, out)
		}
	}
}
