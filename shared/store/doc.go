// Package store keeps objects off the host — in an S3 bucket or a local
// directory (a NAS mount) — behind one Store contract that both pass.
package store
