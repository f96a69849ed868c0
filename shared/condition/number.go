package condition

import (
	"math"
	"strconv"
	"time"
)

// number keeps integers exact and falls back to float64 otherwise.
type number struct {
	i     int64
	f     float64
	isInt bool
}

func intNumber(i int64) number { return number{i: i, f: float64(i), isInt: true} }

func (a number) cmp(b number) int {
	if a.isInt && b.isInt {
		switch {
		case a.i < b.i:
			return -1
		case a.i > b.i:
			return 1
		}
		return 0
	}
	switch {
	case a.f < b.f:
		return -1
	case a.f > b.f:
		return 1
	}
	return 0
}

// decimal reads a plain decimal number: optional sign, digits, optional
// fraction and exponent. Hex, "Inf", "NaN" and durations are not numbers here.
func decimal(s string) (number, bool) {
	i, digits := 0, 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i, digits = i+1, digits+1
	}
	plain := true
	if i < len(s) && s[i] == '.' {
		plain = false
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		return number{}, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		plain = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i, exp = i+1, exp+1
		}
		if exp == 0 {
			return number{}, false
		}
	}
	if i != len(s) {
		return number{}, false
	}
	if plain {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return intNumber(n), true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) && f != 0 {
		return number{}, false
	}
	return number{f: f}, true
}

// literalNumber reads a number written in a condition: a decimal, or a Go
// duration (48h, 1h30m, 500ms) taken as milliseconds.
func literalNumber(s string) (number, bool) {
	if n, ok := decimal(s); ok {
		return n, true
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return number{}, false
	}
	if d%time.Millisecond == 0 {
		return intNumber(d.Milliseconds()), true
	}
	return number{f: float64(d) / float64(time.Millisecond)}, true
}
