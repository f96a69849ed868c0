// Package condition parses and evaluates health conditions in the Gatus
// syntax ("[STATUS] == 200", "[BODY].status == ok", "[RESPONSE_TIME] < 2000")
// for the probe's http check and the uptime function alike.
package condition
