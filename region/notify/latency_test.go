package notify

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestDueIsTheDeferralEndWhenThereIsOne(t *testing.T) {
	acc := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	if got := (Task{AcceptedAt: acc}).Due(); !got.Equal(acc) {
		t.Fatalf("no deferral: %v", got)
	}
	later := acc.Add(7 * time.Hour)
	if got := (Task{AcceptedAt: acc, DueAt: later}).Due(); !got.Equal(later) {
		t.Fatalf("deferred: %v", got)
	}
}

func TestObserveDeliveredFillsTheLatencyHistogram(t *testing.T) {
	now := time.Now()
	ObserveDelivered("zz-test-1", Transactional, Push, now.Add(-700*time.Millisecond), now)
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_delivery_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["region"] == "zz-test-1" && labels["tier"] == Transactional && labels["channel"] == Push {
				h := m.GetHistogram()
				if h.GetSampleCount() != 1 || h.GetSampleSum() < 0.69 || h.GetSampleSum() > 0.71 {
					t.Fatalf("histogram count %d sum %f", h.GetSampleCount(), h.GetSampleSum())
				}
				return
			}
		}
	}
	t.Fatal("herald_delivery_latency_seconds not exported")
}
