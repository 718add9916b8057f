package lagwatch

import (
	"slices"
	"testing"
)

func TestGroupsAreTheRegionsOwnConsumersButNotReplayBookkeeping(t *testing.T) {
	all := []string{
		"eu-west-1.fanout.transactional", "eu-west-1.dispatch.push", "eu-west-1.dispatch.push.retry.2",
		"eu-west-1.exporter", "eu-west-1.dispatch.push.dlq.replay",
		"eu-west-10.fanout.social", "eu-central-1.fanout.social", "eu-west-1", "other",
	}
	got := Groups("eu-west-1", all)
	want := []string{"eu-west-1.fanout.transactional", "eu-west-1.dispatch.push", "eu-west-1.dispatch.push.retry.2", "eu-west-1.exporter"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
