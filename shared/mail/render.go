package mail

import (
	"fmt"
	"strings"
	"time"

	"backstop/shared/alert"
)

// Message is one rendered e-mail.
type Message struct {
	Subject string
	Text    string // text/plain body
	HTML    string // text/html body, every value escaped
}

// Render turns an event into an e-mail. The subject always starts with an
// English tag ([DOWN], [STILL DOWN], [RECOVERED], [WARN], [WARN CLEARED],
// [INFO]) so mail filters work in every locale; the body is Japanese when
// ev.Locale is "ja" and English otherwise. Times are shown in the location
// of ev.At (the probe's configured time zone).
func Render(ev alert.Event) Message {
	w := words[en]
	lang := "en"
	if ev.Locale == "ja" {
		w, lang = words[ja], "ja"
	}
	v := view{Lang: lang, Subject: subject(ev)}
	loc := ev.At.Location()
	at := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(loc).Format("2006-01-02 15:04:05 -07:00")
	}
	open := ev.At.Sub(ev.Since)
	down := downtime(ev)
	add := func(label, value string) {
		if value != "" {
			v.Rows = append(v.Rows, row{label, value})
		}
	}
	add(w.host, ev.Host)
	add(w.check, ev.Check)
	switch {
	case ev.State == alert.Down && ev.Kind == alert.KindReminder:
		v.Title, v.Color = fmt.Sprintf(w.reminderTitle, ev.Check, ev.Host, w.dur(open)), colorDown
		v.Intro, v.Footer = w.reminderIntro, w.downFooter
		add(w.failed, ev.Summary)
		add(w.detail, ev.Detail)
		add(w.value, w.quantity(ev.Value))
		add(w.since, at(ev.Since))
		add(w.lasting, w.dur(open))
		add(w.checkedAt, at(ev.At))
	case ev.State == alert.Down:
		v.Title, v.Color = fmt.Sprintf(w.downTitle, ev.Check, ev.Host), colorDown
		v.Intro, v.Footer = w.downIntro, w.downFooter
		add(w.failed, ev.Summary)
		add(w.detail, ev.Detail)
		add(w.value, w.quantity(ev.Value))
		add(w.since, at(ev.Since))
		add(w.detected, at(ev.At))
	case ev.State == alert.Up && ev.Kind == alert.KindWarnCleared:
		v.Title, v.Color = fmt.Sprintf(w.clearedTitle, ev.Check, ev.Host), colorUp
		v.Intro = w.clearedIntro
		add(w.warning, ev.Cause)
		add(w.now, ev.Summary)
		add(w.value, w.quantity(ev.Value))
		add(w.warnSince, at(ev.Since))
		add(w.clearedAt, at(ev.At))
	case ev.State == alert.Up:
		v.Title, v.Color = fmt.Sprintf(w.upTitle, ev.Check, ev.Host), colorUp
		v.Intro = fmt.Sprintf(w.upIntro, w.dur(down))
		add(w.failed, ev.Cause)
		add(w.now, ev.Summary)
		add(w.value, w.quantity(ev.Value))
		add(w.since, at(ev.Since))
		add(w.recovered, at(ev.At))
		add(w.downtime, w.dur(down))
	case ev.State == alert.Warn:
		v.Title, v.Color = fmt.Sprintf(w.warnTitle, ev.Check, ev.Host), colorWarn
		v.Intro, v.Footer = w.warnIntro, w.warnFooter
		add(w.warning, ev.Summary)
		add(w.detail, ev.Detail)
		add(w.value, w.quantity(ev.Value))
		add(w.warnSince, at(ev.Since))
		add(w.detected, at(ev.At))
	default: // info and anything newer
		v.Title, v.Color = fmt.Sprintf(w.infoTitle, ev.Check, ev.Host), colorInfo
		add(w.summary, ev.Summary)
		add(w.detail, ev.Detail)
		add(w.value, w.quantity(ev.Value))
		add(w.at, at(ev.At))
	}
	add(w.incident, ev.IncidentID)
	add(w.source, ev.Source)
	return Message{Subject: v.Subject, Text: v.text(), HTML: v.html()}
}

