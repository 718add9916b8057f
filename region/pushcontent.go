package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/residency"
)

// pushContent follows the residency policy's push_content for the region's jurisdiction, so
// the dispatcher asks, on every push, what the policy in force says now. The policy is the
// one the gateways follow, read from the same discovery key: there is no second copy of the
// setting that could say full while the jurisdiction says minimal.
type pushContent struct {
	holder       *residency.Holder
	jurisdiction string
}

// loadPushContent reads the policy at key. A policy that cannot be read or is invalid fails the
// start: the region would not know whether its pushes may carry content. A missing key is not
// an error (a region may start before the policy is published, as in tests): pushes carry
// content until a policy appears, and the watch applies it as soon as it does. A gateway does
// not start without the policy, so no request routed by a gateway meets a region in that state.
func loadPushContent(ctx context.Context, src residency.Source, key, jurisdiction string, log *slog.Logger) (*pushContent, error) {
	p := &pushContent{holder: &residency.Holder{}, jurisdiction: jurisdiction}
	err := p.holder.Load(ctx, src, key)
	switch {
	case errors.Is(err, discovery.ErrNotFound):
		log.Warn("no residency policy yet: pushes carry their content until one is published", "key", key)
		return p, nil
	case err != nil:
		return nil, fmt.Errorf("push content: %w", err)
	}
	mode, ok := p.holder.Current().PushContent(jurisdiction)
	if !ok {
		log.Warn("the residency policy does not name the region's jurisdiction: pushes carry their content", "key", key, "jurisdiction", jurisdiction)
	}
	log.Info("push content", "push_content", mode, "jurisdiction", jurisdiction, "policy_version", p.holder.Current().Version)
	return p, nil
}

// minimal reports whether the policy in force says minimal for the region's jurisdiction.
func (p *pushContent) minimal() bool {
	mode, _ := p.holder.Current().PushContent(p.jurisdiction)
	return mode == residency.PushMinimal
}

// watch follows the policy until ctx ends (residency.Holder.Watch: an invalid or older policy is
// refused and the one in force stays).
func (p *pushContent) watch(ctx context.Context, src residency.Source, key string, log *slog.Logger) {
	p.holder.Watch(ctx, src, key, log)
}

// gatewayURL is the jurisdiction's own gateway in the policy in force ("" when none is
// published yet): the base of the links the region's email carries.
func (p *pushContent) gatewayURL() string {
	return strings.TrimSuffix(p.holder.Current().GatewayURL(p.jurisdiction), "/")
}
