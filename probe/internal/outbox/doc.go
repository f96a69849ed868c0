// Package outbox queues the probe's alert events on disk before delivering
// them (by mail, as files, or to the store), so none is lost or sent twice.
package outbox
