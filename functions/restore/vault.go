package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// vaultCatalogFile is the offsite function's record of the vault copies
// of one host's snapshots, <host>/vault-catalog.json (functions/offsite
// Catalog, schema 1):
//
//	{"schema": 1, "host": "...", "snapshots": {"<snapshot id>": {"vault_bucket": "...", "copied_at": "...", "retain_until": "...", ...}}}
//
// An id is vaulted when it is a key of "snapshots": the offsite function
// adds it only once every object is copied and its checksum compared.
// The restore function reads just the fields of vaultCopy.
const vaultCatalogFile = "vault-catalog.json"

// vaultCopy is what the restore function shows of one vault copy.
type vaultCopy struct {
	VaultBucket string    `json:"vault_bucket"`
	CopiedAt    time.Time `json:"copied_at"`
	RetainUntil time.Time `json:"retain_until"`
}

// vaultCatalog is what the restore function knows of a host's vault copies.
type vaultCatalog struct {
	key   string                // s3://bucket/<host>/vault-catalog.json
	found bool                  // the catalog exists
	ids   map[string]*vaultCopy // vaulted snapshot ids
}

// vaultCatalog reads host's vault catalog. A missing catalog is an empty
// one (nothing vaulted yet); one that does not decode is an error, since
// the operator must then learn why every snapshot reads as not vaulted.
func (h *Handler) vaultCatalog(ctx context.Context, host string) (*vaultCatalog, error) {
	key := h.hostKey(host, vaultCatalogFile)
	v := &vaultCatalog{key: "s3://" + h.Bucket + "/" + key}
	data, err := h.get(ctx, key)
	switch {
	case errors.Is(err, errNotFound):
		return v, nil
	case err != nil:
		return nil, err
	}
	var doc struct {
		Snapshots map[string]*vaultCopy `json:"snapshots"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("vault catalog %s: %w", v.key, err)
	}
	v.found, v.ids = true, doc.Snapshots
	return v, nil
}

func (v *vaultCatalog) has(id string) bool {
	_, ok := v.ids[id]
	return ok
}

// copyOf returns id's vault copy (nil when it has none, or an entry
// without details).
func (v *vaultCatalog) copyOf(id string) *vaultCopy { return v.ids[id] }

// describe says where the vaulted flags come from.
func (v *vaultCatalog) describe() string {
	if !v.found {
		return "no vault catalog at " + v.key + ": nothing is vaulted yet"
	}
	return fmt.Sprintf("%s lists %d snapshots", v.key, len(v.ids))
}
