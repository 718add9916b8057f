-- A template's locale variants: canonical BCP 47 tag -> channel -> content, with the channels
-- and fields of the default content. Fan-out picks one per recipient by users.locale, falling
-- back through the tag's parents (de-AT -> de) to the default content. Empty for a template
-- without variants (and for every template stored before).
ALTER TABLE templates ADD COLUMN locales jsonb NOT NULL DEFAULT '{}';
-- The locale whose plural and number rules the default content follows; '' is English (en).
ALTER TABLE templates ADD COLUMN default_locale text NOT NULL DEFAULT '';
