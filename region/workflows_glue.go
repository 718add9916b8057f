package region

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gocql/gocql"

	"github.com/herald-notify/herald/platform/envelope"
	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/workflows"
)

// workflowSender hands a workflow's channel-step notifications to fan-out as the API does a
// send: sealed for the user, on the tier's ingress topic, acknowledged by Kafka (acks=all). A
// batch reads its users' keys with one query per app and is produced at once; fan-out records
// each notification as accepted when it takes it.
type workflowSender struct {
	region   string
	producer *kafka.Producer
	keys     notify.Sealer
}

func (s *workflowSender) Send(ctx context.Context, events []notify.Event) ([]bool, error) {
	erased := make([]bool, len(events))
	byApp := map[string][]int{}
	var apps []string
	for i, e := range events {
		if _, ok := byApp[e.AppID]; !ok {
			apps = append(apps, e.AppID)
		}
		byApp[e.AppID] = append(byApp[e.AppID], i)
	}
	msgs := make([]kafka.Message, 0, len(events))
	for _, app := range apps {
		// Each user once: the keys are read (and a missing one created) in one query.
		var users []string
		at := map[string]int{}
		for _, i := range byApp[app] {
			for _, u := range events[i].Recipients {
				if _, ok := at[u]; !ok {
					at[u] = len(users)
					users = append(users, u)
				}
			}
		}
		keys, err := s.keys.For(ctx, app, users)
		if err != nil {
			return nil, fmt.Errorf("reading the data keys of %d users: %w", len(users), err)
		}
		for _, i := range byApp[app] {
			e := events[i]
			mine := make([]envelope.Key, len(e.Recipients))
			for j, u := range e.Recipients {
				mine[j] = keys[at[u]]
			}
			msg, _, err := notify.SealEvent(IngressTopic(s.region, e.Tier), e, mine)
			switch {
			case errors.Is(err, notify.ErrErased):
				erased[i] = true
				continue
			case err != nil:
				return nil, err
			}
			msgs = append(msgs, msg)
		}
	}
	if err := s.producer.Send(ctx, msgs...); err != nil {
		return nil, err
	}
	return erased, nil
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
