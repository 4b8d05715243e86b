# The audit entries of ledger edits are appended at commit, so a transaction
# that edits the ledger and stays open (a long import) does not hold the
# audit chain's lock: another session's audited calls (vms.exercise_right
# of an analyst, vms.audit of a superuser) go on at once, under a
# lock_timeout that would cancel them if they waited (before the fix they
# failed with "canceling statement due to lock timeout").  The open
# transaction's entry is appended when it commits, after theirs, and the
# chain holds.  No worker serves this database: nobody else audits.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;

my $node = vms_node('auditdefer', { extension => 0 });
$node->safe_psql('postgres', 'CREATE DATABASE city');
sub sql { return $node->safe_psql('city', $_[0]); }
sql('CREATE EXTENSION vms CASCADE');
my $ch = '44030402001320000001';
sql(qq{INSERT INTO vms.device (code, name) VALUES ('44030402001180000001', 'NVR');
       INSERT INTO vms.channel (code, device_code, name) VALUES ('$ch', '44030402001180000001', 'gate');
       CREATE ROLE ana LOGIN IN ROLE vms_analyst;
       CREATE ROLE gadmin LOGIN IN ROLE vms_grant_admin;
       SET SESSION AUTHORIZATION gadmin;
       SELECT vms.grant_access('ana', 'all', NULL, '{view_live}', 4::smallint);});
is(sql('SELECT ok FROM vms.audit_verify()'), 't', 'the chain holds after the setup');
my $before = sql('SELECT max(seq) FROM vms.audit_log');

# session A edits a channel and does not commit
my $a = $node->background_psql('city', on_error_stop => 0);
$a->query_safe('BEGIN');
$a->query_safe(qq{UPDATE vms.channel SET name = 'gate east' WHERE code = '$ch'});
is($a->query_safe('SELECT count(*) FROM vms.audit_pending'), '1', 'A: its ledger entry is queued for commit');
is(sql('SELECT count(*) FROM vms.audit_pending'), '0', 'others do not see A\'s queued entry');
is(sql(q{SELECT count(*) FROM pg_catalog.pg_locks
          WHERE relation = 'vms.audit_log'::regclass AND mode = 'ShareRowExclusiveLock'}),
	'0', 'A holds no lock of the audit chain');

# session B: audited calls while A is open, each refused a wait
my ($rc, $out, $err) = $node->psql('city', qq{SET lock_timeout = '5s';
	SET SESSION AUTHORIZATION ana; SELECT vms.exercise_right('view_live', '$ch') > $before});
is($rc, 0, 'B: an analyst exercises a right while A is open, without waiting') or diag($err);
is($out, 't', 'B: the use is audited');
($rc, $out, $err) = $node->psql('city', q{SET lock_timeout = '5s'; SELECT vms.audit('b_superuser', 'b', '{}')});
is($rc, 0, 'B: a superuser\'s vms.audit while A is open, without waiting') or diag($err);
my $b_seq = $out;

$a->query_safe('COMMIT');
$a->quit;
is(sql(qq{SELECT string_agg(action || ' ' || coalesce(object, ''), ', ' ORDER BY seq) FROM vms.audit_log WHERE seq > $before}),
	"view_live $ch, b_superuser b, ledger_update channel",
	'A\'s ledger entry is appended at its commit, after B\'s');
is(sql(qq{SELECT session_role || ' ' || detail::text FROM vms.audit_log WHERE action = 'ledger_update' AND seq > $b_seq}),
	'postgres {"rows": 1}', 'as A\'s session user, with the rows of the statement');
is(sql(q{SELECT count(*) FILTER (WHERE at < lag) FROM (SELECT at, lag(at) OVER (ORDER BY seq) FROM vms.audit_log) s}),
	'0', 'at stays in seq order');
is(sql('SELECT count(*) FROM vms.audit_pending'), '0', 'nothing pending after the commit');
is(sql('SELECT ok FROM vms.audit_verify()'), 't', 'the chain holds');

# an immediate entry still takes the lock to its commit: a ledger edit of
# another session is not held up by it (its entry waits until it commits)
$a = $node->background_psql('city', on_error_stop => 0);
$a->query_safe('BEGIN');
$a->query_safe(q{SELECT vms.audit('a_open', 'a', '{}')});
($rc, $out, $err) = $node->psql('city', qq{SET lock_timeout = '5s'; BEGIN;
	UPDATE vms.channel SET name = 'gate west' WHERE code = '$ch';
	SELECT count(*) FROM vms.audit_pending; ROLLBACK});
is($rc, 0, 'a ledger edit does not wait for an open audited transaction') or diag($err);
is($out, '1', 'its entry is only queued');
$a->query_safe('COMMIT');
$a->quit;
is(sql('SELECT ok FROM vms.audit_verify()'), 't', 'the chain holds at the end');

# REPEATABLE READ: the commit-time append reads the chain's last entry as
# committed when it holds the lock, not as the transaction's snapshot saw
# it, so entries appended by others meanwhile do not make the commit fail
# (duplicate seq)
$a = $node->background_psql('city', on_error_stop => 0);
$a->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$a->query_safe('SELECT count(*) FROM vms.audit_log');
($rc, $out, $err) = $node->psql('city', q{SELECT vms.audit('b_meanwhile', 'b', '{}')});
is($rc, 0, 'B appends an entry after the REPEATABLE READ transaction took its snapshot') or diag($err);
$a->query_safe(qq{UPDATE vms.channel SET name = 'gate north' WHERE code = '$ch'});
($out, $err) = $a->query('COMMIT');
is($err, 0, 'the REPEATABLE READ transaction that edited the ledger commits') or diag($a->{stderr});
$a->quit;
is(sql(q{SELECT string_agg(action, ', ' ORDER BY seq) FROM (SELECT * FROM vms.audit_log ORDER BY seq DESC LIMIT 2) s}),
	'b_meanwhile, ledger_update', 'its entry follows the one appended meanwhile');
is(sql('SELECT ok FROM vms.audit_verify()'), 't', 'the chain holds after it');

$node->stop;
done_testing();
