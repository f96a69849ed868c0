// Command webapp is the stand-in application container for tests: a tiny
// static HTTP server that runs in a FROM-scratch image.
//
// It listens on -listen (default :3000) and serves
//
//	/up             200 "OK"
//	/api/v1/health  200 {"status":"ok"}, or 503 {"status":"degraded"} when HEALTH=fail
//	/readyz         200 "ready", or 503 "not ready" when READY=fail
//	/version        200 and the value of VERSION
//
// Scratch images have no curl, so the same binary is its own healthcheck:
// `/webapp -healthcheck URL` GETs URL, prints the outcome and exits 0 on a
// 2xx answer, 1 otherwise. It stops on SIGTERM or SIGINT.
package main
