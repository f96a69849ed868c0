package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/s3err"
	"backstop/shared/alert"
)

// ErrMalformed marks input that will never become a mail however often it
// is retried: unreadable JSON, an event without its required fields.
var ErrMalformed = errors.New("malformed alert input")

// maxEventBytes bounds what is read of one event object.
const maxEventBytes = 1 << 20

// collect turns the payload into events. It recognises: {"Records":
// [...]} with S3 notification records (eventSource aws:s3) or SNS records
// (EventSource aws:sns); S3's s3:TestEvent; an EventBridge "Object
// Created" event from S3 (source aws.s3); and one alert.Event. Each
// record is decoded on its own, so one bad record costs only itself.
func (h *Handler) collect(ctx context.Context, payload json.RawMessage, res *Result) ([]item, []error) {
	var top struct {
		Records    []json.RawMessage `json:"Records"`
		Event      string            `json:"Event"` // s3:TestEvent
		Service    string            `json:"Service"`
		Source     string            `json:"source"`      // EventBridge: aws.s3
		DetailType string            `json:"detail-type"` // EventBridge: Object Created
	}
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, []error{fmt.Errorf("decode payload: %v: %w", err, ErrMalformed)}
	}
	switch {
	case top.Event == "s3:TestEvent":
		res.Ignored++
		h.logger().Info("S3 test event ignored", "service", top.Service)
		return nil, nil
	case top.Source == "aws.s3" && top.DetailType != "":
		it, ok, err := h.fromEventBridge(ctx, payload, res)
		if err != nil {
			return nil, []error{err}
		}
		if !ok {
			return nil, nil
		}
		return []item{it}, nil
	case top.Records == nil:
		ev, err := decodeEvent(payload)
		if err != nil {
			return nil, []error{fmt.Errorf("direct invocation: %w", err)}
		}
		return []item{{origin: "direct", ev: ev}}, nil
	}
	var items []item
	var errs []error
	for i, raw := range top.Records {
		var src struct {
			Lower string `json:"eventSource"`
			Upper string `json:"EventSource"`
		}
		_ = json.Unmarshal(raw, &src)
		switch {
		case src.Lower == "aws:s3":
			it, ok, err := h.fromS3(ctx, raw, res)
			if err != nil {
				errs = append(errs, fmt.Errorf("record %d: %w", i, err))
			} else if ok {
				items = append(items, it)
			}
		case src.Upper == "aws:sns":
			it, err := h.fromSNS(raw)
			if err != nil {
				errs = append(errs, fmt.Errorf("record %d: %w", i, err))
			} else {
				items = append(items, it)
			}
		default:
			errs = append(errs, fmt.Errorf("record %d: event source %q: %w", i, src.Lower+src.Upper, ErrMalformed))
		}
	}
	return items, errs
}

// isEventKey says whether an S3 key names an event object:
// [<prefix>/]<host>/events/<name>.json or uptime/events/<name>.
func isEventKey(key string) bool {
	if strings.HasPrefix(key, "uptime/events/") && len(key) > len("uptime/events/") {
		return true
	}
	i := strings.LastIndex(key, "/events/")
	return i > 0 && strings.HasSuffix(key, ".json") && !strings.Contains(key[i+len("/events/"):], "/")
}

// fromS3 reads the event object one S3 notification record names;
// records that are not about a new object are ignored (ok false).
func (h *Handler) fromS3(ctx context.Context, raw json.RawMessage, res *Result) (item, bool, error) {
	var rec events.S3EventRecord // the library's type: the same fields S3 sends
	if err := json.Unmarshal(raw, &rec); err != nil {
		return item{}, false, fmt.Errorf("decode S3 record: %v: %w", err, ErrMalformed)
	}
	// S3 URL-encodes keys in notifications, with + for a space.
	key, err := url.QueryUnescape(rec.S3.Object.Key)
	if err != nil {
		return item{}, false, fmt.Errorf("S3 record key %q: %v: %w", rec.S3.Object.Key, err, ErrMalformed)
	}
	if !strings.HasPrefix(rec.EventName, "ObjectCreated:") {
		res.Ignored++
		h.logger().Info("S3 record ignored", "event", rec.EventName, "object", "s3://"+rec.S3.Bucket.Name+"/"+key)
		return item{}, false, nil
	}
	return h.readEvent(ctx, rec.S3.Bucket.Name, key, rec.S3.Object.VersionID, res)
}

