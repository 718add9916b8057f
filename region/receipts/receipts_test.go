package receipts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/sealtoken"
)

// permutations calls f with every ordering of xs.
func permutations(xs []string, f func([]string)) {
	var rec func(int)
	rec = func(k int) {
		if k == len(xs) {
			f(slices.Clone(xs))
			return
		}
		for i := k; i < len(xs); i++ {
			xs[k], xs[i] = xs[i], xs[k]
			rec(k + 1)
			xs[k], xs[i] = xs[i], xs[k]
		}
	}
	rec(0)
}

func TestTheFinalStatusOfReceiptsIsTheSameInEveryOrderAndWithRepeats(t *testing.T) {
	all := []string{StatusSent, StatusDelivered, StatusUndelivered, StatusFailed, "queued"}
	for mask := 1; mask < 1<<len(all); mask++ {
		var set []string
		for i, s := range all {
			if mask&(1<<i) != 0 {
				set = append(set, s)
			}
		}
		want := Final(set)
		permutations(set, func(order []string) {
			if got := Final(order); got != want {
				t.Fatalf("%v: final %q, in another order %q", order, got, want)
			}
			if got := Final(append(order, order...)); got != want {
				t.Fatalf("%v twice: final %q, once %q", order, got, want)
			}
		})
	}
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, ""}, {[]string{"queued", "sending"}, ""}, {[]string{StatusSent}, StatusSent},
		{[]string{StatusDelivered, StatusSent}, StatusDelivered}, {[]string{StatusDelivered, StatusUndelivered}, StatusUndelivered},
	} {
		if got := Final(c.in); got != c.want {
			t.Errorf("Final(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestBounceIsHardOnlyForNumbersNoTextReaches(t *testing.T) {
	for _, c := range []struct{ status, code, want string }{
		{StatusUndelivered, "30005", "hard"}, {StatusFailed, "30006", "hard"}, {StatusUndelivered, "30003", "soft"},
		{StatusUndelivered, "30007", ""}, {StatusUndelivered, "", ""}, {StatusDelivered, "30005", ""}, {StatusSent, "30003", ""},
	} {
		if got := Bounce(c.status, c.code); got != c.want {
			t.Errorf("Bounce(%s, %s) = %q, want %q", c.status, c.code, got, c.want)
		}
	}
}

func TestParseTwilioRefusesWhatTwilioNeverSendsNamingTheParameter(t *testing.T) {
	good := func() map[string][]string {
		return map[string][]string{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}, "To": {"+15551234567"}}
	}
	if st, code, sid, to, err := ParseTwilio(good()); err != nil || st != "delivered" || code != "" || sid != "SM1" || to != "+15551234567" {
		t.Fatalf("good: %s %s %s %s %v", st, code, sid, to, err)
	}
	for name, c := range map[string]struct {
		mut   func(map[string][]string)
		field string
	}{
		"no sid":            {func(p map[string][]string) { delete(p, "MessageSid") }, "MessageSid"},
		"empty sid":         {func(p map[string][]string) { p["MessageSid"] = []string{""} }, "MessageSid"},
		"two statuses":      {func(p map[string][]string) { p["MessageStatus"] = []string{"delivered", "failed"} }, "MessageStatus"},
		"unknown status":    {func(p map[string][]string) { p["MessageStatus"] = []string{"Delivered"} }, "MessageStatus"},
		"status with NUL":   {func(p map[string][]string) { p["MessageStatus"] = []string{"delivered\x00"} }, "MessageStatus"},
		"huge status":       {func(p map[string][]string) { p["MessageStatus"] = []string{string(bytes.Repeat([]byte("d"), 5000))} }, "MessageStatus"},
		"code not digits":   {func(p map[string][]string) { p["ErrorCode"] = []string{"30x05"} }, "ErrorCode"},
		"negative code":     {func(p map[string][]string) { p["ErrorCode"] = []string{"-1"} }, "ErrorCode"},
		"code given twice":  {func(p map[string][]string) { p["ErrorCode"] = []string{"1", "2"} }, "ErrorCode"},
		"two recipients":    {func(p map[string][]string) { p["To"] = []string{"+1", "+2"} }, "To"},
		"status null-ish":   {func(p map[string][]string) { p["MessageStatus"] = []string{"null"} }, "MessageStatus"},
		"status empty list": {func(p map[string][]string) { p["MessageStatus"] = []string{} }, "MessageStatus"},
	} {
		p := good()
		c.mut(p)
		_, _, _, _, err := ParseTwilio(p)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want a FieldError naming %s", name, err, c.field)
		}
	}
}

