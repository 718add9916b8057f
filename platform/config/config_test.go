package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Brokers []string `yaml:"brokers" env:"T_BROKERS"`
}

type sample struct {
	Name    string        `yaml:"name" env:"T_NAME"`
	Workers int           `yaml:"workers" env:"T_WORKERS"`
	Debug   bool          `yaml:"debug" env:"T_DEBUG"`
	Timeout time.Duration `yaml:"timeout" env:"T_TIMEOUT"`
	Kafka   inner         `yaml:"kafka"`
}

func (s *sample) Validate() error {
	if s.Workers < 1 {
		return Errorf("workers", "", "must be at least 1, got %d", s.Workers)
	}
	return Prefix("kafka", HostPorts("brokers", s.Kafka.Brokers))
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadAppliesDefaultsThenFileThenEnvironment(t *testing.T) {
	t.Setenv("T_WORKERS", "8")
	t.Setenv("T_BROKERS", "a:1, b:2")
	cfg := sample{Name: "default", Workers: 1, Timeout: time.Second}
	path := writeFile(t, "name: from-file\nworkers: 4\ntimeout: 3s\nkafka:\n  brokers: [x:9]\n")
	if err := Load(path, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "from-file" || cfg.Workers != 8 || cfg.Timeout != 3*time.Second {
		t.Fatalf("unexpected config %+v", cfg)
	}
	if strings.Join(cfg.Kafka.Brokers, ",") != "a:1,b:2" {
		t.Fatalf("env did not override the list: %v", cfg.Kafka.Brokers)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		wantKey string
	}{
		{"unknown key in file", "name: x\nwrokers: 2\n", nil, "wrokers"},
		{"bad value from validation", "workers: 0\nkafka: {brokers: [a:1]}\n", nil, `"workers"`},
		{"bad nested value", "workers: 1\nkafka: {brokers: [nocolon]}\n", nil, `"kafka.brokers"`},
		{"bad environment value", "workers: 1\nkafka: {brokers: [a:1]}\n", map[string]string{"T_TIMEOUT": "soon"}, `"timeout"`},
		{"wrong type in file", "workers: many\n", nil, "workers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg := sample{Workers: 1}
			err := Load(writeFile(t, tt.file), &cfg)
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("error %q does not name %s", err, tt.wantKey)
			}
		})
	}
}

func TestLoadKeyErrorIsInspectable(t *testing.T) {
	cfg := sample{Workers: 0}
	err := Load("", &cfg)
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "workers" {
		t.Fatalf("want KeyError for workers, got %v", err)
	}
}

func TestLoadAcceptsEmptyFile(t *testing.T) {
	cfg := sample{Workers: 2, Kafka: inner{Brokers: []string{"h:1"}}}
	if err := Load(writeFile(t, ""), &cfg); err != nil {
		t.Fatal(err)
	}
}

// A command's flags win over the environment and the file, without touching the process's
// environment; an empty flag leaves the layers below it; a bad flag value names its key.
func TestLoadWithOverridesWinOverEnvironmentAndFileAndLeaveTheEnvironmentAlone(t *testing.T) {
	t.Setenv("T_WORKERS", "8")
	t.Setenv("T_NAME", "from-env")
	path := writeFile(t, "name: from-file\nworkers: 4\nkafka:\n  brokers: [x:9]\n")
	cfg := sample{Workers: 1}
	if err := LoadWith(path, &cfg, map[string]string{"T_WORKERS": "16", "T_NAME": ""}); err != nil {
		t.Fatal(err)
	}
	if cfg.Workers != 16 || cfg.Name != "from-env" {
		t.Fatalf("config %+v", cfg)
	}
	if v := os.Getenv("T_WORKERS"); v != "8" {
		t.Fatalf("the environment changed: T_WORKERS=%s", v)
	}
	var ke *KeyError
	if err := LoadWith(path, &sample{}, map[string]string{"T_WORKERS": "many"}); !errors.As(err, &ke) || ke.Key != "workers" {
		t.Fatalf("a bad flag value: %v", err)
	}
}