// fromEventBridge reads the event object of an EventBridge event from S3
// (detail-type "Object Created"), as template.yaml routes them.
func (h *Handler) fromEventBridge(ctx context.Context, payload json.RawMessage, res *Result) (item, bool, error) {
	var ev struct {
		DetailType string `json:"detail-type"`
		Detail     struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object struct {
				Key       string `json:"key"`
				VersionID string `json:"version-id"`
			} `json:"object"`
		} `json:"detail"`
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return item{}, false, fmt.Errorf("decode EventBridge event: %v: %w", err, ErrMalformed)
	}
	if ev.DetailType != "Object Created" {
		res.Ignored++
		h.logger().Info("EventBridge event ignored", "detail_type", ev.DetailType, "object", "s3://"+ev.Detail.Bucket.Name+"/"+ev.Detail.Object.Key)
		return item{}, false, nil
	}
	key, missing := ev.Detail.Object.Key, res.Missing
	it, ok, err := h.readEvent(ctx, ev.Detail.Bucket.Name, key, ev.Detail.Object.VersionID, res)
	// AWS documents these keys as given, but keys with a space or a
	// colon have been seen URL-encoded as in S3's own notifications: try
	// the decoded key before calling the object gone.
	if dec, derr := url.QueryUnescape(key); err == nil && !ok && res.Missing > missing && derr == nil && dec != key {
		res.Missing--
		return h.readEvent(ctx, ev.Detail.Bucket.Name, dec, ev.Detail.Object.VersionID, res)
	}
	return it, ok, err
}

// readEvent reads the event object at bucket/key (at version, when given:
// still readable when the key was overwritten or deleted since). Keys
// that are not event objects are ignored (ok false); an object that is
// gone is counted as missing and skipped, since retrying cannot bring it
// back.
func (h *Handler) readEvent(ctx context.Context, bucket, key, version string, res *Result) (item, bool, error) {
	origin := "s3://" + bucket + "/" + key
	if !isEventKey(key) {
		res.Ignored++
		h.logger().Info("not an event object; ignored", "object", origin)
		return item{}, false, nil
	}
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if version != "" && version != "null" {
		in.VersionId = aws.String(version)
	}
	out, err := h.S3.GetObject(ctx, in)
	if err != nil {
		if s3err.IsNotFound(err) {
			res.Missing++
			h.logger().Warn("event object is gone; skipped", "object", origin, "version", version)
			return item{}, false, nil
		}
		return item{}, false, fmt.Errorf("get %s: %w", origin, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxEventBytes+1))
	if err != nil {
		return item{}, false, fmt.Errorf("read %s: %w", origin, err)
	}
	if len(data) > maxEventBytes {
		return item{}, false, fmt.Errorf("event %s: larger than %d bytes: %w", origin, maxEventBytes, ErrMalformed)
	}
	ev, err := decodeEvent(data)
	if err != nil {
		return item{}, false, fmt.Errorf("event %s: %w", origin, err)
	}
	return item{origin: origin, ev: ev}, true, nil
}

// fromSNS turns an SNS record into an event: a CloudWatch alarm state
// change, or an alert.Event published as the message.
func (h *Handler) fromSNS(raw json.RawMessage) (item, error) {
	var rec events.SNSEventRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return item{}, fmt.Errorf("decode SNS record: %v: %w", err, ErrMalformed)
	}
	origin := "sns:" + rec.SNS.MessageID
	var probe struct {
		AlarmName string `json:"AlarmName"`
	}
	if err := json.Unmarshal([]byte(rec.SNS.Message), &probe); err != nil {
		return item{}, fmt.Errorf("SNS message %s: not JSON: %w", rec.SNS.MessageID, ErrMalformed)
	}
	if probe.AlarmName == "" {
		ev, err := decodeEvent([]byte(rec.SNS.Message))
		if err != nil {
			return item{}, fmt.Errorf("SNS message %s: %w", rec.SNS.MessageID, err)
		}
		return item{origin: origin, ev: ev}, nil
	}
	var a events.CloudWatchAlarmSNSPayload
	if err := json.Unmarshal([]byte(rec.SNS.Message), &a); err != nil {
		return item{}, fmt.Errorf("SNS message %s: alarm: %v: %w", rec.SNS.MessageID, err, ErrMalformed)
	}
	ev, err := alarmEvent(a, h.AlarmLocale, h.location())
	if err != nil {
		return item{}, fmt.Errorf("SNS message %s: %w", rec.SNS.MessageID, err)
	}
	return item{origin: origin, ev: ev}, nil
}

// decodeEvent parses and checks one alert.Event.
func decodeEvent(data []byte) (alert.Event, error) {
	var ev alert.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("decode alert event: %v: %w", err, ErrMalformed)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"source", ev.Source}, {"host", ev.Host}, {"check", ev.Check}, {"state", string(ev.State)}, {"dedup_key", ev.DedupKey},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if ev.At.IsZero() {
		missing = append(missing, "at")
	}
	if len(missing) > 0 {
		return ev, fmt.Errorf("alert event %q: missing %s: %w", ev.DedupKey, strings.Join(missing, ", "), ErrMalformed)
	}
	switch ev.State {
	case alert.Down, alert.Up, alert.Warn, alert.Info:
	default:
		return ev, fmt.Errorf("alert event %q: state %q is not down, up, warn or info: %w", ev.DedupKey, ev.State, ErrMalformed)
	}
	if ev.Locale != "ja" {
		ev.Locale = "en"
	}
	return ev, nil
}
