-- vms install script, concatenated from extension/sql/*.sql in file-name order.
-- Installed databases reach this version through extension/upgrade/vms--*--*.sql.
\echo Use "CREATE EXTENSION vms" to load this file. \quit
