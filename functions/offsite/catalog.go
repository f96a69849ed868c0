package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// CatalogFile is the vault catalog's name under <host>/ in the source bucket.
const CatalogFile = "vault-catalog.json"

// catalogSchema is the vault catalog's schema number.
const catalogSchema = 1

// Catalog is <host>/vault-catalog.json: the snapshots of one host that
// have a verified copy in the vault. Only this function writes it, with
// If-Match (If-None-Match: * for the first), so concurrent invocations
// never lose each other's entries.
type Catalog struct {
	Schema    int                   `json:"schema"`
	Host      string                `json:"host"`
	Snapshots map[string]*VaultCopy `json:"snapshots"`
}

// VaultCopy is one snapshot's vault copy.
type VaultCopy struct {
	VaultBucket string    `json:"vault_bucket"`
	Keys        []string  `json:"keys"` // in copy order, manifest.json last
	CopiedAt    time.Time `json:"copied_at"`
	RetainUntil time.Time `json:"retain_until"` // the Object Lock retention of every key
	Size        int64     `json:"size"`         // bytes of all keys

	// Beyond the brief's shape.
	CreatedAt time.Time     `json:"created_at"` // the snapshot's creation (its manifest)
	Objects   []VaultObject `json:"objects"`    // per key: the version and checksums compared
	// PendingPrune is set when GFS no longer keeps the snapshot but Object
	// Lock still does: its versions are deleted once retention ends.
	PendingPrune bool      `json:"pending_prune,omitempty"`
	PruneNote    string    `json:"prune_note,omitempty"`
	PruneSince   time.Time `json:"prune_since,omitzero"`
	// Superseded are earlier vault versions of this snapshot's keys (a
	// manifest rewritten after its first copy, say): still locked, deleted
	// with the snapshot.
	Superseded []VaultObject `json:"superseded,omitempty"`
}

// VaultObject is one object of a vault copy.
type VaultObject struct {
	Key       string `json:"key"`
	VersionID string `json:"version_id"`
	Size      int64  `json:"size"`
	// Checksum is the vault object's ChecksumSHA256 as S3 reports it:
	// full-object (base64) for CopyObject copies, composite ("…-N") for
	// multipart ones.
	Checksum string `json:"checksum_sha256"`
	SHA256   string `json:"sha256"` // hex SHA-256 of the whole object, from the manifest
	Method   string `json:"method"` // copy | multipart | existing
	Parts    int    `json:"parts,omitempty"`
}

func newCatalog(host string) *Catalog {
	return &Catalog{Schema: catalogSchema, Host: host, Snapshots: map[string]*VaultCopy{}}
}

// sortedIDs returns the catalog's snapshot ids, oldest first (ids sort by time).
func (c *Catalog) sortedIDs() []string {
	ids := make([]string, 0, len(c.Snapshots))
	for id := range c.Snapshots {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func catalogKey(hostPrefix string) string { return hostPrefix + "/" + CatalogFile }

// loadCatalog reads a host's catalog and its ETag; a missing catalog is
// an empty one with ETag "".
func loadCatalog(ctx context.Context, s Source, bucket, hostPrefix, host string) (*Catalog, string, error) {
	c := newCatalog(host)
	etag, _, err := getJSON(ctx, s, bucket, catalogKey(hostPrefix), "", c)
	if errors.Is(err, errNotFound) {
		return newCatalog(host), "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("load vault catalog: %w", err)
	}
	if c.Schema != catalogSchema {
		return nil, "", fmt.Errorf("load vault catalog s3://%s/%s: schema %d is not %d", bucket, catalogKey(hostPrefix), c.Schema, catalogSchema)
	}
	if c.Snapshots == nil {
		c.Snapshots = map[string]*VaultCopy{}
	}
	return c, etag, nil
}

// catalogAttempts bounds the read-modify-write rounds of updateCatalog.
const catalogAttempts = 8

// updateCatalog applies edit to the host's catalog and writes it back
// with If-Match on the ETag it was read with (If-None-Match: * when there
// was none); when another writer got in between, it reads the catalog
// again and re-applies edit. edit returns false to write nothing.
func updateCatalog(ctx context.Context, s Source, bucket, hostPrefix, host string, edit func(*Catalog) bool) error {
	for range catalogAttempts {
		c, etag, err := loadCatalog(ctx, s, bucket, hostPrefix, host)
		if err != nil {
			return err
		}
		if !edit(c) {
			return nil
		}
		_, err = putJSON(ctx, s, bucket, catalogKey(hostPrefix), c, etag)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errPrecondition) {
			return fmt.Errorf("update vault catalog: %w", err)
		}
	}
	return fmt.Errorf("update vault catalog s3://%s/%s: still changing after %d attempts", bucket, catalogKey(hostPrefix), catalogAttempts)
}
