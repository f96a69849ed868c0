// Package config loads, expands, defaults and validates the probe's YAML
// configuration, naming the field at fault in every error and keeping
// secrets out of anything printed.
package config