// subject builds the English-tagged subject line naming the host, e.g.
// "[DOWN] psyfit-prod web-health — HTTP 502".
func subject(ev alert.Event) string {
	name := strings.TrimSpace(ev.Host + " " + ev.Check)
	about := func(tag string) string {
		s := tag + " " + name
		if ev.Summary != "" {
			s += " — " + ev.Summary
		}
		return s
	}
	switch {
	case ev.State == alert.Down && ev.Kind == alert.KindReminder:
		return about("[STILL DOWN]") + " (since " + words[en].dur(ev.At.Sub(ev.Since)) + ")"
	case ev.State == alert.Down:
		return about("[DOWN]")
	case ev.State == alert.Up && ev.Kind == alert.KindWarnCleared:
		return about("[WARN CLEARED]")
	case ev.State == alert.Up:
		return "[RECOVERED] " + name + " after " + words[en].dur(downtime(ev))
	case ev.State == alert.Warn:
		return about("[WARN]")
	case ev.State == alert.Info:
		return about("[INFO]")
	default:
		return about("[" + strings.ToUpper(string(ev.State)) + "]")
	}
}

// downtime is what a recovery mail shows as the outage's length: the
// recovered-at time minus the down-since time, both as printed (to the
// second), so the figures in one mail agree. Without a Since the sender's
// DowntimeSeconds stands.
func downtime(ev alert.Event) time.Duration {
	if ev.Since.IsZero() || ev.At.IsZero() {
		return time.Duration(ev.DowntimeSeconds) * time.Second
	}
	return ev.At.Truncate(time.Second).Sub(ev.Since.Truncate(time.Second))
}

const (
	colorDown = "#b00020"
	colorUp   = "#1b7f3b"
	colorWarn = "#a15c00"
	colorInfo = "#333333"
)

type row struct{ Label, Value string }

type view struct {
	Lang, Subject, Title, Intro, Footer, Color string
	Rows                                       []row
}

func (v view) text() string {
	var b strings.Builder
	b.WriteString(v.Title + "\n")
	if v.Intro != "" {
		b.WriteString("\n" + v.Intro + "\n")
	}
	b.WriteString("\n")
	width := 0
	for _, r := range v.Rows {
		width = max(width, displayWidth(r.Label))
	}
	for _, r := range v.Rows {
		pad := strings.Repeat(" ", width-displayWidth(r.Label))
		b.WriteString(r.Label + ":" + pad + " " + strings.ReplaceAll(r.Value, "\n", "\n"+strings.Repeat(" ", width+2)) + "\n")
	}
	if v.Footer != "" {
		b.WriteString("\n" + v.Footer + "\n")
	}
	b.WriteString("\n-- \nbackstop\n")
	return b.String()
}

// displayWidth counts East Asian characters as two columns so Japanese
// labels line up in a monospace mail reader.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x1100 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

func (v view) html() string {
	e := EscapeHTML
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"" + e(v.Lang) + "\">\n")
	b.WriteString("<head><meta charset=\"utf-8\"><title>" + e(v.Subject) + "</title></head>\n")
	b.WriteString("<body style=\"font-family: sans-serif; color: #222;\">\n")
	b.WriteString("<h2 style=\"color: " + e(v.Color) + ";\">" + e(v.Title) + "</h2>\n")
	if v.Intro != "" {
		b.WriteString("<p>" + e(v.Intro) + "</p>\n")
	}
	b.WriteString("<table style=\"border-collapse: collapse;\">\n")
	for _, r := range v.Rows {
		b.WriteString("<tr><th style=\"text-align: left; padding: 2px 12px 2px 0; vertical-align: top;\">" + e(r.Label) +
			"</th><td style=\"padding: 2px 0; white-space: pre-wrap;\">" + e(r.Value) + "</td></tr>\n")
	}
	b.WriteString("</table>\n")
	if v.Footer != "" {
		b.WriteString("<p style=\"color: #666;\">" + e(v.Footer) + "</p>\n")
	}
	b.WriteString("<p style=\"color: #999; font-size: small;\">backstop</p>\n</body>\n</html>\n")
	return b.String()
}

const (
	en = iota
	ja
)

type vocabulary struct {
	host, check, failed, detail, value, since, detected, checkedAt, lasting string
	now, recovered, downtime, warning, warnSince, clearedAt, summary, at    string
	incident, source                                                        string
	downTitle, downIntro, downFooter, reminderTitle, reminderIntro, upTitle string
	upIntro, warnTitle, warnIntro, warnFooter, clearedTitle, clearedIntro   string
	infoTitle                                                               string
	day, hour, minute, second                                               string
}

