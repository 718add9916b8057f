package region

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/platform/wire"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/sealtoken"
)

// SendGrid reads X-SMTPAPI as one header, which a mail line bounds to 998 characters (RFC 5322)
// unless folded, and a JSON string cannot be folded: the token of the longest ids Herald
// accepts must fit on one line.
func TestAnEmailReceiptHeaderFitsOneMailLineForTheLongestIDs(t *testing.T) {
	keys, err := sealtoken.NewKeyring("eu-central-1", "receipts-email", make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	mint := emailReceipt(keys, func() string { return "https://gateway.example" }, slog.New(slog.DiscardHandler))
	task := notify.Task{
		AppID: strings.Repeat("a", 128), NotificationID: "0190f5d2-7c1e-7d4a-9b3e-2f6c8a1d4e5b",
		UserID: strings.Repeat("u", 128), Channel: notify.Email, Tier: "transactional",
		Category: strings.Repeat("c", 64), DueAt: time.Now().Add(72 * time.Hour),
	}
	tok := mint(task, strings.Repeat("p", 64))
	if tok == "" {
		t.Fatal("no token minted")
	}
	value, err := json.Marshal(map[string]map[string]string{"unique_args": {wire.SendGridTokenField: tok}})
	if err != nil {
		t.Fatal(err)
	}
	if line := "X-SMTPAPI: " + string(value); len(line) > 998 {
		t.Fatalf("the header line is %d characters, over 998", len(line))
	} else {
		t.Logf("the longest header line: %d characters", len(line))
	}
}
