package sim

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestRingKeepsTheNewestAndOverwritesTheOldest(t *testing.T) {
	r := NewRing(3, 0)
	for i := range 5 {
		r.Add(&Record{To: "a", ID: fmt.Sprint(i)})
	}
	got := r.Query("", 0)
	if len(got) != 3 || got[0].ID != "2" || got[2].ID != "4" {
		t.Fatalf("got %+v", got)
	}
}

func TestRingQueryFiltersByRecipientAndLimits(t *testing.T) {
	r := NewRing(10, 0)
	for i := range 6 {
		r.Add(&Record{To: []string{"a", "b"}[i%2], ID: fmt.Sprint(i)})
	}
	tests := []struct {
		to      string
		limit   int
		wantIDs string
	}{
		{"a", 0, "0,2,4"}, {"b", 2, "3,5"}, {"", 1, "5"}, {"nobody", 0, ""},
	}
	for _, tt := range tests {
		var ids []string
		for _, rec := range r.Query(tt.to, tt.limit) {
			ids = append(ids, rec.ID)
		}
		if strings.Join(ids, ",") != tt.wantIDs {
			t.Errorf("Query(%q, %d) = %v, want %s", tt.to, tt.limit, ids, tt.wantIDs)
		}
	}
}

func TestRingQueryAfterReturnsOnlyNewerRecords(t *testing.T) {
	r := NewRing(10, 0)
	for i := range 6 {
		r.Add(&Record{To: []string{"a", "b"}[i%2], ID: fmt.Sprint(i)}) // seq i+1
	}
	tests := []struct {
		to      string
		after   uint64
		limit   int
		wantIDs string
	}{
		{"", 0, 0, "0,1,2,3,4,5"}, {"", 4, 0, "4,5"}, {"a", 2, 0, "2,4"}, {"", 3, 2, "4,5"}, {"", 6, 0, ""}, {"", 99, 0, ""},
	}
	for _, tt := range tests {
		var ids []string
		for _, rec := range r.QueryAfter(tt.to, tt.after, tt.limit) {
			ids = append(ids, rec.ID)
		}
		if strings.Join(ids, ",") != tt.wantIDs {
			t.Errorf("QueryAfter(%q, %d, %d) = %v, want %s", tt.to, tt.after, tt.limit, ids, tt.wantIDs)
		}
	}
}

func TestRingClearForgetsOnlyWhatCameBefore(t *testing.T) {
	r := NewRing(10, 0)
	r.Add(&Record{To: "a"})
	r.Clear()
	r.Add(&Record{To: "a", ID: "after"})
	if got := r.Query("a", 0); len(got) != 1 || got[0].ID != "after" {
		t.Fatalf("got %+v", got)
	}
}

func TestRingCutsLargePayloadsToValidJSON(t *testing.T) {
	r := NewRing(2, 8)
	r.Add(&Record{Payload: json.RawMessage(`{"body":"0123456789"}`)})
	got := r.Query("", 0)[0]
	var s string
	if !got.Truncated || json.Unmarshal(got.Payload, &s) != nil || s != `{"body":` {
		t.Fatalf("got %+v", got)
	}
}

func TestRingConcurrentAddsLoseNothingWithinCapacity(t *testing.T) {
	r := NewRing(10_000, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				r.Add(&Record{To: fmt.Sprint(g), ID: fmt.Sprint(i)})
			}
		})
	}
	wg.Wait()
	got := r.Query("", 0)
	if len(got) != 8000 {
		t.Fatalf("%d records, want 8000", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Fatal("records out of order")
		}
	}
}

func BenchmarkRingAdd(b *testing.B) {
	r := NewRing(100_000, 0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Add(&Record{To: "x"})
		}
	})
}
