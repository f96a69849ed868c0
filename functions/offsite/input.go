package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"backstop/shared/manifest"
)

// ErrMalformed marks input that no retry can make work.
var ErrMalformed = errors.New("malformed offsite input")

// objectRef is one new object an S3 notification names.
type objectRef struct {
	Bucket, Key, Version string
}

// input is what one invocation asks for.
type input struct {
	Objects   []objectRef // new objects (S3 notification records or an EventBridge "Object Created")
	Scheduled bool        // an EventBridge scheduled event
	Ignored   []string    // what was recognised and left alone, and why
}

// parseInput recognises: {"Records": [...]} with S3 notification records
// (eventSource aws:s3; only ObjectCreated:* counts); S3's s3:TestEvent; an
// EventBridge event from S3 (source aws.s3, detail-type "Object Created");
// and an EventBridge scheduled event (source aws.events, detail-type
// "Scheduled Event"). S3 URL-encodes keys in its notifications (+ for a
// space); EventBridge gives them as they are.
func parseInput(payload []byte) (input, error) {
	var in input
	var top struct {
		Records    []json.RawMessage `json:"Records"`
		Event      string            `json:"Event"`
		Source     string            `json:"source"`
		DetailType string            `json:"detail-type"`
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
	if err := json.Unmarshal(payload, &top); err != nil {
		return in, fmt.Errorf("decode payload: %v: %w", err, ErrMalformed)
	}
	switch {
	case top.Event == "s3:TestEvent":
		in.Ignored = append(in.Ignored, "s3:TestEvent")
		return in, nil
	case top.Source == "aws.events" && top.DetailType == "Scheduled Event":
		in.Scheduled = true
		return in, nil
	case top.Source == "aws.s3":
		if top.DetailType != "Object Created" {
			in.Ignored = append(in.Ignored, "EventBridge "+top.DetailType)
			return in, nil
		}
		if top.Detail.Bucket.Name == "" || top.Detail.Object.Key == "" {
			return in, fmt.Errorf("EventBridge Object Created: no bucket or key: %w", ErrMalformed)
		}
		in.Objects = append(in.Objects, objectRef{top.Detail.Bucket.Name, top.Detail.Object.Key, top.Detail.Object.VersionID})
		return in, nil
	case top.Records == nil:
		return in, fmt.Errorf("payload is neither an S3 notification, an EventBridge S3 event nor a scheduled event: %w", ErrMalformed)
	}
	for i, raw := range top.Records {
		var rec events.S3EventRecord // the library's type: the same fields S3 sends
		if err := json.Unmarshal(raw, &rec); err != nil {
			return in, fmt.Errorf("record %d: %v: %w", i, err, ErrMalformed)
		}
		if rec.EventSource != "aws:s3" {
			return in, fmt.Errorf("record %d: event source %q is not aws:s3: %w", i, rec.EventSource, ErrMalformed)
		}
		if !strings.HasPrefix(rec.EventName, "ObjectCreated:") {
			in.Ignored = append(in.Ignored, rec.EventName+" "+rec.S3.Object.Key)
			continue
		}
		key, err := url.QueryUnescape(rec.S3.Object.Key)
		if err != nil || rec.S3.Bucket.Name == "" || key == "" {
			return in, fmt.Errorf("record %d: bucket %q key %q: %w", i, rec.S3.Bucket.Name, rec.S3.Object.Key, ErrMalformed)
		}
		in.Objects = append(in.Objects, objectRef{rec.S3.Bucket.Name, key, rec.S3.Object.VersionID})
	}
	return in, nil
}

// snapshotRef is a snapshot's manifest key taken apart:
// [<prefix>/]<host>/snapshots/<id>/manifest.json.
type snapshotRef struct {
	HostPrefix string // [<prefix>/]<host>: the catalog is <HostPrefix>/vault-catalog.json
	Host       string
	ID         string
}

// Dir is the snapshot's key prefix, with its trailing slash.
func (s snapshotRef) Dir() string { return s.HostPrefix + "/snapshots/" + s.ID + "/" }

// parseManifestKey says whether key is a snapshot manifest's, and whose.
func parseManifestKey(key string) (snapshotRef, bool) {
	rest, ok := strings.CutSuffix(key, "/"+manifest.ManifestFile)
	if !ok {
		return snapshotRef{}, false
	}
	i := strings.LastIndex(rest, "/snapshots/")
	if i <= 0 {
		return snapshotRef{}, false
	}
	ref := snapshotRef{HostPrefix: rest[:i], ID: rest[i+len("/snapshots/"):]}
	if _, err := manifest.ParseID(ref.ID); err != nil {
		return snapshotRef{}, false
	}
	ref.Host = ref.HostPrefix[strings.LastIndex(ref.HostPrefix, "/")+1:]
	return ref, ref.Host != ""
}