var words = [...]vocabulary{
	en: {
		host: "Host", check: "Check", failed: "What failed", detail: "Detail", value: "Observed value",
		since: "Down since", detected: "Detected at", checkedAt: "Checked at", lasting: "Down for",
		now: "Now", recovered: "Recovered at", downtime: "Downtime", warning: "Warning",
		warnSince: "Warning since", clearedAt: "Cleared at", summary: "Summary", at: "At",
		incident: "Incident", source: "Source",
		downTitle:     "DOWN: %s on %s",
		downIntro:     "The check is failing.",
		downFooter:    "You will get a reminder while this lasts and one e-mail when it recovers.",
		reminderTitle: "STILL DOWN: %s on %s (for %s)",
		reminderIntro: "The check is still failing.",
		upTitle:       "RECOVERED: %s on %s",
		upIntro:       "The check is passing again after %s of downtime.",
		warnTitle:     "WARNING: %s on %s",
		warnIntro:     "This is a warning, not an outage: act before it becomes one.",
		warnFooter:    "You will get one e-mail when the warning clears.",
		clearedTitle:  "WARNING CLEARED: %s on %s",
		clearedIntro:  "The warning is over.",
		infoTitle:     "INFO: %s on %s",
		day:           "d", hour: "h", minute: "m", second: "s",
	},
	ja: {
		host: "ホスト", check: "チェック", failed: "障害内容", detail: "詳細", value: "観測値",
		since: "発生時刻", detected: "検知時刻", checkedAt: "確認時刻", lasting: "継続時間",
		now: "現在の状態", recovered: "復旧時刻", downtime: "停止時間", warning: "警告内容",
		warnSince: "警告開始", clearedAt: "解除時刻", summary: "概要", at: "時刻",
		incident: "インシデントID", source: "送信元",
		downTitle:     "【障害】%s（%s）のチェックが失敗しています",
		downIntro:     "チェックが連続して失敗しています。",
		downFooter:    "障害が続く間は定期的にお知らせし、復旧したときにメールでご連絡します。",
		reminderTitle: "【障害継続】%s（%s）は復旧していません（%s経過）",
		reminderIntro: "チェックは引き続き失敗しています。",
		upTitle:       "【復旧】%s（%s）は正常に戻りました",
		upIntro:       "チェックが正常に戻りました。停止時間は%sでした。",
		warnTitle:     "【警告】%s（%s）は対応が必要です",
		warnIntro:     "障害ではありませんが、障害になる前に対応してください。",
		warnFooter:    "警告が解消したときにメールでお知らせします。",
		clearedTitle:  "【警告解除】%s（%s）は正常な状態に戻りました",
		clearedIntro:  "警告の原因はなくなりました。",
		infoTitle:     "【お知らせ】%s（%s）",
		day:           "日", hour: "時間", minute: "分", second: "秒",
	},
}

// quantity writes an observed value in the mail's language: a count with
// a d/h/m/s unit ("9d") becomes "9日" in Japanese; others stay as they are.
func (w vocabulary) quantity(v string) string {
	num := strings.TrimRight(v, "dhms")
	if len(v)-len(num) != 1 || num == "" || strings.Trim(num, "0123456789.") != "" {
		return v
	}
	return num + map[byte]string{'d': w.day, 'h': w.hour, 'm': w.minute, 's': w.second}[v[len(v)-1]]
}

// dur writes a duration in at most two units, rounded down to the minute
// above a minute: 45s, 12m, 1h, 1h5m, 2d3h (ja: 12分, 1時間5分, 2日3時間).
func (w vocabulary) dur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Minute {
		return fmt.Sprintf("%d%s", int(d/time.Second), w.second)
	}
	days, hours, mins := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	two := func(a int, ua string, b int, ub string) string {
		if b == 0 {
			return fmt.Sprintf("%d%s", a, ua)
		}
		return fmt.Sprintf("%d%s%d%s", a, ua, b, ub)
	}
	switch {
	case days > 0:
		return two(days, w.day, hours, w.hour)
	case hours > 0:
		return two(hours, w.hour, mins, w.minute)
	default:
		return fmt.Sprintf("%d%s", mins, w.minute)
	}
}
