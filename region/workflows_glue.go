package region

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gocql/gocql"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/workflows"
)

// workflowSender hands a workflow's channel-step notifications to fan-out as the API does a
// send: sealed for the user, on the tier's ingress topic, acknowledged by Kafka (acks=all).
type workflowSender struct {
	region   string
	producer *kafka.Producer
	keys     notify.Sealer
	log      *deliverylog.Log
}

func (s *workflowSender) Send(ctx context.Context, e notify.Event) error {
	msg, _, err := notify.EventMessage(ctx, s.keys, IngressTopic(s.region, e.Tier), e)
	if err != nil {
		return err // notify.ErrErased for an erased user
	}
	if err := s.producer.Send(ctx, msg); err != nil {
		return err
	}
	if err := s.log.Accepted(ctx, e); err != nil {
		// The event is durable; fan-out records it too.
		return nil
	}
	return nil
}

// workflowStatus reads what became of a workflow step's message: its delivery state for the
// user and channel, and for an in-app message whether the user read it.
type workflowStatus struct {
	deliveries *deliverylog.Log
	inbox      *inbox.Inbox
}

func (s *workflowStatus) Status(ctx context.Context, app, user string, o workflows.StepOutcome) ([]string, error) {
	states, err := s.deliveries.States(ctx, o.NotificationID, "", "", 100)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, st := range states {
		if st.UserID != user || st.Channel != o.Channel {
			continue
		}
		switch st.State {
		case notify.StateDelivered:
			out = append(out, "delivered")
		case notify.StateFailed:
			out = append(out, "failed")
		case notify.StateSuppressed:
			out = append(out, "skipped")
		}
		for _, r := range st.Receipts {
			switch r.Status {
			case "delivered", "failed", "undelivered":
				if !slices.Contains(out, r.Status) {
					out = append(out, r.Status)
				}
			}
		}
	}
	if o.Channel == notify.InApp {
		it, err := s.inbox.Own(ctx, app, user, o.At, o.NotificationID)
		switch {
		case errors.Is(err, gocql.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("reading the in-app item: %w", err)
		default:
			if !slices.Contains(out, "delivered") {
				out = append(out, "delivered")
			}
			if it.ReadAt != nil {
				out = append(out, "read")
			}
		}
	}
	return out, nil
}
