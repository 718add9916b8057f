//go:build integration

package redis_test

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/redis"
	"github.com/herald-notify/herald/platform/testenv"
)

func TestRedisSetGetWithTTLUnderPrefix(t *testing.T) {
	c := testenv.Redis(t)
	ctx := testenv.Context(t, 10*time.Second)
	cl, err := redis.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	key := c.Key("dedup", "n1", "u1", "push")
	if !strings.HasPrefix(key, c.Prefix) {
		t.Fatalf("key %q lacks prefix %q", key, c.Prefix)
	}
	if err := cl.Set(ctx, key, "1", 2*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := cl.Get(ctx, key).Result(); err != nil || v != "1" {
		t.Fatalf("get: %q %v", v, err)
	}
	if ttl := cl.PTTL(ctx, key).Val(); ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("ttl %v", ttl)
	}
	// SET NX on a claimed key fails.
	if ok, _ := cl.SetNX(ctx, key, "2", time.Minute).Result(); ok {
		t.Fatal("SETNX succeeded on an existing key")
	}
	time.Sleep(2100 * time.Millisecond)
	if n := cl.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("key outlived its TTL")
	}
}
