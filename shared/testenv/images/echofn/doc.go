// Command echofn is a tiny Lambda function (aws-lambda-go, Runtime API
// only) that testenv's own tests run under the Lambda harness: it echoes
// its payload with what the runtime told it, and fails, sleeps, exits or
// answers big on request.
//
// Payload (a JSON object; every field optional):
//
//	{"fail": "why"}        return an error (errorType "echoError")
//	{"sleep": "2s"}        sleep before answering, ignoring the deadline
//	{"exit": 3}            exit the process mid-invocation
//	{"bytes": 7000000}     answer with that many bytes of padding
//	{"post": "unknown"}    POST to the Runtime API itself (see post) and report the answer
//	{"secret": "name"}     read a Secrets Manager secret (SDK default config)
//
// Environment: ECHOFN_INIT_FAIL=msg makes init fail (log.Fatal before
// lambda.Start), as a function with a bad config does.
package main
