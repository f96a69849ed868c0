// Package manifest defines the snapshot manifest (manifest.json, schema 1)
// and the local catalog of snapshots that the probe and the cloud functions
// share.
package manifest
