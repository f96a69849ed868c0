// Package check holds the probe's local checks, one file per kind
// (http, container, disk, tls, postgres, redis), each registered by its
// config type and returning a Result that carries the cause.
package check
