package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
