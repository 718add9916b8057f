package receipts

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/sealtoken"
)

type memPrefs struct {
	mu  sync.Mutex
	off []string
}

func (p *memPrefs) TurnOff(_ context.Context, app, user, category, channel string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := app + "/" + user + "/" + category + "/" + channel
	if slices.Contains(p.off, k) {
		return false, nil
	}
	p.off = append(p.off, k)
	return true, nil
}

type notResident map[string]bool

func (n notResident) NotResident(_ context.Context, _, _ string, ids []string) ([]int, error) {
	var out []int
	for i, id := range ids {
		if n[id] {
			out = append(out, i)
		}
	}
	return out, nil
}

var mailClaim = Claim{App: "acme", Notification: "n1", User: "ada", Channel: notify.Email, Tier: notify.Marketing, Category: "promo", Provider: "smtp"}

func emailService(t *testing.T) (*Service, *memProducer, *memSuppress, *memLog, *memPrefs) {
	t.Helper()
	s, p, sup, log := newService(t)
	k, err := sealtoken.NewKeyring("eu-west-1", EmailPurpose, bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	prefs := &memPrefs{}
	s.EmailKeys, s.Prefs, s.Users = k, prefs, notResident{"gone": true}
	return s, p, sup, log, prefs
}

func ev(t *testing.T, s *Service, c Claim, event string) wire.SendGridEvent {
	t.Helper()
	tok, err := s.EmailKeys.Seal(c)
	if err != nil {
		t.Fatal(err)
	}
	e := wire.SendGridEvent{Event: event, Email: "Ada@Example.com", Timestamp: 1765098000, EventID: "e-" + event, Token: tok}
	if event == "bounce" {
		e.Type, e.Status, e.Reason = "bounce", "5.1.1", "550 5.1.1 no such user"
	}
	if event == "deferred" {
		e.Status = "4.2.2"
	}
	return e
}

// Every delivery's events, in any order and repeated, leave one final state, and each event an
// app is told of is produced once.
func TestSendGridEventsLeaveOneFinalStateInAnyOrderWithRepeats(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		events    []string
		final     string
		stages    []string
		hard      []string
		soft      int
		off       bool
		recorded  []string
		unchanged int
	}{
		{name: "delivered", events: []string{"processed", "delivered"}, final: StatusDelivered, stages: []string{"delivered/"},
			recorded: []string{StatusDelivered}, unchanged: 1},
		{name: "delivered twice", events: []string{"delivered", "delivered"}, final: StatusDelivered, stages: []string{"delivered/"},
			recorded: []string{StatusDelivered}, unchanged: 1},
		{name: "hard bounce", events: []string{"processed", "bounce"}, final: StatusBounced, stages: []string{"failed/bounced"},
			hard: []string{"Ada@Example.com/bounced"}, recorded: []string{StatusBounced}, unchanged: 1},
		{name: "delivered after the bounce (out of order)", events: []string{"bounce", "delivered"}, final: StatusBounced,
			stages: []string{"failed/bounced"}, hard: []string{"Ada@Example.com/bounced"}, recorded: []string{StatusBounced, StatusDelivered}},
		{name: "delivered then bounced later", events: []string{"delivered", "bounce"}, final: StatusBounced,
			stages: []string{"delivered/", "failed/bounced"}, hard: []string{"Ada@Example.com/bounced"}, recorded: []string{StatusBounced, StatusDelivered}},
		{name: "dropped", events: []string{"dropped"}, final: StatusBounced, stages: []string{"failed/bounced"},
			hard: []string{"Ada@Example.com/bounced"}, recorded: []string{StatusBounced}},
		{name: "deferred then delivered", events: []string{"deferred", "deferred", "delivered"}, final: StatusDelivered,
			stages: []string{"delivered/"}, soft: 1, recorded: []string{StatusDeferred, StatusDelivered}, unchanged: 1},
		{name: "spam report", events: []string{"delivered", "spamreport", "spamreport"}, final: StatusDelivered,
			stages: []string{"delivered/", "complained/"}, hard: []string{"Ada@Example.com/complained"}, off: true,
			recorded: []string{StatusComplained, StatusDelivered}, unchanged: 1},
		{name: "spam report before its delivered", events: []string{"spamreport", "delivered"}, final: StatusDelivered,
			stages: []string{"complained/", "delivered/"}, hard: []string{"Ada@Example.com/complained"}, off: true,
			recorded: []string{StatusComplained, StatusDelivered}},
		{name: "unsubscribe", events: []string{"delivered", "unsubscribe", "group_unsubscribe"}, final: StatusDelivered,
			stages: []string{"delivered/", "unsubscribed/"}, off: true, recorded: []string{StatusDelivered, StatusUnsubscribed}, unchanged: 1},
		{name: "open, click and types SendGrid may add", events: []string{"open", "click", "group_resubscribe", "brand_new"},
			recorded: nil, unchanged: 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, p, sup, log, prefs := emailService(t)
			var b wire.SendGridBatch
			for _, e := range c.events {
				b.Events = append(b.Events, ev(t, s, mailClaim, e))
			}
			out, err := s.SendGrid(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if out.Recorded != len(c.recorded) || out.Unchanged != c.unchanged || out.Skipped != 0 {
				t.Fatalf("outcome %+v", out)
			}
			if got := p.stages(t); !slices.Equal(got, c.stages) {
				t.Fatalf("events %v, want %v", got, c.stages)
			}
			if !slices.Equal(sup.hard, c.hard) || len(sup.soft) != c.soft {
				t.Fatalf("suppressed %v, soft %v", sup.hard, sup.soft)
			}
			if (len(prefs.off) == 1) != c.off || (c.off && prefs.off[0] != "acme/ada/promo/email") {
				t.Fatalf("turned off %v", prefs.off)
			}
			var got []string
			for st := range log.m["n1/ada/email"] {
				got = append(got, st)
			}
			sort.Strings(got)
			if !slices.Equal(got, c.recorded) {
				t.Fatalf("recorded %v, want %v", got, c.recorded)
			}
			have, _ := log.Receipts(ctx, "n1", "ada", "email")
			if Final(have) != c.final {
				t.Fatalf("final %q, want %q", Final(have), c.final)
			}
			// The same batch again (SendGrid retries, a replay) changes nothing.
			again, err := s.SendGrid(ctx, b)
			if err != nil || again.Recorded != 0 {
				t.Fatalf("again: %+v %v", again, err)
			}
			if got := p.stages(t); !slices.Equal(got, c.stages) {
				t.Fatalf("events after a repeat %v", got)
			}
		})
	}
}

