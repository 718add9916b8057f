-- The region this database belongs to. A region process refuses to start against a database
-- recorded for another region, so a config slip cannot write one region's users into another's.
CREATE TABLE region_info (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    region       text NOT NULL,
    jurisdiction text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