// memLog keeps receipts as delivery_status does: a set of statuses per delivery.
type memLog struct {
	mu sync.Mutex
	m  map[string]map[string]string
}

func (l *memLog) Receipts(_ context.Context, n, u, ch string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for s := range l.m[n+"/"+u+"/"+ch] {
		out = append(out, s)
	}
	return out, nil
}

func (l *memLog) AddReceipt(_ context.Context, n, u, ch, status, code string, _ time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]map[string]string{}
	}
	k := n + "/" + u + "/" + ch
	if l.m[k] == nil {
		l.m[k] = map[string]string{}
	}
	l.m[k][status] = code
	return nil
}

type memProducer struct {
	mu   sync.Mutex
	msgs []kafka.Message
	err  error
}

func (p *memProducer) Send(_ context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *memProducer) stages(t *testing.T) []string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.msgs {
		var b notify.EventBatch
		if err := json.Unmarshal(m.Value, &b); err != nil {
			t.Fatal(err)
		}
		for _, o := range b.Outcomes {
			out = append(out, o.Stage+"/"+o.Reason)
		}
	}
	return out
}

type memSuppress struct {
	mu   sync.Mutex
	hard []string
	soft []string
}

func (s *memSuppress) Suppress(_ context.Context, _, _, _, address, reason, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hard = append(s.hard, address+"/"+reason)
	return nil
}

func (s *memSuppress) SoftBounce(_ context.Context, _, _, _, address, _, _ string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.soft = append(s.soft, address)
	return false, nil
}

const authToken = "auth-token-1"

func newService(t *testing.T) (*Service, *memProducer, *memSuppress, *memLog) {
	t.Helper()
	k, err := sealtoken.NewKeyring("eu-west-1", Purpose, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	p, sup, log := &memProducer{}, &memSuppress{}, &memLog{}
	return &Service{Region: "eu-west-1", Keys: k, Deliveries: log, Producer: p, Suppress: sup,
		AuthToken: func(_ context.Context, _, name string) (string, bool) { return authToken, name == "twilio" }}, p, sup, log
}

var claim = Claim{App: "acme", Notification: "n1", User: "ada", Channel: notify.SMS, Tier: notify.Transactional, Category: "otp", Provider: "twilio"}

// callback is what Twilio posts for status to the URL of the delivery's token, signed.
func callback(t *testing.T, s *Service, status, code string) (string, wire.TwilioCallback) {
	t.Helper()
	u, err := CallbackURL(s.Keys, "https://eu.herald.example", claim)
	if err != nil {
		t.Fatal(err)
	}
	token := u[len("https://eu.herald.example"+TwilioPath):]
	p := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {status}, "To": {"+4915112345678"}, "AccountSid": {"AC1"}}
	if code != "" {
		p.Set("ErrorCode", code)
	}
	return token, wire.TwilioCallback{URL: u, Params: p, Signature: wire.TwilioSignature(authToken, u, p)}
}

func TestAReceiptThatMovesTheFinalStateOnProducesItsEventOnceWhateverTheOrder(t *testing.T) {
	ctx := context.Background()
	for _, order := range [][]string{
		{StatusSent, StatusDelivered}, {StatusDelivered, StatusSent}, {StatusDelivered, StatusDelivered, StatusSent, StatusDelivered},
	} {
		s, p, _, _ := newService(t)
		for _, st := range order {
			tok, cb := callback(t, s, st, "")
			if _, err := s.Twilio(ctx, tok, cb); err != nil {
				t.Fatalf("%v: %s: %v", order, st, err)
			}
		}
		if got := p.stages(t); !slices.Equal(got, []string{"delivered/"}) {
			t.Fatalf("%v: events %v, want one delivered", order, got)
		}
	}
}

