package daemon

import (
	"testing"
	"time"

	"backstop/probe/internal/check"
)

// A check result observed on the live path carries the configured time
// zone, so its mails print +09:00 for Asia/Tokyo instead of UTC.
func TestObservationInConfiguredZone(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	r := check.Result{Name: "web", Status: check.Critical, Message: "HTTP 502", At: time.Date(2025, 3, 1, 0, 10, 0, 0, time.UTC)}
	got := observation(r, tokyo).At.Format("2006-01-02 15:04:05 -07:00 MST")
	if want := "2025-03-01 09:10:00 +09:00 JST"; got != want {
		t.Errorf("observation at %s, want %s", got, want)
	}
}
