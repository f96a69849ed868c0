package clip

import (
	"strings"
	"unicode/utf8"
)

// Ellipsis marks where text was cut.
const Ellipsis = "…"

// Prefix returns the longest start of s of at most n bytes that ends on a
// character boundary.
func Prefix(s string, n int) string {
	if n < 0 {
		n = 0
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// End cuts s to at most n bytes, the ellipsis included, and marks the cut.
// s itself is returned when it fits.
func End(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Prefix(s, n-len(Ellipsis)) + Ellipsis
}

// Middle cuts s to at most n bytes, the ellipsis included, from the middle:
// a wrapped error keeps its operation (the start) and its cause (the end,
// e.g. "no space left on device").
func Middle(s string, n int) string {
	if len(s) <= n {
		return s
	}
	room := max(n-len(Ellipsis), 0)
	head := Prefix(s, room/3)
	tail := len(s) - (room - len(head))
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return head + Ellipsis + s[tail:]
}

// Line collapses every run of white space (newlines included) to one space
// and cuts the result to at most n bytes with End.
func Line(s string, n int) string {
	return End(strings.Join(strings.Fields(s), " "), n)
}
