package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Handler is the function. Its fields are set once (NewHandler, or by
// tests) and never changed while it serves.
type Handler struct {
	Cfg   Config
	Src   Source // the source bucket (Cfg.SourceBucket)
	Vault Vault  // the vault bucket, in its own region
	Log   *slog.Logger
	Now   func() time.Time // the clock; time.Now when nil
}

// NewHandler checks the wiring and returns the handler.
func NewHandler(cfg Config, src Source, vault Vault, log *slog.Logger) (*Handler, error) {
	if src == nil || vault == nil {
		return nil, errors.New("offsite: no S3 client")
	}
	if cfg.CopyConcurrency <= 0 {
		cfg.CopyConcurrency = 4
	}
	return &Handler{Cfg: cfg, Src: src, Vault: vault, Log: log}, nil
}

// Result is the invocation's answer (also its log line).
type Result struct {
	Vaulted []VaultResult `json:"vaulted,omitempty"`
	Watched []HostReport  `json:"watched,omitempty"`
	Ignored []string      `json:"ignored,omitempty"`
}

// Handle serves one invocation: a manifest's ObjectCreated (S3 notification
// or EventBridge) vaults that snapshot; a scheduled event runs the dead
// man's switch and the vault prune for every configured host. Other new
// objects are ignored. Every failure is returned, so Lambda's retry (or
// the next schedule) tries again: each step is idempotent.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (Result, error) {
	var res Result
	in, err := parseInput(payload)
	if err != nil {
		return res, err
	}
	res.Ignored = in.Ignored
	var errs []error
	for _, obj := range in.Objects {
		ref, ok := parseManifestKey(obj.Key)
		switch {
		case !ok:
			res.Ignored = append(res.Ignored, "not a snapshot manifest: s3://"+obj.Bucket+"/"+obj.Key)
			continue
		case obj.Bucket != h.Cfg.SourceBucket:
			res.Ignored = append(res.Ignored, "not SOURCE_BUCKET: s3://"+obj.Bucket+"/"+obj.Key)
			continue
		}
		vr, err := h.vaultSnapshot(ctx, obj, ref)
		if err != nil {
			h.log().Error("vault copy failed", "host", ref.Host, "snapshot", ref.ID, "error", err.Error())
			errs = append(errs, err)
			continue
		}
		res.Vaulted = append(res.Vaulted, vr)
	}
	if in.Scheduled {
		reports, err := h.scheduled(ctx)
		res.Watched = reports
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, ig := range res.Ignored {
		h.log().Info("ignored", "what", ig)
	}
	return res, errors.Join(errs...)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

// readAllLimit reads r whole, failing beyond limit bytes.
func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}
