-- Stands in for the 0019 of a change in flight (webhook retention), so 0020 loads (no gaps).
-- Drop this file when rebasing onto that change.
SELECT 1;
