package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"backstop/shared/alert"
)

// SourceCloudWatch is the Event.Source of events made from CloudWatch
// alarms, beside the contract's uptime, probe, offsite and restore.
const SourceCloudWatch = "cloudwatch"

// alarmEvent turns a CloudWatch alarm state change into an alert event:
// ALARM is down, INSUFFICIENT_DATA a warning, and OK info (an SNS message
// says when the alarm fired only for the change it reports, so there is no
// downtime to tell). The host is "aws:<region>" from the alarm's ARN, so
// every alarm of one region shares a storm window. The dedup key is the
// alarm and its state change time: SNS redeliveries of one change are one
// mail, every new change is another.
func alarmEvent(a events.CloudWatchAlarmSNSPayload, locale string, loc *time.Location) (alert.Event, error) {
	if a.NewStateValue == "" || a.StateChangeTime == "" {
		return alert.Event{}, fmt.Errorf("alarm %q: no NewStateValue or StateChangeTime: %w", a.AlarmName, ErrMalformed)
	}
	at, err := parseAlarmTime(a.StateChangeTime)
	if err != nil {
		return alert.Event{}, fmt.Errorf("alarm %q: StateChangeTime %q: %v: %w", a.AlarmName, a.StateChangeTime, err, ErrMalformed)
	}
	var state alert.State
	switch a.NewStateValue {
	case "ALARM":
		state = alert.Down
	case "INSUFFICIENT_DATA":
		state = alert.Warn
	case "OK":
		state = alert.Info
	default:
		return alert.Event{}, fmt.Errorf("alarm %q: state %q: %w", a.AlarmName, a.NewStateValue, ErrMalformed)
	}
	region := a.Region
	if parts := strings.Split(a.AlarmARN, ":"); len(parts) > 3 && parts[3] != "" {
		region = parts[3] // arn:aws:cloudwatch:<region>:<account>:alarm:<name>
	}
	if locale != "ja" {
		locale = "en"
	}
	ev := alert.Event{
		Source:     SourceCloudWatch,
		Host:       "aws:" + region,
		Check:      a.AlarmName,
		State:      state,
		Summary:    fmt.Sprintf("%s → %s", a.OldStateValue, a.NewStateValue),
		Detail:     alarmDetail(a),
		At:         at.In(loc),
		IncidentID: a.AlarmARN,
		DedupKey:   "cloudwatch:" + a.AlarmARN + ":" + a.NewStateValue + ":" + at.UTC().Format(time.RFC3339Nano),
		Locale:     locale,
		Value:      a.NewStateValue,
	}
	if a.AlarmDescription != "" {
		ev.Summary = a.AlarmDescription + " (" + ev.Summary + ")"
	}
	return ev, nil
}

// alarmDetail is the reason and the metric the alarm watches.
func alarmDetail(a events.CloudWatchAlarmSNSPayload) string {
	lines := []string{a.NewStateReason}
	t := a.Trigger
	if t.MetricName != "" {
		m := t.Namespace + "/" + t.MetricName
		var dims []string
		for _, d := range t.Dimensions {
			dims = append(dims, d.Name+"="+d.Value)
		}
		if len(dims) > 0 {
			m += " {" + strings.Join(dims, ", ") + "}"
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %g over %d×%ds", m, t.Statistic, t.ComparisonOperator, t.Threshold, t.EvaluationPeriods, t.Period))
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// parseAlarmTime reads CloudWatch's "2025-03-01T00:15:00.000+0000".
func parseAlarmTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05.000-0700", "2006-01-02T15:04:05-0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a CloudWatch time")
}
