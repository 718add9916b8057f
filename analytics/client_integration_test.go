//go:build integration

package analytics

import (
	"context"
	"errors"
	"testing"

	"github.com/herald-notify/herald/analytics/wire"
)

// The client the region exporter will use: an Ack for a stored batch, a RefusedError naming
// the field for a 4xx (not to be retried), and a retryable error when central is unreachable.
func TestWireClientTellsRefusalsFromRetryableFailures(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	cl := &wire.Client{BaseURL: s.ingest, Token: euToken, HTTP: exporterClient(t, "eu-west-1")}
	b := batch("eu-west-1", window(3), 0, c("shop", "social", "news", "push", "delivered", "", 30, 25))
	for _, want := range []string{Stored, Unchanged} {
		ack, err := cl.Post(ctx, b)
		if err != nil || ack.Result != want || ack.Cells != 1 {
			t.Fatalf("post: %+v %v, want %s", ack, err, want)
		}
	}
	bad := b
	bad.Seq = 1
	bad.Cells = []wire.Cell{c("shop", "social", "news", "push", "delivered", "", 30, 5)}
	_, err := cl.Post(ctx, bad)
	var re *wire.RefusedError
	if !errors.As(err, &re) || re.Status != 400 || re.Code != "below_k" || re.Field != "cells[0].distinct_recipients" {
		t.Errorf("below k: %v, want a RefusedError naming the field", err)
	}
	if _, err := (&wire.Client{BaseURL: s.ingest, Token: "not-a-region-token-000", HTTP: cl.HTTP}).Post(ctx, b); !wire.IsRefused(err) {
		t.Errorf("bad token: %v, want a refusal", err)
	}
	if _, err := (&wire.Client{BaseURL: s.ingest, Token: euToken, HTTP: noCertClient(t)}).Post(ctx, b); !wire.IsRefused(err) {
		t.Errorf("no client certificate: %v, want a refusal", err)
	}
	if _, err := (&wire.Client{BaseURL: "https://" + freeAddr(t), Token: euToken, HTTP: cl.HTTP}).Post(ctx, b); err == nil || wire.IsRefused(err) {
		t.Errorf("nobody listening: %v, want a retryable error", err)
	}
}
