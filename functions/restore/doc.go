// Command restore is the Lambda function an operator invokes from the AWS
// console (or aws lambda invoke) to list a host's snapshots, hand its probe
// a signed restore command, and follow that command's status and result.
package main
