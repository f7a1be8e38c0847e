package rules

import (
	"fmt"
	"strconv"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
)

// Hold is how long a condition must last, written as a number of
// consecutive evaluations ("3") or a duration ("45s"); "0" or nothing is
// at once.
type Hold struct{ alerts.Hold }

// Evaluations and For build Holds in code.
func Evaluations(n int) Hold       { return Hold{alerts.Hold{Evaluations: n}} }
func For(d time.Duration) Hold     { return Hold{alerts.Hold{Duration: d}} }
func (h Hold) IsZero() bool        { return h.Evaluations == 0 && h.Duration == 0 }
func (h Hold) String() string      { b, _ := h.MarshalText(); return string(b) }
func (h Hold) alerts() alerts.Hold { return h.Hold }

// UnmarshalText reads "3" (evaluations) or "45s" (a duration).
func (h *Hold) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "" || s == "0" {
		*h = Hold{}
		return nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return fmt.Errorf("%d evaluations is negative", n)
		}
		*h = Evaluations(n)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a number of evaluations (\"3\") or a duration (\"45s\")")
	}
	if d < 0 {
		return fmt.Errorf("%s is negative", d)
	}
	*h = For(d)
	return nil
}

// MarshalText writes what UnmarshalText reads.
func (h Hold) MarshalText() ([]byte, error) {
	switch {
	case h.Evaluations > 0:
		return []byte(strconv.Itoa(h.Evaluations)), nil
	case h.Duration > 0:
		return []byte(h.Duration.String()), nil
	}
	return []byte("0"), nil
}
