// Package s3err classifies S3 errors the way every function needs them: a
// missing key or version, a lost conditional write, a refusal.
package s3err

import (
	"errors"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// StatusOf is the HTTP status of an S3 response error; 0 when err is none.
func StatusOf(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// Code is the S3 error code ("NoSuchKey", "PreconditionFailed"); "" when
// the response had none (a HEAD's errors carry no body).
func Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// IsNotFound says whether err means the object (or version) does not
// exist: NoSuchKey, NoSuchVersion, or a bodiless 404 from HEAD. A missing
// bucket (NoSuchBucket, also a 404) is not a missing key: it is a
// misconfiguration, and must not read as "nothing stored yet".
func IsNotFound(err error) bool {
	var nk *types.NoSuchKey
	if errors.As(err, &nk) {
		return true
	}
	switch Code(err) {
	case "NoSuchKey", "NoSuchVersion", "NotFound":
		return true
	case "":
		return StatusOf(err) == http.StatusNotFound
	}
	return false
}

// IsPreconditionFailed says whether a conditional write (If-Match,
// If-None-Match) lost: 412, or S3's 409 ConditionalRequestConflict when
// two such writes race.
func IsPreconditionFailed(err error) bool {
	switch Code(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	s := StatusOf(err)
	return s == http.StatusPreconditionFailed || s == http.StatusConflict
}

// IsAccessDenied says whether S3 refused the request with 403, as it does
// for the delete of an object version still under Object Lock retention.
func IsAccessDenied(err error) bool {
	return Code(err) == "AccessDenied" || StatusOf(err) == http.StatusForbidden
}
