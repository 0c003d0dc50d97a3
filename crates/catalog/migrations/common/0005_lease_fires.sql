-- The fire time a lease was last taken for: a second daemon that wakes for the same
-- scheduled fire after the first finished (and released the lease) does not run it again.
ALTER TABLE leases ADD COLUMN last_fire TEXT NOT NULL DEFAULT '';
