package prefs

import (
	"testing"
	"time"

	"github.com/herald-notify/herald/region/notify"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestQuietUntilAcrossMidnightAndDST(t *testing.T) {
	tests := []struct {
		name      string
		tz        string
		start     string
		end       string
		now       string
		wantQuiet bool
		wantUntil string
	}{
		{"paris evening inside", "Europe/Paris", "22:00", "07:00", "2026-06-10T21:30:00Z", true, "2026-06-11T05:00:00Z"}, // 23:30 CEST
		{"paris early morning inside", "Europe/Paris", "22:00", "07:00", "2026-06-11T03:00:00Z", true, "2026-06-11T05:00:00Z"},
		{"paris daytime outside", "Europe/Paris", "22:00", "07:00", "2026-06-11T10:00:00Z", false, ""},
		{"end boundary is outside", "Europe/Paris", "22:00", "07:00", "2026-06-11T05:00:00Z", false, ""},
		{"new york same instant is daytime", "America/New_York", "22:00", "07:00", "2026-06-10T21:30:00Z", false, ""}, // 17:30 EDT
		{"new york night", "America/New_York", "22:00", "07:00", "2026-06-11T03:00:00Z", true, "2026-06-11T11:00:00Z"},
		// Spring forward in Paris (2026-03-29 02:00 -> 03:00): the window ends at 07:00 CEST = 05:00Z.
		{"paris spring forward night", "Europe/Paris", "22:00", "07:00", "2026-03-28T22:30:00Z", true, "2026-03-29T05:00:00Z"},
		// Fall back in Paris (2026-10-25 03:00 -> 02:00): 07:00 CET = 06:00Z.
		{"paris fall back night", "Europe/Paris", "22:00", "07:00", "2026-10-24T21:30:00Z", true, "2026-10-25T06:00:00Z"},
		// A window ending inside the spring-forward gap ends at the first valid instant after it.
		{"end inside the DST gap", "Europe/Paris", "01:00", "02:30", "2026-03-29T00:30:00Z", true, "2026-03-29T01:30:00Z"},
		{"same-day window", "UTC", "13:00", "15:00", "2026-06-10T14:00:00Z", true, "2026-06-10T15:00:00Z"},
		{"no window when start equals end", "UTC", "10:00", "10:00", "2026-06-10T10:00:00Z", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Preferences{Timezone: tt.tz, QuietHours: &QuietHours{Start: tt.start, End: tt.end}}
			until, quiet := p.QuietUntil(mustTime(t, tt.now))
			if quiet != tt.wantQuiet {
				t.Fatalf("quiet = %v, want %v", quiet, tt.wantQuiet)
			}
			if quiet && !until.Equal(mustTime(t, tt.wantUntil)) {
				t.Fatalf("until %s, want %s", until.UTC().Format(time.RFC3339), tt.wantUntil)
			}
		})
	}
}

func TestAllowsChannelAndCategoryOptOuts(t *testing.T) {
	p := Preferences{
		Channels:   map[string]bool{notify.SMS: false, notify.Push: true},
		Categories: map[string]map[string]bool{"marketing_news": {notify.Email: false}},
	}
	tests := []struct {
		channel, category string
		want              bool
		reason            string
	}{
		{notify.SMS, "otp", false, notify.ReasonChannelOff},
		{notify.Email, "marketing_news", false, notify.ReasonCategoryOff},
		{notify.Email, "otp", true, ""},
		{notify.Push, "marketing_news", true, ""},
		{notify.InApp, "anything", true, ""},
	}
	for _, tt := range tests {
		ok, reason := p.Allows(tt.channel, tt.category)
		if ok != tt.want || reason != tt.reason {
			t.Errorf("Allows(%s, %s) = %v %q, want %v %q", tt.channel, tt.category, ok, reason, tt.want, tt.reason)
		}
	}
}
