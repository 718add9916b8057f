-- Hourly sums of the latency histograms, kept in step like cells_hourly.
CREATE TABLE latency_hourly (
    hour    timestamptz NOT NULL CHECK (date_trunc('hour', hour, 'UTC') = hour),
    region  text NOT NULL CHECK (region ~ '^[a-z]{2}-[a-z]+-[0-9]{1,2}$'),
    tier    text NOT NULL CHECK (tier IN ('transactional', 'social', 'marketing')),
    channel text NOT NULL CHECK (channel IN ('in_app', 'push', 'email', 'sms', 'all')),
    counts  bigint[] NOT NULL,
    PRIMARY KEY (hour, region, tier, channel)
);

INSERT INTO latency_hourly (hour, region, tier, channel, counts)
SELECT hour, region, tier, channel, array_agg(n ORDER BY i)
FROM (
    SELECT date_trunc('hour', window_start, 'UTC') AS hour, region, tier, channel, i, sum(n)::bigint AS n
    FROM latency, unnest(counts) WITH ORDINALITY AS u(n, i)
    GROUP BY 1, 2, 3, 4, 5
) AS per_bucket
GROUP BY 1, 2, 3, 4;
