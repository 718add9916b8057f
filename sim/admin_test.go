package sim

import (
	"testing"
)

func TestAdminHealthAndInfo(t *testing.T) {
	s := startSim(t, nil)
	var h struct{ Status string }
	if code := admin(t, s, "GET", "/healthz", nil, &h); code != 200 || h.Status != "ok" {
		t.Fatalf("healthz %d %+v", code, h)
	}
	var info Info
	if code := admin(t, s, "GET", "/sim/info", nil, &info); code != 200 || info != s.Info() {
		t.Fatalf("info %d %+v", code, info)
	}
}

func TestAdminFaultsAPI(t *testing.T) {
	s := startSim(t, nil)
	var got Faults
	if code := admin(t, s, "PUT", "/sim/sms/faults", Faults{ErrorRate: 0.25, Invalid: []string{"+15005550001"}}, &got); code != 200 ||
		got.ErrorRate != 0.25 || len(got.Invalid) != 1 {
		t.Fatalf("PUT %d %+v", code, got)
	}
	got = Faults{}
	if admin(t, s, "GET", "/sim/sms/faults", nil, &got); got.ErrorRate != 0.25 {
		t.Fatalf("GET %+v", got)
	}
	if code := admin(t, s, "DELETE", "/sim/sms/faults", nil, nil); code != 204 {
		t.Fatalf("DELETE %d", code)
	}
	got = Faults{ErrorRate: 9}
	if admin(t, s, "GET", "/sim/sms/faults", nil, &got); got.ErrorRate != 0 || got.Invalid != nil {
		t.Fatalf("after DELETE %+v", got)
	}

	tests := []struct {
		name, method, path string
		body               any
		wantCode           int
		wantErr, wantField string
	}{
		{"rate above 1", "PUT", "/sim/apns/faults", map[string]any{"error_rate": 2}, 400, "invalid_argument", "error_rate"},
		{"misspelt fault", "PUT", "/sim/apns/faults", map[string]any{"eror_rate": 1}, 400, "invalid_argument", ""},
		{"unsupported status", "PUT", "/sim/fcm/faults", map[string]any{"error_statuses": []int{418}}, 400, "invalid_argument", "error_statuses"},
		{"unknown simulator", "GET", "/sim/pager/faults", nil, 404, "not_found", "name"},
		{"bad limit", "GET", "/sim/apns/messages?limit=x", nil, 400, "invalid_argument", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code, Message, Field string }
			}
			if code := admin(t, s, tt.method, tt.path, tt.body, &e); code != tt.wantCode || e.Error.Code != tt.wantErr || e.Error.Field != tt.wantField {
				t.Fatalf("%d %+v", code, e)
			}
		})
	}
}

func TestAdminClearsEveryRecordAtOnce(t *testing.T) {
	s := startSim(t, nil)
	for _, name := range Names {
		s.sims[name].records.Add(&Record{To: "x"})
	}
	if code := admin(t, s, "DELETE", "/sim/messages", nil, nil); code != 204 {
		t.Fatalf("DELETE %d", code)
	}
	for _, name := range Names {
		if n := len(records(t, s, name, "")); n != 0 {
			t.Fatalf("%s kept %d records", name, n)
		}
	}
}
