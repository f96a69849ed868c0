package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"backstop/functions/internal/s3err"
	"backstop/shared/alert"
	"backstop/shared/manifest"
)

// Keys of the function's own objects in the source bucket.
const (
	StateKey     = "offsite/state.json"
	EventsPrefix = "offsite/events/"
	// HeartbeatFile is the probe's liveness object under <host>/.
	HeartbeatFile = "heartbeat.json"
)

// Checks the dead man's switch observes, per host.
const (
	CheckSnapshot  = "vault-snapshot"
	CheckHeartbeat = "heartbeat"
)

// policy: one bad observation opens an incident, one good one resolves it,
// and an ongoing condition alerts once (no reminders).
var policy = alert.Policy{FailureThreshold: 1, SuccessThreshold: 1, Reminder: -1}

// State is offsite/state.json: one alert tracker per host, and the events
// saved with it but not yet confirmed written (written right after each
// save, and by any later run when that failed).
type State struct {
	Schema    int                       `json:"schema"`
	UpdatedAt time.Time                 `json:"updated_at"`
	Hosts     map[string]*alert.Tracker `json:"hosts"`
	Outbox    []EventObject             `json:"outbox,omitempty"`
}

// EventObject is an alert event with the key of the object that holds it.
type EventObject struct {
	alert.Event
	Key string `json:"key"`
}

// HostReport is what the schedule found for one host.
type HostReport struct {
	Host           string   `json:"host"`
	NewestSnapshot string   `json:"newest_snapshot,omitempty"`
	Snapshot       string   `json:"snapshot"`  // the observation's summary
	Heartbeat      string   `json:"heartbeat"` // likewise
	Events         []string `json:"events,omitempty"`
	Pruned         []string `json:"pruned,omitempty"`
	PendingPrune   []string `json:"pending_prune,omitempty"`
}

// scheduled runs, for every host of HOSTS, the two watches and the prune,
// then records the observations in offsite/state.json and writes the
// events they raise. A host whose objects cannot be read is skipped for
// this run (no observation: neither alert nor resolve) and the run fails.
func (h *Handler) scheduled(ctx context.Context) ([]HostReport, error) {
	now := h.now().UTC()
	var (
		errs    []error
		reports []HostReport
		obs     = map[string][]alert.Observation{}
	)
	for _, host := range h.Cfg.Hosts {
		r := HostReport{Host: host}
		hostPrefix := h.Cfg.KeyPrefix + host
		cat, _, err := loadCatalog(ctx, h.Src, h.Cfg.SourceBucket, hostPrefix, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", host, err))
		} else {
			o := h.snapshotObservation(cat, now)
			r.NewestSnapshot, r.Snapshot = o.Value, o.Summary
			obs[host] = append(obs[host], o)
			r.Pruned, r.PendingPrune, err = h.prune(ctx, hostPrefix, host, cat)
			if err != nil {
				errs = append(errs, fmt.Errorf("host %s: %w", host, err))
			}
		}
		if o, err := h.heartbeatObservation(ctx, hostPrefix, now); err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", host, err))
		} else {
			r.Heartbeat = o.Summary
			obs[host] = append(obs[host], o)
		}
		reports = append(reports, r)
	}
	raised, err := h.record(ctx, obs, now)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ev := range raised {
		for i := range reports {
			if reports[i].Host == ev.Host {
				reports[i].Events = append(reports[i].Events, ev.Key)
			}
		}
	}
	return reports, errors.Join(errs...)
}

// snapshotObservation: down when the host's newest vaulted snapshot is
// older than MaxSnapshotAge, or there is none.
func (h *Handler) snapshotObservation(cat *Catalog, now time.Time) alert.Observation {
	o := alert.Observation{Check: CheckSnapshot, At: now}
	var newest string
	var newestAt time.Time
	for id, e := range cat.Snapshots {
		at := e.CreatedAt
		if at.IsZero() {
			at, _ = manifest.ParseID(id)
		}
		if newest == "" || at.After(newestAt) || at.Equal(newestAt) && id > newest {
			newest, newestAt = id, at
		}
	}
	limit := h.Cfg.MaxSnapshotAge
	if newest == "" {
		o.Level = alert.LevelDown
		o.Summary = "no snapshot in the vault"
		o.Detail = fmt.Sprintf("%s has no vaulted snapshot: the backup did not run, or its copy to the vault %s failed.", cat.Host, h.Cfg.VaultBucket)
		return o
	}
	age := now.Sub(newestAt)
	o.Value = newest
	if age > limit {
		o.Level = alert.LevelDown
		o.Summary = fmt.Sprintf("newest vaulted snapshot is %s old (limit %s)", roundAge(age), limit)
		o.Detail = fmt.Sprintf("The newest snapshot of %s in the vault %s is %s, taken %s. The nightly backup did not run, did not reach S3, or its vault copy failed.",
			cat.Host, h.Cfg.VaultBucket, newest, newestAt.UTC().Format(time.RFC3339))
		return o
	}
	o.Level = alert.LevelOK
	o.Summary = fmt.Sprintf("newest vaulted snapshot is %s old", roundAge(age))
	return o
}

