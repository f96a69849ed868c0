package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseInput(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		want    input
		wantErr string
	}{
		{"S3 notification, key URL-encoded", readTestdata(t, "s3-manifest-created.json"), input{Objects: []objectRef{{
			"psyfit-backstop", "ops team/psyfit-prod/snapshots/20250301T020000Z-3fa2c1/manifest.json", "3HL4kqtJvjVBH40Nrjfkd"}}}, ""},
		{"EventBridge Object Created", readTestdata(t, "eventbridge-manifest-created.json"), input{Objects: []objectRef{{
			"psyfit-backstop", "psyfit-prod/snapshots/20250301T020000Z-3fa2c1/manifest.json", "3HL4kqtJvjVBH40Nrjfkd"}}}, ""},
		{"scheduled event", readTestdata(t, "scheduled-event.json"), input{Scheduled: true}, ""},
		{"S3 test event", readTestdata(t, "s3-test-event.json"), input{Ignored: []string{"s3:TestEvent"}}, ""},
		{"object removed", readTestdata(t, "s3-manifest-removed.json"), input{Ignored: []string{
			"ObjectRemoved:DeleteMarkerCreated psyfit-prod/snapshots/20250301T020000Z-3fa2c1/manifest.json"}}, ""},
		{"EventBridge Object Deleted", []byte(`{"source":"aws.s3","detail-type":"Object Deleted","detail":{}}`), input{Ignored: []string{"EventBridge Object Deleted"}}, ""},
		{"not JSON", []byte(`{"Records":`), input{}, "decode payload"},
		{"unknown shape", []byte(`{"action":"list"}`), input{}, "neither an S3 notification"},
		{"SNS record", []byte(`{"Records":[{"EventSource":"aws:sns"}]}`), input{}, `record 0: event source "aws:sns" is not aws:s3`},
		{"EventBridge without key", []byte(`{"source":"aws.s3","detail-type":"Object Created","detail":{"bucket":{"name":"b"}}}`), input{}, "no bucket or key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseInput(c.payload)
			if c.wantErr != "" {
				if err == nil || !errors.Is(err, ErrMalformed) || !contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want ErrMalformed with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseManifestKey(t *testing.T) {
	cases := []struct {
		name, key string
		want      snapshotRef
		ok        bool
	}{
		{"host", "psyfit-prod/snapshots/20250301T020000Z-3fa2c1/manifest.json", snapshotRef{"psyfit-prod", "psyfit-prod", "20250301T020000Z-3fa2c1"}, true},
		{"prefix", "ops team/psyfit-prod/snapshots/20250301T020000Z-3fa2c1/manifest.json", snapshotRef{"ops team/psyfit-prod", "psyfit-prod", "20250301T020000Z-3fa2c1"}, true},
		{"dump", "psyfit-prod/snapshots/20250301T020000Z-3fa2c1/db.dump.zst", snapshotRef{}, false},
		{"bad id", "psyfit-prod/snapshots/latest/manifest.json", snapshotRef{}, false},
		{"no host", "snapshots/20250301T020000Z-3fa2c1/manifest.json", snapshotRef{}, false},
		{"nested", "psyfit-prod/snapshots/20250301T020000Z-3fa2c1/x/manifest.json", snapshotRef{}, false},
		{"event", "psyfit-prod/events/20250301T020000Z-3fa2c1.json", snapshotRef{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := parseManifestKey(c.key)
			if ok != c.ok || got != c.want {
				t.Errorf("parseManifestKey(%q) = %+v, %v; want %+v, %v", c.key, got, ok, c.want, c.ok)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
