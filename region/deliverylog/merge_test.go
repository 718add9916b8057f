package deliverylog

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/region/notify"
)

func st(user, channel, state string) State {
	return State{UserID: user, Channel: channel, State: state}
}

func TestMergeStatesOrdersByUserThenChannelAndTheDeliveryWins(t *testing.T) {
	tests := []struct {
		name      string
		states    []State
		delivered []State
		limit     int
		want      string
	}{
		{"only states", []State{st("a", "email", "queued"), st("b", "push", "delivered")}, nil, 10, "a/email/queued b/push/delivered"},
		{"only deliveries", nil, []State{st("a", "in_app", "delivered"), st("b", "in_app", "delivered")}, 10, "a/in_app/delivered b/in_app/delivered"},
		{"interleaved per user", []State{st("a", "email", "queued"), st("a", "sms", "queued"), st("b", "email", "failed")},
			[]State{st("a", "in_app", "delivered"), st("b", "in_app", "delivered")}, 10,
			"a/email/queued a/in_app/delivered a/sms/queued b/email/failed b/in_app/delivered"},
		{"deferred then delivered: the delivery wins", []State{st("a", "in_app", "deferred"), st("a", "push", "deferred")},
			[]State{st("a", "in_app", "delivered")}, 10, "a/in_app/delivered a/push/deferred"},
		{"limit cuts the merge", []State{st("a", "email", "queued"), st("c", "email", "queued")},
			[]State{st("a", "in_app", "delivered"), st("b", "in_app", "delivered")}, 3, "a/email/queued a/in_app/delivered b/in_app/delivered"},
		{"bytewise order, as Cassandra sorts text", []State{st("Z", "email", "queued")}, []State{st("a", "in_app", "delivered"), st("Ä", "in_app", "delivered")}, 10,
			"Z/email/queued a/in_app/delivered Ä/in_app/delivered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keys(mergeStates(tt.states, tt.delivered, tt.limit)); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func keys(ss []State) string {
	var parts []string
	for _, s := range ss {
		parts = append(parts, s.UserID+"/"+s.Channel+"/"+s.State)
	}
	return strings.Join(parts, " ")
}

// TestPagingThroughBothTablesReturnsEveryStateOnce pages with random limits over random
// notifications, reading each source as States' queries do, and checks that the pages put
// together are every key once, in order.
func TestPagingThroughBothTablesReturnsEveryStateOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	channels := []string{notify.Email, notify.InApp, notify.Push, notify.SMS}
	for round := range 300 {
		var states, delivered []State
		want := map[string]string{}
		for u := range 1 + rng.IntN(40) {
			user := fmt.Sprintf("u%03d", u)
			for _, ch := range channels {
				switch rng.IntN(4) {
				case 0: // not a channel of this send
				case 1:
					states = append(states, st(user, ch, "queued"))
					want[user+"/"+ch] = "queued"
				default:
					if ch == notify.InApp {
						delivered = append(delivered, st(user, ch, notify.StateDelivered))
						if rng.IntN(3) == 0 { // deferred first
							states = append(states, st(user, ch, notify.StateDeferred))
						}
						want[user+"/"+ch] = notify.StateDelivered
					}
				}
			}
		}
		byKey := func(a, b State) int { return strings.Compare(a.UserID+"\x00"+a.Channel, b.UserID+"\x00"+b.Channel) }
		slices.SortFunc(states, byKey)
		var got []State
		afterUser, afterChannel := "", ""
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatalf("round %d: paging does not end", round)
			}
			limit := 1 + rng.IntN(7)
			var s, d []State
			for _, x := range states { // (user_id, channel) > cursor LIMIT limit
				if after(x.UserID, x.Channel, afterUser, afterChannel) && len(s) < limit {
					s = append(s, x)
				}
			}
			n := 0
			for _, x := range delivered { // user_id >= afterUser LIMIT limit+1, then filtered
				if x.UserID >= afterUser && n < limit+1 {
					n++
					if after(x.UserID, x.Channel, afterUser, afterChannel) {
						d = append(d, x)
					}
				}
			}
			page := mergeStates(s, d, limit)
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			last := page[len(page)-1]
			afterUser, afterChannel = last.UserID, last.Channel
		}
		seen := map[string]bool{}
		for i, g := range got {
			k := g.UserID + "/" + g.Channel
			if seen[k] {
				t.Fatalf("round %d: %s twice", round, k)
			}
			seen[k] = true
			if want[k] != g.State {
				t.Fatalf("round %d: %s is %q, want %q", round, k, g.State, want[k])
			}
			if i > 0 && !after(g.UserID, g.Channel, got[i-1].UserID, got[i-1].Channel) {
				t.Fatalf("round %d: %s out of order", round, k)
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("round %d: %d keys, want %d", round, len(seen), len(want))
		}
	}
}

func TestDeliveredAfterTakesEachRecipientOnceInKeyOrderFromRowsAndSets(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	rows := []State{{UserID: "b", Channel: notify.InApp, State: notify.StateDelivered, UpdatedAt: t0}}
	sets := []deliveredSet{
		{users: []string{"d", "a", "b"}, at: t1},
		{users: []string{"c", "a"}, at: t0}, // a chunk repeated: a again, earlier
	}
	tests := []struct {
		name                    string
		afterUser, afterChannel string
		limit                   int
		want                    string
	}{
		{"from the start", "", "", 10, "a b c d"},
		{"limit", "", "", 2, "a b"},
		{"after a user's in-app key", "b", notify.InApp, 10, "c d"},
		{"after a user's email key: the same user's in-app is still ahead", "b", "email", 10, "b c d"},
		{"after a user's sms key: the same user's in-app is behind", "b", "sms", 10, "c d"},
		{"past the end", "z", "", 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := deliveredAfter("n1", rows, sets, tt.afterUser, tt.afterChannel, tt.limit)
			var users []string
			for _, s := range got {
				if s.NotificationID != "n1" || s.Channel != notify.InApp || s.State != notify.StateDelivered {
					t.Fatalf("state %+v", s)
				}
				users = append(users, s.UserID)
			}
			if strings.Join(users, " ") != tt.want {
				t.Fatalf("got %q, want %q", strings.Join(users, " "), tt.want)
			}
		})
	}
	// The latest time of a recipient found twice.
	for _, s := range deliveredAfter("n1", rows, sets, "", "", 10) {
		if (s.UserID == "a" || s.UserID == "b") && !s.UpdatedAt.Equal(t1) {
			t.Fatalf("%s delivered at %v, want the later %v", s.UserID, s.UpdatedAt, t1)
		}
	}
}
