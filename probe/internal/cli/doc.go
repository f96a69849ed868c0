// Package cli parses the probe's command line, wires config to the engines
// and turns outcomes into output and exit codes.
package cli
