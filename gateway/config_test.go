package gateway

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidateNamesABadRequestTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		wantErr bool
	}{
		{"the default", 5 * time.Second, false},
		{"none", 0, true},
		{"too short to answer anything", 10 * time.Millisecond, true},
		{"over a minute", 2 * time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig(t.TempDir())
			c.Jurisdiction = "EU"
			c.Directory.SecretFile = "/dev/null"
			c.RequestTimeout = tt.timeout
			err := c.Validate()
			if tt.wantErr != (err != nil && strings.Contains(err.Error(), `"request_timeout"`)) {
				t.Fatalf("Validate() = %v, want an error naming request_timeout: %v", err, tt.wantErr)
			}
		})
	}
}
