//go:build integration

package region_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region"
	"github.com/herald-notify/herald/region/regiontest"
)

// testRegion returns a config for a region private to this test: its own database, keyspace,
// topics and key prefix on the shared local servers.
func testRegion(t *testing.T) region.Config {
	t.Helper()
	suffix := regiontest.Letters()
	c := regiontest.Config(t, "zz-"+suffix+"-1", "EU", t.TempDir())
	c.Discovery.TTL = 5 * time.Second
	return c
}

func TestRegionMigrateIsIdempotentAndTopicsAreNamedForTheRegion(t *testing.T) {
	c := testRegion(t)
	ctx := testenv.Context(t, 2*time.Minute)
	log := slog.New(slog.DiscardHandler)
	for i := 0; i < 2; i++ {
		if err := region.Migrate(ctx, c, log); err != nil {
			t.Fatalf("migrate run %d: %v", i+1, err)
		}
	}
	s, err := region.OpenStores(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	topics, err := s.Kafka.Topics()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, tp := range topics {
		have[tp] = true
	}
	for _, tp := range c.Topics() {
		if !have[tp.Name] || !strings.HasPrefix(tp.Name, c.Name+".") {
			t.Errorf("topic %s missing or not named for the region", tp.Name)
		}
	}
}

func TestRegionRefusesStoresOfAnotherJurisdictionAndOnesItWasNotMigratedInto(t *testing.T) {
	c := testRegion(t)
	ctx := testenv.Context(t, 2*time.Minute)
	log := slog.New(slog.DiscardHandler)
	if err := region.Migrate(ctx, c, log); err != nil {
		t.Fatal(err)
	}
	// A region of another jurisdiction pointed at the EU stores: refused by OpenStores, and
	// by migrate, which joins it to nothing.
	other := c
	other.Name, other.Jurisdiction = "zz-other-2", "US"
	if _, err := region.OpenStores(ctx, other); !errors.Is(err, region.ErrWrongRegion) {
		t.Fatalf("another jurisdiction's region: want ErrWrongRegion, got %v", err)
	}
	if err := region.Migrate(ctx, other, log); !errors.Is(err, region.ErrWrongRegion) {
		t.Fatalf("migrating another jurisdiction's region into the stores: want ErrWrongRegion, got %v", err)
	}
	// A region of the same jurisdiction shares them once migrated into them, not before.
	sibling := c
	sibling.Name = "zz-other-3"
	if _, err := region.OpenStores(ctx, sibling); !errors.Is(err, region.ErrNotMigrated) {
		t.Fatalf("a sibling not migrated in: want ErrNotMigrated, got %v", err)
	}
	if err := region.Migrate(ctx, sibling, log); err != nil {
		t.Fatalf("migrating the sibling region: %v", err)
	}
	s, err := region.OpenStores(ctx, sibling)
	if err != nil {
		t.Fatalf("the sibling region after migrate: %v", err)
	}
	s.Close()
	unmigrated := c
	unmigrated.Postgres = testenv.Postgres(t)
	if _, err := region.OpenStores(ctx, unmigrated); err == nil || !strings.Contains(err.Error(), "migrate") {
		t.Fatalf("want a not-migrated error, got %v", err)
	}
}

func TestRegionServesReadinessRegistersAndDrainsOnShutdown(t *testing.T) {
	c := testRegion(t)
	c.Listen = regiontest.FreePort(t)
	ctx := testenv.Context(t, 2*time.Minute)
	if err := region.Migrate(ctx, c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- region.Run(runCtx, c, slog.New(slog.DiscardHandler), "test") }()

	var rep struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := testenv.RegionClient(t).Get("https://" + c.Listen + "/readyz")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&rep)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v %+v", err, rep)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, dep := range []string{"postgres", "cassandra", "redis", "kafka"} {
		if rep.Checks[dep] != "ok" {
			t.Errorf("check %s = %q", dep, rep.Checks[dep])
		}
	}
	disc, err := discovery.Open(c.Discovery)
	if err != nil {
		t.Fatal(err)
	}
	list, err := disc.Instances(ctx, region.ServiceName)
	if err != nil || len(list) != 1 || list[0].Meta["region"] != c.Name || list[0].Address != c.Listen {
		t.Fatalf("discovery: %+v %v", list, err)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("region did not stop within 30s of cancellation")
	}
	if list, _ := disc.Instances(ctx, region.ServiceName); len(list) != 0 {
		t.Fatalf("still registered after shutdown: %+v", list)
	}
	if _, err := testenv.RegionClient(t).Get(fmt.Sprintf("https://%s/healthz", c.Listen)); err == nil {
		t.Fatal("listener still open after shutdown")
	}
}
