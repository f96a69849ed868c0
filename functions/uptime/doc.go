// Command uptime is the scheduled Lambda function that checks the public
// endpoints from outside, keeps their state in S3 and writes alert events
// for the alert function.
package main
