//go:build integration

package inbox

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/cassandra"
	"github.com/herald-notify/herald/platform/migrate"
	"github.com/herald-notify/herald/platform/testenv"
	"github.com/herald-notify/herald/region/schema"
)

func newTestInbox(t *testing.T) (*Inbox, func() *Inbox) {
	t.Helper()
	c := testenv.Cassandra(t)
	ctx := testenv.Context(t, 2*time.Minute)
	s, err := cassandra.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ms, err := migrate.Load(schema.Cassandra(), "cql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Cassandra(ctx, s, ms); err != nil {
		t.Fatal(err)
	}
	return New(s, 24*time.Hour), func() *Inbox { return New(s, 24*time.Hour) }
}

// TestPagesAreTheSameWhetherASourceIsKnownShortOrNot reads an inbox spread over the four month
// buckets, with a topic feed, page after page, first with nothing known about its sources,
// then with the sources known short (every month read at once): the pages must be the same,
// and hold every item once, in order.
func TestPagesAreTheSameWhetherASourceIsKnownShortOrNot(t *testing.T) {
	in, fresh := newTestInbox(t)
	ctx := t.Context()
	now := time.Now().UTC()
	monthStart := func(i int) time.Time {
		return time.Date(now.Year(), now.Month()-time.Month(i), 1, 0, 0, 0, 0, time.UTC)
	}
	var want []Item // the user's inbox, newest first
	add := func(it Item, read bool) {
		if it.Topic == "" {
			if err := in.Write(ctx, it); err != nil {
				t.Fatal(err)
			}
			if read {
				if _, err := in.MarkRead(ctx, it.AppID, it.UserID, it, now); err != nil {
					t.Fatal(err)
				}
				at := now.Truncate(time.Millisecond)
				it.ReadAt = &at
			}
		} else if err := in.WriteTopicFeed(ctx, it); err != nil {
			t.Fatal(err)
		}
		it.UserID, it.CreatedAt = "u", it.CreatedAt.Truncate(time.Millisecond)
		want = append(want, it)
	}
	// Own items: 5 this month, none last month, 30 two months ago, 7 three months ago, every
	// third one read; feed items: 3 this month and 4 two months ago.
	for m, n := range []int{5, 0, 30, 7} {
		for i := range n {
			at := monthStart(m).Add(time.Duration(i+1) * time.Minute)
			if m == 0 {
				at = now.Add(-time.Duration(i+1) * time.Minute)
			}
			add(Item{AppID: "a", UserID: "u", NotificationID: fmt.Sprintf("own-%d-%02d", m, i), CreatedAt: at, Tier: "social", Category: "c"}, i%3 == 0)
		}
	}
	for m, n := range []int{3, 0, 4, 0} {
		for i := range n {
			at := monthStart(m).Add(time.Duration(i+1)*time.Hour + time.Second)
			if m == 0 {
				at = now.Add(-time.Duration(i+1)*time.Minute - time.Second)
			}
			add(Item{AppID: "a", Topic: "news", NotificationID: fmt.Sprintf("feed-%d-%d", m, i), CreatedAt: at, Tier: "social", Category: "c"}, false)
		}
	}
	sort.Slice(want, func(i, j int) bool { return before(want[i], want[j]) })
	subs := []Subscription{{Topic: "news", Since: monthStart(Buckets - 1)}}

	ids := func(items []Item) []string {
		out := make([]string, len(items))
		for i, it := range items {
			out[i] = it.NotificationID
		}
		return out
	}
	readAll := func(in *Inbox, limit int, unread bool) []string {
		var got []string
		var cur *Cursor
		for range 100 {
			items, next, err := in.Page(ctx, "a", "u", subs, cur, limit, unread, now)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ids(items)...)
			if next == "" {
				return got
			}
			cur, _ = DecodeCursor(next)
		}
		t.Fatal("more than 100 pages")
		return nil
	}
	for _, limit := range []int{1, 4, 20, 100} {
		for _, unread := range []bool{false, true} {
			var expect []string
			for _, it := range want {
				if !unread || it.ReadAt == nil {
					expect = append(expect, it.NotificationID)
				}
			}
			cold := fresh()
			first := readAll(cold, limit, unread) // learns which sources are short
			// Own items this month: 5, 3 of them unread.
			thisMonth := 5
			if unread {
				thisMonth = 3
			}
			if got, want := cold.short.has("own\x00a\x00u\x00"+fmt.Sprint(unread)), limit+1 > thisMonth; got != want {
				t.Fatalf("limit %d unread %v: own partitions noted short %v, want %v", limit, unread, got, want)
			}
			second := readAll(cold, limit, unread) // first pages read every month at once
			if !slices.Equal(first, expect) || !slices.Equal(second, expect) {
				t.Fatalf("limit %d unread %v:\n cold  %v\n warm  %v\n want  %v", limit, unread, first, second, expect)
			}
		}
	}
}
