package command

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrUnsigned is returned by VerifyStatus and VerifyResult for an object
// whose signature is missing or is not the HMAC under the command key: it
// was not written by the probe (a bucket writer may have forged it).
var ErrUnsigned = errors.New("signature does not verify: not written by the probe holding the command key")

// sealMAC is the hex HMAC-SHA256 of v's JSON encoding (encoding/json's,
// struct field order) with its Signature field empty.
func sealMAC(v any, key []byte) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode for signature: %w", err)
	}
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SignStatus sets st.Signature to the HMAC of st (Signature empty) under key.
func SignStatus(st *Status, key []byte) error {
	st.Signature = ""
	sig, err := sealMAC(*st, key)
	if err != nil {
		return fmt.Errorf("sign status of %s: %w", st.ID, err)
	}
	st.Signature = sig
	return nil
}

// VerifyStatus reports ErrUnsigned unless st.Signature is SignStatus's under key.
func VerifyStatus(st Status, key []byte) error {
	sig := st.Signature
	st.Signature = ""
	return checkSeal(st, sig, key, "status of "+st.ID)
}

// SignResult sets r.Signature to the HMAC of r (Signature empty) under key.
func SignResult(r *Result, key []byte) error {
	r.Signature = ""
	sig, err := sealMAC(*r, key)
	if err != nil {
		return fmt.Errorf("sign result of %s: %w", r.ID, err)
	}
	r.Signature = sig
	return nil
}

// VerifyResult reports ErrUnsigned unless r.Signature is SignResult's under key.
func VerifyResult(r Result, key []byte) error {
	sig := r.Signature
	r.Signature = ""
	return checkSeal(r, sig, key, "result of "+r.ID)
}

func checkSeal(v any, sig string, key []byte, what string) error {
	want, err := sealMAC(v, key)
	if err != nil {
		return fmt.Errorf("verify %s: %w", what, err)
	}
	if sig == "" || !hmac.Equal([]byte(sig), []byte(want)) {
		return fmt.Errorf("%s: %w", what, ErrUnsigned)
	}
	return nil
}
