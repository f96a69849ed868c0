// Package testenv starts the real components tests need — a throwaway
// PostgreSQL cluster, the Docker engine and FROM-scratch test images,
// redis-server, TLS servers with chosen certificates, a small tmpfs — and
// stops them when the test ends. In CI a missing component fails the test.
package testenv