// heartbeatObservation: down when <host>/heartbeat.json is missing or last
// written more than MaxHeartbeatAge ago (by S3's clock, its LastModified).
func (h *Handler) heartbeatObservation(ctx context.Context, hostPrefix string, now time.Time) (alert.Observation, error) {
	key := hostPrefix + "/" + HeartbeatFile
	o := alert.Observation{Check: CheckHeartbeat, At: now}
	head, err := h.Src.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(h.Cfg.SourceBucket), Key: aws.String(key)})
	if s3err.IsNotFound(err) {
		o.Level = alert.LevelDown
		o.Summary = "no heartbeat"
		o.Detail = fmt.Sprintf("s3://%s/%s does not exist: the probe never reported, or its store is not this bucket.", h.Cfg.SourceBucket, key)
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("head s3://%s/%s: %w", h.Cfg.SourceBucket, key, err)
	}
	at := aws.ToTime(head.LastModified)
	age := now.Sub(at)
	limit := h.Cfg.MaxHeartbeatAge
	o.Value = at.UTC().Format(time.RFC3339)
	if age > limit {
		o.Level = alert.LevelDown
		o.Summary = fmt.Sprintf("heartbeat is %s old (limit %s)", roundAge(age), limit)
		o.Detail = fmt.Sprintf("s3://%s/%s was last written %s: the host or its probe is gone, or it cannot reach S3.", h.Cfg.SourceBucket, key, o.Value)
		return o, nil
	}
	o.Level = alert.LevelOK
	o.Summary = fmt.Sprintf("heartbeat is %s old", roundAge(age))
	return o, nil
}

func roundAge(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}

// stateAttempts bounds the read-modify-write rounds of record.
const stateAttempts = 8

// record feeds the observations to the hosts' trackers in
// offsite/state.json (If-Match; re-applied on a lost race, so two runs at
// once never alert twice), then writes the raised events, and any left
// from earlier runs, to offsite/events/ with If-None-Match (an event
// already written is not written again).
func (h *Handler) record(ctx context.Context, obs map[string][]alert.Observation, now time.Time) ([]EventObject, error) {
	for range stateAttempts {
		st := &State{}
		etag, _, err := getJSON(ctx, h.Src, h.Cfg.SourceBucket, StateKey, "", st)
		switch {
		case errors.Is(err, errNotFound):
			st, etag = &State{}, ""
		case err != nil:
			return nil, fmt.Errorf("load alert state: %w", err)
		case st.Schema != 1:
			return nil, fmt.Errorf("load alert state s3://%s/%s: schema %d is not 1", h.Cfg.SourceBucket, StateKey, st.Schema)
		}
		st.Schema, st.UpdatedAt = 1, now
		if st.Hosts == nil {
			st.Hosts = map[string]*alert.Tracker{}
		}
		var raised []EventObject
		for _, host := range h.Cfg.Hosts {
			tr := st.Hosts[host]
			if tr == nil {
				tr = alert.NewTracker("offsite", host, h.Cfg.Locale)
				st.Hosts[host] = tr
			}
			tr.Schema, tr.Source, tr.Host, tr.Locale = 1, "offsite", host, h.Cfg.Locale
			for _, o := range obs[host] {
				for _, ev := range tr.Observe(policy, o) {
					raised = append(raised, EventObject{Event: ev, Key: eventKey(ev)})
				}
			}
		}
		st.Outbox = append(st.Outbox, raised...)
		etag, err = putJSON(ctx, h.Src, h.Cfg.SourceBucket, StateKey, st, etag)
		if errors.Is(err, errPrecondition) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("save alert state: %w", err)
		}
		for _, ev := range raised {
			h.log().Warn("alert", "host", ev.Host, "check", ev.Check, "state", string(ev.State), "summary", ev.Summary, "event", ev.Key)
		}
		var left []EventObject
		var errs []error
		for _, ev := range st.Outbox {
			if err := h.writeEvent(ctx, ev); err != nil {
				left = append(left, ev)
				errs = append(errs, err)
			}
		}
		if len(left) < len(st.Outbox) {
			st.Outbox = left
			if _, err := putJSON(ctx, h.Src, h.Cfg.SourceBucket, StateKey, st, etag); err != nil {
				// The events are out; a later run finds them written.
				h.log().Info("could not clear the event outbox; a later run will", "error", err.Error())
			}
		}
		return raised, errors.Join(errs...)
	}
	return nil, fmt.Errorf("save alert state s3://%s/%s: still changing after %d attempts", h.Cfg.SourceBucket, StateKey, stateAttempts)
}

// writeEvent writes one event object; one already there is fine.
func (h *Handler) writeEvent(ctx context.Context, ev EventObject) error {
	_, err := putJSON(ctx, h.Src, h.Cfg.SourceBucket, ev.Key, ev.Event, "")
	if err != nil && !errors.Is(err, errPrecondition) {
		return fmt.Errorf("write alert event: %w", err)
	}
	return nil
}

// eventKey is offsite/events/<time>-<hash of the dedup key>.json.
func eventKey(ev alert.Event) string {
	sum := sha256.Sum256([]byte(ev.DedupKey))
	return EventsPrefix + ev.At.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(sum[:6]) + ".json"
}
