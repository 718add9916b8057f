package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client posts batches to central analytics (POST /v1/aggregates).
type Client struct {
	// BaseURL is central analytics' address, like http://127.0.0.1:8090.
	BaseURL string
	// Token is the region's bearer token (the regions.<name>.token of central's config).
	Token string
	// HTTP is the client to use; nil means one with a 30-second timeout.
	HTTP *http.Client
}

// Ack is central's answer to a stored batch: Result is "stored", "replaced" or "unchanged".
type Ack struct {
	Result     string `json:"result"`
	Cells      int    `json:"cells"`
	Histograms int    `json:"histograms"`
}

// RefusedError is central refusing a batch (a 4xx): sending it again will not help, so the
// exporter must not retry it as is. Field is the JSON path at fault, like "cells[3].category".
type RefusedError struct {
	Status  int
	Code    string
	Field   string
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("central analytics refused the batch: %d %s %s: %s", e.Status, e.Code, e.Field, e.Message)
}

// IsRefused reports whether err is a refusal (not worth retrying), as opposed to a transport
// error or a 5xx, after which the same batch should be posted again.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Post sends b. It returns the Ack on 200, a *RefusedError on 4xx, and another error when
// the batch may not have been stored (network, timeout, 5xx): post it again, unchanged; the
// key (region, window_start, seq) makes the repeat count once.
func (c *Client) Post(ctx context.Context, b Batch) (Ack, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return Ack{}, fmt.Errorf("encoding batch: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.BaseURL, "/")+"/v1/aggregates", bytes.NewReader(body))
	if err != nil {
		return Ack{}, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Ack{}, fmt.Errorf("posting batch: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Ack{}, fmt.Errorf("reading central's answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var ack Ack
		if err := json.Unmarshal(raw, &ack); err != nil {
			return Ack{}, fmt.Errorf("decoding central's answer: %w", err)
		}
		return ack, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		var e struct {
			Error struct{ Code, Message, Field string } `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return Ack{}, &RefusedError{Status: resp.StatusCode, Code: e.Error.Code, Field: e.Error.Field, Message: e.Error.Message}
	}
	return Ack{}, fmt.Errorf("central analytics answered %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
}
