package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/herald-notify/herald/region/notify"
)

func TestSMTPRepliesAreBouncesOnlyWhenTheyAreAboutTheAddress(t *testing.T) {
	for _, tc := range []struct {
		code     int
		enhanced string
		class    Class
		bounce   string
	}{
		{550, "5.1.1", Permanent, BounceHard},  // no such user
		{550, "5.1.2", Permanent, BounceHard},  // no such domain
		{553, "5.1.3", Permanent, BounceHard},  // bad syntax
		{556, "5.1.10", Permanent, BounceHard}, // null MX
		{550, "5.2.1", Permanent, BounceHard},  // mailbox disabled
		{552, "5.2.2", Permanent, BounceSoft},  // mailbox full, said as permanent
		{452, "4.2.2", Transient, BounceSoft},  // mailbox full
		{450, "4.2.1", Transient, BounceSoft},  // mailbox unavailable for now
		{550, "5.7.1", Permanent, ""},          // policy or content: not the address
		{554, "5.3.4", Permanent, ""},          // message too big
		{421, "4.3.2", Transient, ""},          // server shutting down
		{451, "4.4.1", Transient, ""},          // no answer from host
		{535, "5.7.8", Transient, ""},          // our credentials
		{550, "", Permanent, ""},               // no enhanced code: not known to be the address
	} {
		t.Run(fmt.Sprintf("%d %s", tc.code, tc.enhanced), func(t *testing.T) {
			se := classifySMTPReply(tc.code, tc.enhanced, errors.New("x"))
			if se.Class != tc.class || se.Bounce != tc.bounce {
				t.Fatalf("class %v bounce %q, want %v %q", se.Class, se.Bounce, tc.class, tc.bounce)
			}
		})
	}
}

func TestTwilioErrorsAreBouncesOnlyForTheNumber(t *testing.T) {
	for code, want := range map[int]string{21211: BounceHard, 21614: BounceHard, 21610: BounceUnsubscribed, 21602: "", 21606: ""} {
		if got := classifyTwilio(400, code, 0).Bounce; got != want {
			t.Errorf("Twilio %d: bounce %q, want %q", code, got, want)
		}
	}
	if got := classifyTwilio(503, 20500, 0).Bounce; got != "" {
		t.Errorf("a server error is a bounce: %q", got)
	}
}

// fakeSuppressor counts soft bounces per address by notification, as region/suppress does.
type fakeSuppressor struct {
	mu         sync.Mutex
	limit      int
	suppressed map[string]string // address -> reason
	soft       map[string]map[string]bool
	down       bool
}

func (f *fakeSuppressor) Reason(_ context.Context, _, _, address string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.suppressed[address], nil
}

func (f *fakeSuppressor) Suppress(_ context.Context, _, _, _, address, reason, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("postgres down")
	}
	if _, ok := f.suppressed[address]; !ok {
		f.suppressed[address] = reason
	}
	return nil
}

func (f *fakeSuppressor) SoftBounce(ctx context.Context, app, user, channel, address, notification, detail string) (bool, error) {
	f.mu.Lock()
	if f.soft[address] == nil {
		f.soft[address] = map[string]bool{}
	}
	f.soft[address][notification] = true
	n := len(f.soft[address])
	f.mu.Unlock()
	if n < f.limit {
		return false, nil
	}
	return true, f.Suppress(ctx, app, user, channel, address, "bounced", detail)
}

func TestBouncesPutTheAddressOnTheSuppressionList(t *testing.T) {
	hard := &SendError{Class: Permanent, Status: "550", Reason: "5.1.1", Bounce: BounceHard}
	full := func() error { return &SendError{Class: Transient, Status: "452", Reason: "4.2.2", Bounce: BounceSoft} }
	stop := &SendError{Class: Permanent, Status: "400", Reason: "21610", Bounce: BounceUnsubscribed}
	policy := &SendError{Class: Permanent, Status: "550", Reason: "5.7.1"}
	for _, tc := range []struct {
		name        string
		channel     string
		errs        []error
		sends       int // notifications sent, one attempt each
		wantReason  string
		wantState   string // of the last notification
		wantRetried bool   // the last notification went to a retry topic
		wantSent    int    // requests the provider got (0: as many as sends)
	}{
		{"hard bounce", notify.Email, []error{hard}, 1, "bounced", notify.StateFailed, false, 0},
		{"policy refusal", notify.Email, []error{policy}, 1, "", notify.StateFailed, false, 0},
		{"one soft bounce is retried", notify.Email, []error{full()}, 1, "", "", true, 0},
		{"third notification to soft-bounce suppresses", notify.Email, []error{full(), full(), full()}, 3, "bounced", notify.StateFailed, false, 0},
		{"sms stop", notify.SMS, []error{stop}, 1, "unsubscribed", notify.StateFailed, false, 0},
		{"a later task to a bounced address is not sent", notify.Email, []error{hard}, 2, "bounced", notify.StateSuppressed, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sup := &fakeSuppressor{limit: 3, suppressed: map[string]string{}, soft: map[string]map[string]bool{}}
			kind := KindSMTP
			if tc.channel == notify.SMS {
				kind = KindSMS
			}
			p := &fakeProvider{name: kind, errs: tc.errs}
			f := &fixture{log: &fakeLog{}, devs: &fakeDevices{}, prod: &fakeProducer{}}
			f.d = newDispatcher(DefaultConfig(), "zz-test-1", Deps{Deliveries: f.log, Devices: f.devs, Producer: f.prod, Logger: slog.New(slog.DiscardHandler),
				Suppress: sup}, map[string][2]Provider{kind: {p, nil}})
			for i := range tc.sends {
				f.prod.msgs = nil
				task := sampleTask(tc.channel)
				task.NotificationID = fmt.Sprintf("n%d", i)
				task.Target = notify.Target{Email: "ada@example.com", Phone: "+447700900001"}
				if err := f.d.process(context.Background(), task, nil); err != nil {
					t.Fatal(err)
				}
			}
			addr := "ada@example.com"
			if tc.channel == notify.SMS {
				addr = "+447700900001"
			}
			if got := sup.suppressed[addr]; got != tc.wantReason {
				t.Fatalf("suppressed as %q, want %q", got, tc.wantReason)
			}
			retried := len(f.prod.msgs) == 1
			if retried != tc.wantRetried {
				t.Fatalf("retried %v, want %v (%+v)", retried, tc.wantRetried, f.prod.msgs)
			}
			if want := cmp.Or(tc.wantSent, tc.sends); len(p.sent) != want {
				t.Fatalf("the provider got %d requests, want %d", len(p.sent), want)
			}
			if tc.wantState != "" {
				last := f.log.states[len(f.log.states)-1]
				if last.State != tc.wantState {
					t.Fatalf("last state %+v, want %s", last, tc.wantState)
				}
			}
		})
	}
}
