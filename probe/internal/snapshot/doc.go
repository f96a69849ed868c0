// Package snapshot takes, lists, verifies, uploads and prunes the probe's
// snapshots: a database dump, the data directory and the app's revision,
// with a manifest.
package snapshot
