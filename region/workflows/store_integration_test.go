//go:build integration

package workflows_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/regiontest"
	"github.com/herald-notify/herald/region/workflows"
)

func definition(name string) wire.Workflow {
	return wire.Workflow{Name: name, Type: "social", Category: "comments", Steps: []wire.WorkflowStep{
		{ID: "chat", Type: "in_app", TemplateID: "comment"},
		{ID: "wait", Type: "delay", Duration: "1h"},
		{ID: "nudge", Type: "push", TemplateID: "comment", If: []wire.WorkflowCondition{{Step: "chat", Is: "unread"}}},
	}}
}

// Versions come from the gateway and may arrive late or twice (a push retried, two regions of
// the jurisdiction pushed the same version onto their shared database): every version is kept
// as first stored, the latest is the highest, and an older delete changes nothing.
func TestVersionsArrivingOutOfOrderOrTwiceKeepTheHighestAsLatest(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, time.Minute)
	s := workflows.NewStore(regiontest.Migrated(t, c))

	if _, created, err := s.Put(ctx, "app", "wf", 5, definition("five")); err != nil || !created {
		t.Fatalf("version 5: created=%v %v", created, err)
	}
	if _, created, err := s.Put(ctx, "app", "wf", 3, definition("three")); err != nil || created {
		t.Fatalf("late version 3: created=%v %v", created, err)
	}
	again, _, err := s.Put(ctx, "app", "wf", 5, definition("five, pushed again with another body"))
	if err != nil || again.Name != "five" {
		t.Fatalf("version 5 again: %+v %v, want the first body kept", again, err)
	}
	latest, err := s.Latest(ctx, "app", "wf")
	if err != nil || latest.Version != 5 || latest.Name != "five" {
		t.Fatalf("latest: %+v %v", latest, err)
	}
	if v3, err := s.Version(ctx, "app", "wf", 3); err != nil || v3.Name != "three" {
		t.Fatalf("version 3: %+v %v", v3, err)
	}
	if err := s.Delete(ctx, "app", "wf", 4); !errors.Is(err, workflows.ErrNotFound) {
		t.Fatalf("a delete older than the latest: %v, want not found", err)
	}
	if _, err := s.Latest(ctx, "app", "wf"); err != nil {
		t.Fatalf("after an older delete: %v", err)
	}
	if err := s.Delete(ctx, "app", "wf", 6); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Latest(ctx, "app", "wf"); !errors.Is(err, workflows.ErrNotFound) {
		t.Fatalf("latest after delete: %v", err)
	}
	if v5, err := s.Version(ctx, "app", "wf", 5); err != nil || v5.Name != "five" {
		t.Fatalf("a pinned version after delete: %+v %v", v5, err)
	}
	if _, _, err := s.Put(ctx, "app", "wf", 5, definition("five")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Latest(ctx, "app", "wf"); !errors.Is(err, workflows.ErrNotFound) {
		t.Fatalf("a version older than the delete brought the workflow back: %v", err)
	}
	if back, _, err := s.Put(ctx, "app", "wf", 7, definition("seven")); err != nil || back.Version != 7 {
		t.Fatalf("a later version: %+v %v", back, err)
	}
	if latest, err := s.Latest(ctx, "app", "wf"); err != nil || latest.Name != "seven" {
		t.Fatalf("latest after a later put: %+v %v", latest, err)
	}
	if _, err := s.Latest(ctx, "other-app", "wf"); !errors.Is(err, workflows.ErrNotFound) {
		t.Fatalf("another app sees the workflow: %v", err)
	}
}

// Saves without the gateway's version, at once from many callers, each get a version of their
// own: none is lost under another's number.
func TestConcurrentSavesWithoutAVersionEachGetTheirOwn(t *testing.T) {
	c := regiontest.Config(t, "zz-"+regiontest.Letters()+"-1", "EU", t.TempDir())
	ctx := testenv.Context(t, time.Minute)
	s := workflows.NewStore(regiontest.Migrated(t, c))
	const n = 16
	got := make([]workflows.Workflow, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w, _, err := s.Put(ctx, "app", "wf", 0, definition(fmt.Sprint("save ", i)))
			if err != nil {
				t.Error(err)
			}
			got[i] = w
		})
	}
	wg.Wait()
	seen := map[int64]string{}
	for _, w := range got {
		if prev, dup := seen[w.Version]; dup {
			t.Fatalf("version %d answered to %q and %q", w.Version, prev, w.Name)
		}
		seen[w.Version] = w.Name
		stored, err := s.Version(ctx, "app", "wf", w.Version)
		if err != nil || stored.Name != w.Name {
			t.Fatalf("version %d holds %+v (%v), answered %q", w.Version, stored, err, w.Name)
		}
	}
	if latest, err := s.Latest(ctx, "app", "wf"); err != nil || latest.Version != n {
		t.Fatalf("latest %+v %v, want version %d", latest, err, n)
	}
}