func TestAnUndeliveredTextToANumberThatDoesNotExistFailsAsBouncedAndIsSuppressed(t *testing.T) {
	ctx := context.Background()
	s, p, sup, log := newService(t)
	for _, st := range []string{StatusSent, StatusUndelivered, StatusUndelivered} {
		tok, cb := callback(t, s, st, map[string]string{StatusUndelivered: "30005"}[st])
		if _, err := s.Twilio(ctx, tok, cb); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.stages(t); !slices.Equal(got, []string{"failed/bounced"}) {
		t.Fatalf("events %v", got)
	}
	if !slices.Equal(sup.hard, []string{"+4915112345678/bounced"}) {
		t.Fatalf("suppressed %v", sup.hard)
	}
	if log.m["n1/ada/sms"][StatusUndelivered] != "30005" {
		t.Fatalf("recorded %v", log.m)
	}
	// A delivered that comes after the failure changes nothing and tells nobody.
	tok, cb := callback(t, s, StatusDelivered, "")
	out, err := s.Twilio(ctx, tok, cb)
	if err != nil || out.Final != StatusUndelivered {
		t.Fatalf("late delivered: %+v %v", out, err)
	}
	if got := p.stages(t); len(got) != 1 {
		t.Fatalf("events after a late delivered: %v", got)
	}
}

func TestAReceiptIsRefusedUnlessTheRegionMintedItsTokenAndTwilioSignedIt(t *testing.T) {
	ctx := context.Background()
	s, p, _, _ := newService(t)
	tok, cb := callback(t, s, StatusDelivered, "")
	other, _ := sealtoken.NewKeyring("eu-west-1", "unsubscribe", bytes.Repeat([]byte{7}, 32))
	otherTok, _ := other.Seal(claim)
	cases := map[string]struct {
		token string
		mut   func(*wire.TwilioCallback)
		want  error
	}{
		"a token of another purpose, same key": {otherTok, func(*wire.TwilioCallback) {}, ErrNotFound},
		"a changed token":                      {tok[:len(tok)-3] + "AAA", func(*wire.TwilioCallback) {}, ErrNotFound},
		"a changed status":                     {tok, func(c *wire.TwilioCallback) { c.Params["MessageStatus"] = []string{"failed"} }, ErrSignature},
		"an added parameter":                   {tok, func(c *wire.TwilioCallback) { c.Params["ErrorCode"] = []string{"30005"} }, ErrSignature},
		"another token's URL":                  {tok, func(c *wire.TwilioCallback) { c.URL = "https://eu.herald.example" + TwilioPath + otherTok }, ErrSignature},
		"signed with another auth token": {tok, func(c *wire.TwilioCallback) {
			c.Signature = wire.TwilioSignature("not-it", c.URL, c.Params)
		}, ErrSignature},
		"no signature": {tok, func(c *wire.TwilioCallback) { c.Signature = "" }, ErrSignature},
	}
	for name, c := range cases {
		cb2 := cb
		cb2.Params = url.Values{}
		for k, v := range cb.Params {
			cb2.Params[k] = slices.Clone(v)
		}
		c.mut(&cb2)
		if _, err := s.Twilio(ctx, c.token, cb2); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if got := p.stages(t); len(got) != 0 {
		t.Fatalf("refused receipts produced %v", got)
	}
}

func TestAReceiptWhoseEventKafkaRefusesIsNotRecordedSoItsRepeatProducesIt(t *testing.T) {
	ctx := context.Background()
	s, p, _, log := newService(t)
	p.err = errors.New("kafka down")
	tok, cb := callback(t, s, StatusDelivered, "")
	if _, err := s.Twilio(ctx, tok, cb); err == nil {
		t.Fatal("a receipt whose event was not produced was answered as taken")
	}
	if len(log.m) != 0 {
		t.Fatalf("recorded without its event: %v", log.m)
	}
	p.err = nil
	if _, err := s.Twilio(ctx, tok, cb); err != nil {
		t.Fatal(err)
	}
	if got := p.stages(t); !slices.Equal(got, []string{"delivered/"}) {
		t.Fatalf("events %v", got)
	}
}
