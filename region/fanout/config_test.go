package fanout

import (
	"maps"
	"testing"
	"time"

	"github.com/herald-notify/herald/region/notify"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSettingsCarryTheSectionsSizesAndEachTiersMaxAge(t *testing.T) {
	c := DefaultConfig()
	s := c.Settings("eu-west-1", 7)
	if s.Region != "eu-west-1" || s.ChunkSize != c.ChunkSize || s.TopicPacePerSec != c.TopicPacePerSec ||
		s.TopicChunksInFlight != c.TopicChunksInFlight || s.InboxBatch != 7 {
		t.Fatalf("settings %+v from %+v", s, c)
	}
	want := map[string]time.Duration{notify.Transactional: 10 * time.Minute, notify.Social: 6 * time.Hour, notify.Marketing: 72 * time.Hour}
	if !maps.Equal(s.MaxAge, want) {
		t.Fatalf("max ages %v, want %v", s.MaxAge, want)
	}
}
