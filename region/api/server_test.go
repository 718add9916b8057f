package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/users"
)

type downProducer struct{ calls int }

func (p *downProducer) Send(context.Context, ...kafka.Message) error {
	p.calls++
	return fmt.Errorf("%w: leader not available", kafka.ErrUnavailable)
}

// residents is a UserStore where every user named is a resident.
type residents struct{ *users.Store }

func (residents) NotResident(context.Context, string, string, []string) ([]int, error) {
	return nil, nil
}

func TestSendAnswers503WithRetryAfterWhenKafkaCannotTakeTheEvent(t *testing.T) {
	gin.SetMode(gin.TestMode)
	p := &downProducer{}
	s := &Server{Region: "eu-west-1", Producer: p, Users: residents{}, Logger: slog.New(slog.DiscardHandler)}
	r := gin.New()
	s.Register(r)
	req := httptest.NewRequest("POST", "/v1/notifications", strings.NewReader(`{"type":"transactional","category":"otp","body":"123456","recipients":["ada"]}`))
	req.Header.Set(AppHeader, "app-1")
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if !strings.Contains(w.Body.String(), `"code":"unavailable"`) || p.calls != 1 {
		t.Fatalf("body %s, produce calls %d", w.Body, p.calls)
	}
}

func TestOwnTopicMovesASiblingRegionsTopicToThisRegion(t *testing.T) {
	for _, tc := range []struct{ topic, want string }{
		{"eu-west-1.notify.transactional", "eu-central-1.notify.transactional"},
		{"eu-central-1.notify.marketing", "eu-central-1.notify.marketing"},
		{"nodot", "nodot"},
	} {
		if got := ownTopic("eu-central-1", tc.topic); got != tc.want {
			t.Errorf("ownTopic(%q) = %q, want %q", tc.topic, got, tc.want)
		}
	}
}

// hangingProducer never acknowledges: Send returns when its context ends.
type hangingProducer struct{}

func (hangingProducer) Send(ctx context.Context, _ ...kafka.Message) error {
	<-ctx.Done()
	return fmt.Errorf("%w: not acknowledged in time: %w", kafka.ErrUnavailable, ctx.Err())
}

func TestSendAnswersWithinTheGatewaysBudgetOrItsOwnDeadlineWhicheverIsShorter(t *testing.T) {
	gin.SetMode(gin.TestMode)
	for _, tc := range []struct {
		name    string
		own     time.Duration
		header  string
		answers time.Duration
	}{
		{"the gateway's budget, shorter", 3 * time.Second, "300", 300 * time.Millisecond},
		{"its own deadline, shorter", 400 * time.Millisecond, "5000", 400 * time.Millisecond},
		{"no header: its own deadline", 400 * time.Millisecond, "", 400 * time.Millisecond},
		{"no deadline of its own: the gateway's", 0, "300", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Region: "eu-west-1", Producer: hangingProducer{}, Users: residents{}, RequestTimeout: tc.own, Logger: slog.New(slog.DiscardHandler)}
			r := gin.New()
			s.Register(r)
			req := httptest.NewRequest("POST", "/v1/notifications", strings.NewReader(`{"type":"transactional","category":"otp","body":"123456","recipients":["ada"]}`))
			req.Header.Set(AppHeader, "app-1")
			if tc.header != "" {
				req.Header.Set(TimeoutHeader, tc.header)
			}
			w := httptest.NewRecorder()
			start := time.Now()
			r.ServeHTTP(w, req)
			took := time.Since(start)
			if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"code":"deadline_exceeded"`) {
				t.Fatalf("status %d: %s; want 503 deadline_exceeded", w.Code, w.Body)
			}
			if took < tc.answers || took > tc.answers+time.Second {
				t.Fatalf("answered after %s, want about %s", took, tc.answers)
			}
		})
	}
}

func TestATimeoutHeaderThatIsNotAWholeNumberOfMillisecondsIsRefusedByName(t *testing.T) {
	gin.SetMode(gin.TestMode)
	s := &Server{Region: "eu-west-1", Producer: hangingProducer{}, Users: residents{}, RequestTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)}
	r := gin.New()
	s.Register(r)
	for _, values := range [][]string{
		{""}, {"0"}, {"-5"}, {"+5"}, {"1.5"}, {"1e3"}, {"abc"}, {" 300"}, {"300 "}, {"300ms"}, {"60001"},
		{"99999999999999999999"}, {"３００"}, {"300\x00"}, {"100", "200"},
	} {
		req := httptest.NewRequest("POST", "/v1/notifications", strings.NewReader(`{"type":"transactional","category":"otp","body":"123456","recipients":["ada"]}`))
		req.Header.Set(AppHeader, "app-1")
		req.Header[TimeoutHeader] = values
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"code":"invalid_timeout"`) || !strings.Contains(w.Body.String(), `"field":"`+TimeoutHeader+`"`) {
			t.Errorf("%s %q: %d %s; want 400 invalid_timeout naming the header", TimeoutHeader, values, w.Code, w.Body)
		}
	}
	for _, v := range []string{"1", "60000", "00300"} {
		if _, err := parseTimeout([]string{v}); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
}

func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1", "300", "60000", "60001", "0", "-1", "1e3", " 3", "３", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := parseTimeout([]string{v})
		if err != nil {
			return
		}
		if d < time.Millisecond || d > time.Minute || strings.Trim(v, "0123456789") != "" {
			t.Fatalf("parseTimeout(%q) = %s, accepted", v, d)
		}
	})
}

func TestSamplerLetsOneLineThroughPerPeriodAndCountsTheRest(t *testing.T) {
	var s sampler
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at       time.Duration
		wantOK   bool
		wantHeld int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2}, // the period is over: the two held back are counted
		{10 * time.Second, false, 0},
		{25 * time.Second, true, 1},
	}
	for i, st := range steps {
		held, ok := s.allow(t0.Add(st.at), 10*time.Second)
		if ok != st.wantOK || held != st.wantHeld {
			t.Fatalf("step %d at %s: allow = %d, %v; want %d, %v", i, st.at, held, ok, st.wantHeld, st.wantOK)
		}
	}
}
