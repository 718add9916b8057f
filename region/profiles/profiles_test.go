package profiles

import (
	"testing"

	"github.com/herald-notify/herald/region/notify"
)

func TestNeedForReadsOnlyWhatTheChannelsUse(t *testing.T) {
	for _, tc := range []struct {
		name     string
		channels []string
		want     Need
	}{
		{"every channel the user has", nil, All},
		{"in-app only", []string{notify.InApp}, Need{}},
		{"push", []string{notify.InApp, notify.Push}, Need{Devices: true}},
		{"email", []string{notify.Email}, Need{Contacts: true}},
		{"sms", []string{notify.SMS}, Need{Contacts: true}},
		{"all named", []string{notify.InApp, notify.Push, notify.Email, notify.SMS}, All},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedFor(tc.channels); got != tc.want {
				t.Errorf("NeedFor(%v) = %+v, want %+v", tc.channels, got, tc.want)
			}
		})
	}
}
