// Package redis holds Herald's Redis client settings (go-redis) and key naming.
package redis

import (
	"context"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-notify/herald/platform/config"
)

// Config is the Redis block. Every key a component writes starts with Prefix, so regions that
// share one local server never share a key.
type Config struct {
	Addr     string `yaml:"addr" env:"HERALD_REDIS_ADDR"`
	Password string `yaml:"password" env:"HERALD_REDIS_PASSWORD"`
	DB       int    `yaml:"db"`
	Prefix   string `yaml:"prefix"`
}

// Defaults returns a Config for a local server.
func Defaults() Config { return Config{Addr: "127.0.0.1:6379"} }

// Validate checks the block; keys are relative, callers prefix them.
func (c Config) Validate() error {
	if err := config.HostPort("addr", c.Addr); err != nil {
		return err
	}
	if c.Prefix == "" || !strings.HasSuffix(c.Prefix, ":") {
		return config.Errorf("prefix", c.Prefix, `must be set and end with ":"`)
	}
	if c.DB < 0 || c.DB > 15 {
		return config.Errorf("db", fmt.Sprint(c.DB), "must be 0-15")
	}
	return nil
}

// Connect opens a client and checks the server answers.
func Connect(ctx context.Context, c Config) (*goredis.Client, error) {
	cl := goredis.NewClient(&goredis.Options{
		Addr:         c.Addr,
		Password:     c.Password,
		DB:           c.DB,
		DialTimeout:  3 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	})
	if err := cl.Ping(ctx).Err(); err != nil {
		_ = cl.Close()
		return nil, fmt.Errorf("connecting to redis %s: %w", c.Addr, err)
	}
	return cl, nil
}

// Key joins parts under the configured prefix: Key("dedup", id) = "<prefix>dedup:<id>".
func (c Config) Key(parts ...string) string {
	return c.Prefix + strings.Join(parts, ":")
}
