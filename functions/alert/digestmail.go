package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"backstop/shared/mail"
)

// digestTags are the subject tags mail.Render gives, in the order a
// digest's subject counts them.
var digestTags = []string{"DOWN", "STILL DOWN", "WARN", "RECOVERED", "WARN CLEARED", "INFO"}

type digestRow struct {
	At, Subject, Detail string
}

type digestView struct {
	Lang, Subject, Title, Intro string
	Rows                        []digestRow
}

// renderDigest writes one mail for a storm's held events: the subject
// keeps an English [DIGEST] tag and counts by tag; the body lists each
// event's own subject, time and detail, oldest first, in the locale of
// the first event (or locale when it has none).
func renderDigest(host string, held []heldEvent, locale string, loc *time.Location) mail.Message {
	evs := make([]heldEvent, len(held))
	copy(evs, held)
	slices.SortStableFunc(evs, func(a, b heldEvent) int { return a.Event.At.Compare(b.Event.At) })
	if len(evs) > 0 && evs[0].Event.Locale != "" {
		locale = evs[0].Event.Locale
	}
	counts := map[string]int{}
	v := digestView{Lang: "en"}
	var first, last time.Time
	for i, h := range evs {
		m := mail.Render(h.Event)
		tag, _, _ := strings.Cut(strings.TrimPrefix(m.Subject, "["), "]")
		counts[tag]++
		at := h.Event.At
		if at.Location() == time.UTC && loc != nil {
			at = at.In(loc)
		}
		if i == 0 {
			first = at
		}
		last = at
		v.Rows = append(v.Rows, digestRow{At: at.Format("2006-01-02 15:04:05 -07:00"), Subject: m.Subject, Detail: h.Event.Detail})
	}
	var parts []string
	for _, tag := range digestTags {
		if n := counts[tag]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, tag))
			delete(counts, tag)
		}
	}
	for _, tag := range slices.Sorted(maps.Keys(counts)) { // tags newer than this list
		parts = append(parts, fmt.Sprintf("%d %s", counts[tag], tag))
	}
	v.Subject = fmt.Sprintf("[DIGEST] %s — %d alerts: %s", host, len(evs), strings.Join(parts, ", "))
	span := last.Sub(first)
	if locale == "ja" {
		v.Lang = "ja"
		v.Title = fmt.Sprintf("【アラート多発】%s で %d 件のアラート", host, len(evs))
		v.Intro = fmt.Sprintf("短時間に多数のアラートが発生したため、%sの間の%d件をまとめてお知らせします。", spanText(span, true), len(evs))
	} else {
		v.Title = fmt.Sprintf("STORM: %d alerts for %s", len(evs), host)
		v.Intro = fmt.Sprintf("Too many alerts arrived for this host at once; these %d, over %s, come in one e-mail.", len(evs), spanText(span, false))
	}
	return mail.Message{Subject: v.Subject, Text: v.text(), HTML: v.html()}
}

// spanText writes a storm's span: 45s, 3m, 1h5m (ja: 45秒, 3分, 1時間5分).
func spanText(d time.Duration, ja bool) string {
	h, m, s := "h", "m", "s"
	if ja {
		h, m, s = "時間", "分", "秒"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d%s", int(d/time.Second), s)
	case d < time.Hour:
		return fmt.Sprintf("%d%s", int(d/time.Minute), m)
	case d%time.Hour < time.Minute:
		return fmt.Sprintf("%d%s", int(d/time.Hour), h)
	default:
		return fmt.Sprintf("%d%s%d%s", int(d/time.Hour), h, int(d%time.Hour/time.Minute), m)
	}
}

func (v digestView) text() string {
	var b strings.Builder
	b.WriteString(v.Title + "\n\n" + v.Intro + "\n\n")
	for _, r := range v.Rows {
		b.WriteString(r.At + "  " + r.Subject + "\n")
		if r.Detail != "" {
			b.WriteString("    " + strings.ReplaceAll(r.Detail, "\n", "\n    ") + "\n")
		}
	}
	b.WriteString("\n-- \nbackstop\n")
	return b.String()
}

func (v digestView) html() string {
	e := mail.EscapeHTML
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"" + e(v.Lang) + "\">\n")
	b.WriteString("<head><meta charset=\"utf-8\"><title>" + e(v.Subject) + "</title></head>\n")
	b.WriteString("<body style=\"font-family: sans-serif; color: #222;\">\n")
	b.WriteString("<h2 style=\"color: #b00020;\">" + e(v.Title) + "</h2>\n")
	b.WriteString("<p>" + e(v.Intro) + "</p>\n")
	b.WriteString("<table style=\"border-collapse: collapse;\">\n")
	for _, r := range v.Rows {
		b.WriteString("<tr><td style=\"padding: 2px 12px 2px 0; vertical-align: top; white-space: nowrap;\">" + e(r.At) +
			"</td><td style=\"padding: 2px 0;\"><b>" + e(r.Subject) + "</b>")
		if r.Detail != "" {
			b.WriteString("<br><span style=\"color: #555; white-space: pre-wrap;\">" + e(r.Detail) + "</span>")
		}
		b.WriteString("</td></tr>\n")
	}
	b.WriteString("</table>\n<p style=\"color: #999; font-size: small;\">backstop</p>\n</body>\n</html>\n")
	return b.String()
}
