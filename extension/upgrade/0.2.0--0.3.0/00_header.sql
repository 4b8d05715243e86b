-- vms 0.2.0 -> 0.3.0, concatenated by the Makefile from
-- extension/upgrade/0.2.0--0.3.0/*.sql in file-name order, one file per area
-- (named for its issue).  Every schema change of 0.3.0 appears here as well as
-- in extension/sql/ (the fresh install); test/scripts/upgrade_check.sh proves
-- the two give the same schema.
\echo Use "ALTER EXTENSION vms UPDATE TO '0.3.0'" to load this file. \quit
