// Package command is the signed restore command contract between the
// restore function (which writes <host>/commands/<id>.json) and the probe
// (which verifies, claims and runs it, and writes its status and result).
package command
