package region

import (
	"cmp"

	"github.com/herald-notify/herald/platform/kafka"
	"github.com/herald-notify/herald/region/deadletter"
	"github.com/herald-notify/herald/region/dispatch"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/webhooks"
)

// Tiers are the priority tiers; each has its own ingress topic and consumer group, so a
// marketing backlog never queues in front of an OTP.
var Tiers = notify.Tiers

// DispatchChannels are the channels with their own dispatch topics, one per tier (in-app is
// written by fan-out).
var DispatchChannels = []string{notify.Push, notify.Email, notify.SMS}

// IngressTopic is the topic a tier's events are accepted into: "eu-west-1.notify.marketing".
func IngressTopic(region, tier string) string { return notify.IngressTopic(region, tier) }

// DispatchTopic is a tier's and channel's task topic: "eu-west-1.dispatch.transactional.push".
func DispatchTopic(region, tier, channel string) string {
	return notify.DispatchTopic(region, tier, channel)
}

// DeadLetterStages are the stages with a dead-letter topic, "<region>.dlq.<stage>": fan-out per
// tier, the scheduler, dispatch per channel, the exporter.
func DeadLetterStages() []string { return deadletter.Stages(Tiers, DispatchChannels) }

// Topics lists every topic the region needs.
func (c Config) Topics() []kafka.Topic {
	var out []kafka.Topic
	p := int32(c.TopicPartitions)
	for _, t := range Tiers {
		out = append(out, kafka.Topic{Name: IngressTopic(c.Name, t), Partitions: p})
	}
	for _, t := range Tiers {
		for _, ch := range DispatchChannels {
			out = append(out, kafka.Topic{Name: DispatchTopic(c.Name, t, ch), Partitions: p})
		}
	}
	// The delivery events the exporter and the webhooks role consume (docs/analytics.md,
	// docs/webhooks.md); they never leave the region. Created with the retention the webhooks
	// role's delivered and dead-letter retentions outlast (its start checks the topic's), not
	// the brokers' default, which is a week on a Kafka left as installed.
	out = append(out, kafka.Topic{Name: notify.EventsTopic(c.Name), Partitions: p, Retention: webhooks.EventsTopicRetention})
	// The stages' dead-letter topics (docs/reliability.md): few records, kept long.
	dlq := int32(c.DeadLetterTopicPartitions)
	out = append(out, deadletter.Topics(c.Name, DeadLetterStages(), dlq)...)
	return append(out, dispatch.Topics(c.Name, int32(cmp.Or(c.RetryTopicPartitions, c.TopicPartitions)), dlq)...)
}
