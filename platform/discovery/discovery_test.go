package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// backends returns every backend the test can reach: the file backend always, Consul when an
// agent answers at CONSUL_HTTP_ADDR.
func backends(t *testing.T) map[string]Backend {
	t.Helper()
	f, err := NewFile(t.TempDir(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.poll = 10 * time.Millisecond
	out := map[string]Backend{"file": f}
	addr := os.Getenv("CONSUL_HTTP_ADDR")
	if addr == "" {
		t.Log("Consul backend not exercised: CONSUL_HTTP_ADDR is not set, so no Consul agent was found")
		return out
	}
	resp, err := http.Get("http://" + addr + "/v1/status/leader")
	if err != nil {
		t.Logf("Consul backend not exercised: no Consul agent answered at %s: %v", addr, err)
		return out
	}
	resp.Body.Close()
	c, err := NewConsul(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.waitTime = 2 * time.Second
	out["consul"] = c
	return out
}

func TestBackendKVGetPutWatch(t *testing.T) {
	for name, b := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			key := "herald-test/" + t.Name()[len("TestBackendKVGetPutWatch/"):] + "/policy"
			if _, _, err := b.Get(ctx, key+"-missing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing key: want ErrNotFound, got %v", err)
			}
			if err := b.Put(ctx, key, []byte("v1")); err != nil {
				t.Fatal(err)
			}
			v, idx, err := b.Get(ctx, key)
			if err != nil || string(v) != "v1" {
				t.Fatalf("get: %q %v", v, err)
			}
			got := make(chan string, 1)
			go func() {
				v, _, err := b.Watch(ctx, key, idx)
				if err != nil {
					got <- "error: " + err.Error()
					return
				}
				got <- string(v)
			}()
			time.Sleep(50 * time.Millisecond)
			if err := b.Put(ctx, key, []byte("v2")); err != nil {
				t.Fatal(err)
			}
			select {
			case s := <-got:
				if s != "v2" {
					t.Fatalf("watch returned %q, want v2", s)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("watch did not see the change")
			}
		})
	}
}

func TestBackendRegisterListsOnlyLiveInstances(t *testing.T) {
	for name, b := range backends(t) {
		if name == "consul" {
			continue // Consul's liveness is its HTTP check, exercised by the region tests
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			in := Instance{Service: "herald-region", ID: "eu-west-1-a", Address: "127.0.0.1:8101", Meta: map[string]string{"region": "eu-west-1"}}
			if err := b.Register(ctx, in); err != nil {
				t.Fatal(err)
			}
			list, err := b.Instances(ctx, "herald-region")
			if err != nil || len(list) != 1 || list[0].Meta["region"] != "eu-west-1" {
				t.Fatalf("instances: %+v %v", list, err)
			}
			// Without a heartbeat the registration expires after the TTL (2s here).
			time.Sleep(2100 * time.Millisecond)
			if list, _ := b.Instances(ctx, "herald-region"); len(list) != 0 {
				t.Fatalf("stale instance still listed: %+v", list)
			}
		})
	}
}

func TestKeepRefreshesAndDeregistersOnStop(t *testing.T) {
	f, err := NewFile(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stop, err := Keep(ctx, f, Instance{Service: "herald-gateway", ID: "g1", Address: "127.0.0.1:8080"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // longer than the TTL: only heartbeats keep it listed
	if list, _ := f.Instances(ctx, "herald-gateway"); len(list) != 1 {
		t.Fatalf("heartbeat did not keep the instance: %+v", list)
	}
	stop()
	if list, _ := f.Instances(ctx, "herald-gateway"); len(list) != 0 {
		t.Fatalf("instance still listed after stop: %+v", list)
	}
}

func TestFileBackendRejectsPathTraversal(t *testing.T) {
	f, err := NewFile(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"../etc/passwd", "a//b", "/abs", "a/./b"} {
		if err := f.Put(context.Background(), key, []byte("x")); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantKey string
	}{
		{"file ok", Config{Backend: "file", Path: "/tmp/x", TTL: time.Second}, ""},
		{"consul from address", Config{Backend: "file", ConsulAddr: "127.0.0.1:8500", TTL: time.Second}, ""},
		{"unknown backend", Config{Backend: "etcd", TTL: time.Second}, "backend"},
		{"file without path", Config{Backend: "file", TTL: time.Second}, "path"},
		{"tiny ttl", Config{Backend: "file", Path: "/x", TTL: time.Millisecond}, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantKey == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantKey != "" && (err == nil || !strings.Contains(err.Error(), `"`+tt.wantKey+`"`)) {
				t.Fatalf("want error naming %s, got %v", tt.wantKey, err)
			}
		})
	}
}

func TestConsulTagsAreTheSortedMeta(t *testing.T) {
	got := tags(map[string]string{"region": "eu-west-1", "jurisdiction": "EU", "roles": "api"})
	want := []string{"jurisdiction=EU", "region=eu-west-1", "roles=api"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tags %v, want %v", got, want)
	}
}
