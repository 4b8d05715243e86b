-- vms 0.1.0 -> 0.2.0.  Every schema change of 0.2.0 appears here as well as in
-- extension/sql/ (the fresh install); test/scripts/upgrade_check.sh proves the
-- two give the same schema.  Each change sits in a section named for its issue.
\echo Use "ALTER EXTENSION vms UPDATE TO '0.2.0'" to load this file. \quit

