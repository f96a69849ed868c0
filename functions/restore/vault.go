package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// vaultCatalogFile is the offsite function's record of the vault copies
// of one host's snapshots, <host>/vault-catalog.json. The restore
// function reads only which ids it lists:
//
//	{"snapshots": {"<snapshot id>": {...}, ...}, ...}
//
// An id is vaulted when it is a key of "snapshots" (the offsite function
// adds it once every object is copied and its checksum compared). Other
// fields, and the entries' contents, are the offsite function's.
const vaultCatalogFile = "vault-catalog.json"

// vaultCatalog is what the restore function knows of a host's vault copies.
type vaultCatalog struct {
	key   string                     // s3://bucket/<host>/vault-catalog.json
	found bool                       // the catalog exists
	ids   map[string]json.RawMessage // vaulted snapshot ids
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
		Snapshots map[string]json.RawMessage `json:"snapshots"`
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

// describe says where the vaulted flags come from.
func (v *vaultCatalog) describe() string {
	if !v.found {
		return "no vault catalog at " + v.key + ": nothing is vaulted yet"
	}
	return fmt.Sprintf("%s lists %d snapshots", v.key, len(v.ids))
}
