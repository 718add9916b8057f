package deliverylog

import (
	"testing"
	"time"

	"github.com/herald-notify/herald/region/notify"
)

func TestAStatesFinalReceiptSetsItWhateverTheDispatcherWroteOrWhetherItWroteYet(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name                 string
		state                string
		receipts             map[string]time.Time
		codes                map[string]string
		want, reason, detail string
		first                string
	}{
		{"no receipt", notify.StateDispatched, nil, nil, notify.StateDispatched, "", "", ""},
		{"sent only", notify.StateDispatched, map[string]time.Time{"sent": t0}, nil, notify.StateDispatched, "", "", "sent"},
		{"delivered", notify.StateDispatched, map[string]time.Time{"sent": t0, "delivered": t0.Add(time.Second)}, nil, notify.StateDelivered, "", "", "sent"},
		{"delivered before the dispatcher wrote", "", map[string]time.Time{"delivered": t0}, nil, notify.StateDelivered, "", "", "delivered"},
		{"sent before the dispatcher wrote", "", map[string]time.Time{"sent": t0}, nil, notify.StateDispatched, "", "", "sent"},
		{"undelivered after delivered", notify.StateDispatched, map[string]time.Time{"delivered": t0, "undelivered": t0.Add(time.Second)},
			map[string]string{"undelivered": "30005"}, notify.StateFailed, "", "the provider reported it undelivered (carrier error 30005)", "delivered"},
		{"one instant, name order", notify.StateDispatched, map[string]time.Time{"sent": t0, "delivered": t0}, nil, notify.StateDelivered, "", "", "delivered"},
	} {
		s := State{State: c.state, UpdatedAt: t0.Add(-time.Minute)}
		withReceipts(&s, c.receipts, c.codes)
		if s.State != c.want || s.Reason != c.reason || s.Detail != c.detail {
			t.Errorf("%s: %q %q %q, want %q %q %q", c.name, s.State, s.Reason, s.Detail, c.want, c.reason, c.detail)
		}
		if len(s.Receipts) != len(c.receipts) || (c.first != "" && s.Receipts[0].Status != c.first) {
			t.Errorf("%s: receipts %+v", c.name, s.Receipts)
		}
	}
}