func TestSendGridEventsThisRegionCannotOpenAreSkippedNotRefused(t *testing.T) {
	ctx := context.Background()
	s, p, _, _, _ := emailService(t)
	other, _ := sealtoken.NewKeyring("eu-west-1", Purpose, bytes.Repeat([]byte{8}, 32)) // same key, SMS purpose
	smsTok, _ := other.Seal(mailClaim)
	us, _ := sealtoken.NewKeyring("us-east-1", EmailPurpose, bytes.Repeat([]byte{8}, 32))
	usTok, _ := us.Seal(mailClaim)
	good := ev(t, s, mailClaim, "delivered")
	smsClaim := mailClaim
	smsClaim.Channel = notify.SMS
	gone := mailClaim
	gone.User = "gone"
	b := wire.SendGridBatch{Events: []wire.SendGridEvent{
		{Event: "delivered", Email: "a@b.c", Timestamp: 1, Token: ""},
		{Event: "delivered", Email: "a@b.c", Timestamp: 1, Token: smsTok},
		{Event: "delivered", Email: "a@b.c", Timestamp: 1, Token: usTok},
		{Event: "delivered", Email: "a@b.c", Timestamp: 1, Token: good.Token[:len(good.Token)-4] + "AAAA"},
		ev(t, s, smsClaim, "delivered"),
		ev(t, s, gone, "bounce"),
		good,
	}}
	out, err := s.SendGrid(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Skipped != 6 || out.Recorded != 1 || out.Events != 7 {
		t.Fatalf("outcome %+v", out)
	}
	if got := p.stages(t); !slices.Equal(got, []string{"delivered/"}) {
		t.Fatalf("events %v", got)
	}
}

func TestSendGridTransactionalComplaintSuppressesButKeepsTheCategory(t *testing.T) {
	s, _, sup, _, prefs := emailService(t)
	c := mailClaim
	c.Tier, c.Category = notify.Transactional, "otp"
	if _, err := s.SendGrid(context.Background(), wire.SendGridBatch{Events: []wire.SendGridEvent{ev(t, s, c, "spamreport")}}); err != nil {
		t.Fatal(err)
	}
	if len(prefs.off) != 0 || !slices.Equal(sup.hard, []string{"Ada@Example.com/complained"}) {
		t.Fatalf("off %v, suppressed %v", prefs.off, sup.hard)
	}
}

func TestASendGridBatchWhoseEventKafkaRefusesFailsWholeAndItsRetryRecordsIt(t *testing.T) {
	ctx := context.Background()
	s, p, _, log, _ := emailService(t)
	p.err = errors.New("kafka down")
	b := wire.SendGridBatch{Events: []wire.SendGridEvent{ev(t, s, mailClaim, "bounce")}}
	if _, err := s.SendGrid(ctx, b); err == nil {
		t.Fatal("taken without its event")
	}
	if len(log.m) != 0 {
		t.Fatalf("recorded without its event: %v", log.m)
	}
	p.err = nil
	if out, err := s.SendGrid(ctx, b); err != nil || out.Recorded != 1 {
		t.Fatalf("%+v %v", out, err)
	}
}

func TestSendGridStatusMapsEveryEventType(t *testing.T) {
	for _, c := range []struct{ event, typ, status, want, code string }{
		{"delivered", "", "", StatusDelivered, ""}, {"bounce", "bounce", "5.1.1", StatusBounced, "5.1.1"},
		{"bounce", "blocked", "5.7.1", StatusBounced, "5.7.1"}, {"dropped", "", "", StatusBounced, ""},
		{"deferred", "", "4.2.2", StatusDeferred, "4.2.2"}, {"spamreport", "", "", StatusComplained, ""},
		{"unsubscribe", "", "", StatusUnsubscribed, ""}, {"group_unsubscribe", "", "", StatusUnsubscribed, ""},
		{"processed", "", "", "", ""}, {"open", "", "", "", ""}, {"click", "", "", "", ""}, {"whatever", "", "", "", ""},
	} {
		st, code := SendGridStatus(wire.SendGridEvent{Event: c.event, Type: c.typ, Status: c.status})
		if st != c.want || code != c.code {
			t.Errorf("%s/%s: %q %q", c.event, c.typ, st, code)
		}
	}
}
