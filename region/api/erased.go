package api

import (
	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/notify"
)

// suppressErased records recipients of e who were erased (registered again under the same id
// since) as suppressed with reason "erased" on every channel the send names (all when it names
// none), as fan-out records them: they have no data key, so nothing of them goes on Kafka. It
// answers 503 and returns false when the states cannot be written.
func (s *Server) suppressErased(c *gin.Context, e notify.Event, users []string) bool {
	if len(users) == 0 {
		return true
	}
	channels := e.Channels
	if len(channels) == 0 {
		channels = notify.Channels
	}
	now := s.Now().UTC()
	states := make([]deliverylog.State, 0, len(users)*len(channels))
	for _, u := range users {
		for _, ch := range channels {
			states = append(states, deliverylog.State{NotificationID: e.ID, UserID: u, Channel: ch, State: notify.StateSuppressed,
				Reason: notify.ReasonErased, UpdatedAt: now})
		}
	}
	if err := s.Deliveries.Write(c.Request.Context(), states, nil); err != nil {
		s.Logger.Error("recording erased recipients", "err", err)
		unavailable(c, "the notification could not be recorded; retry")
		return false
	}
	return true
}
