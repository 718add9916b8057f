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
	// BaseURL is central analytics' ingest listener, like https://127.0.0.1:8091.
	BaseURL string
	// Token is the region's bearer token (the regions.<name>.token of central's config).
	Token string
	// HTTP is the client to use; nil means one with a 30-second timeout and no client
	// certificate, which the ingest listener refuses (the exporter passes its mutual TLS one).
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
	return fmt.Sprintf("central analytics refused the request: %d %s %s: %s", e.Status, e.Code, e.Field, e.Message)
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
	var ack Ack
	if err := c.do(ctx, http.MethodPost, "/v1/aggregates", body, &ack); err != nil {
		return Ack{}, fmt.Errorf("posting batch: %w", err)
	}
	return ack, nil
}

// Categories fetches the categories central accepts in a cell (GET /v1/categories). A
// *RefusedError means the certificate or token is not a region's; another error may pass: ask again.
func (c *Client) Categories(ctx context.Context) (Categories, error) {
	var cats Categories
	if err := c.do(ctx, http.MethodGet, "/v1/categories", nil, &cats); err != nil {
		return Categories{}, fmt.Errorf("fetching categories: %w", err)
	}
	return cats, nil
}

// do sends one request with the region's token and decodes a 200's JSON into out. A 4xx
// other than 429 is a *RefusedError; anything else that is not a 200 is a plain error.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading central's answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decoding central's answer: %w", err)
		}
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		var e struct {
			Error struct{ Code, Message, Field string } `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return &RefusedError{Status: resp.StatusCode, Code: e.Error.Code, Field: e.Error.Field, Message: e.Error.Message}
	}
	return fmt.Errorf("central analytics answered %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
}
