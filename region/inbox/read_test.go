package inbox

import (
	"testing"
	"time"
)

func TestCursorRoundTripsAndRefusesForgeries(t *testing.T) {
	c := Cursor{At: time.Date(2026, 11, 25, 1, 2, 3, 4e6, time.UTC), ID: "01a2"}
	got, err := DecodeCursor(c.Encode())
	if err != nil || !got.At.Equal(c.At) || got.ID != c.ID {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if got, err := DecodeCursor(""); got != nil || err != nil {
		t.Fatalf("empty cursor: %+v %v", got, err)
	}
	for _, bad := range []string{"abc", "!!!", Cursor{ID: "x"}.Encode(), Cursor{At: c.At}.Encode()} {
		if _, err := DecodeCursor(bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

func TestBucketIsTheUTCMonth(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	tests := []struct {
		at   time.Time
		want int
	}{
		{time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC), 202611},
		{time.Date(2026, 12, 1, 0, 30, 0, 0, paris), 202611}, // still November in UTC
		{time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), 202701},
	}
	for _, tt := range tests {
		if got := Bucket(tt.at); got != tt.want {
			t.Errorf("Bucket(%s) = %d, want %d", tt.at, got, tt.want)
		}
	}
}

func TestOrderIsNewestFirstThenIDDescending(t *testing.T) {
	t0 := time.Now()
	a := Item{CreatedAt: t0, NotificationID: "b"}
	b := Item{CreatedAt: t0, NotificationID: "a"}
	c := Item{CreatedAt: t0.Add(-time.Second), NotificationID: "z"}
	if !before(a, b) || before(b, a) || !before(b, c) || before(c, a) {
		t.Fatal("inbox order is wrong")
	}
}
