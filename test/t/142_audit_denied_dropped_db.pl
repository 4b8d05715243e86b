# The refusal queue (extension/audit_denied.c) has 512 slots for the whole
# server, at most 128 per database.  A database's entries are flushed only
# in that database, so before the fix the entries of a dropped database held
# their slots until the server restarted: four dropped databases at their
# quota filled the queue, and every later refusal anywhere was dropped from
# the audit log.  Here four databases fill the queue, then they are dropped
# one by one: a refusal that finds the queue full, vms.audit_denied_status()
# and a flush each free a dropped database's entries, count their refusals
# in "discarded" and log it, and never touch a live database's entries.
# Database postgres is the one the notifier serves: its refusals reach its
# audit log through the worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;

my $node = vms_node('denieddrop');
sub sql { return $node->safe_psql($_[0], $_[1]); }
sub status { return sql('postgres', 'SELECT concat_ws(\'/\', pending, claimed, dropped, discarded) FROM vms.audit_denied_status()'); }

# eight roles, each refused twenty channels: 15 entries and a denied_more
# entry per role, 128 entries per database (the last role's overflow folds
# into the database's own denied_more entry)
my @roles = map { "drop_r$_" } 1 .. 8;
sql('postgres', join('', map { "CREATE ROLE $_ IN ROLE vms_analyst;\n" } @roles));
sql('postgres', 'CREATE DATABASE tmpl');
sql('tmpl', 'CREATE EXTENSION vms CASCADE');
my $refuse = join('', map {
	"SET SESSION AUTHORIZATION $_;\n"
	  . "DO \$\$ BEGIN FOR i IN 1 .. 20 LOOP BEGIN\n"
	  . "  PERFORM vms.exercise_right('ptz', ('440304990013200000' || lpad(i::text, 2, '0'))::vms.gbcode);\n"
	  . "EXCEPTION WHEN insufficient_privilege THEN NULL; END; END LOOP; END \$\$;\n"
	  . "RESET SESSION AUTHORIZATION;\n"
} @roles);
my %oid;
for my $d (qw(d1 d2 d3 d4))
{
	sql('postgres', "CREATE DATABASE $d TEMPLATE tmpl");
	$oid{$d} = sql('postgres', "SELECT oid FROM pg_database WHERE datname = '$d'");
	my ($rc, $out, $err) = $node->psql($d, $refuse);
	is($rc, 0, "$d: 160 refusals") or diag($err);
	unlike($err, qr/WARNING/, "$d: all of them queued");
}
is(status(), '512/0/0/0', 'the queue is full: 4 databases x 128 entries pending, none dropped or discarded');
is(sql('postgres', 'SELECT queued FROM vms.audit_denied_status()'), '640', '640 refusals queued');

# full, and every database alive: a refusal is dropped (as before), nothing freed
sql('postgres', 'CREATE ROLE drop_late IN ROLE vms_analyst');
my $late = "SET SESSION AUTHORIZATION drop_late; SELECT vms.exercise_right('ptz', '%s')";
my ($rc, $out, $err) = $node->psql('postgres', sprintf($late, '44030499001320000091'));
like($err, qr/WARNING:  vms: permission denied: role "drop_late", denied_ptz 44030499001320000091/,
	'queue full, all databases alive: the refusal is not queued (WARNING)');
like($err, qr/permission denied to ptz channel/, 'and refused');
is(status(), '512/0/1/0', 'dropped 1; no live database\'s entry discarded');

# d1 dropped: the next refusal finds the queue full and frees d1's entries
my $log_at = -s $node->logfile;
sql('postgres', 'DROP DATABASE d1');
($rc, $out, $err) = $node->psql('postgres', sprintf($late, '44030499001320000092'));
like($err, qr/permission denied to ptz channel 44030499001320000092/, 'refused again after d1 was dropped');
unlike($err, qr/WARNING/, 'this time queued');
wait_ok($node, "SELECT count(*) = 1 FROM vms.audit_log WHERE session_role = 'drop_late' AND action = 'denied_ptz' "
	  . "AND object = '44030499001320000092'",
	'the notifier writes it into postgres\'s audit log');
ok($node->log_contains(
		qr/vms: 160 refusals queued for the audit log of dropped database $oid{d1} discarded \(128 queue entries freed\)/,
		$log_at),
	'the server log says d1\'s 160 refusals were discarded');
# the flush's claim is freed just after its commit is visible: wait for it
wait_ok($node, "SELECT pending = 384 AND claimed = 0 FROM vms.audit_denied_status()",
	'postgres\'s entry flushed and freed: d2..d4\'s 384 wait');
is(status(), '384/0/1/160', 'd1\'s 160 refusals discarded, its 128 slots free');
is(sql('postgres', "SELECT count(*) FROM vms.audit_log WHERE session_role = 'drop_late'"), '1',
	'the dropped refusal (091) is not in the audit log, the queued one is');

# d2 dropped: vms.audit_denied_status() frees its entries itself, so that
# pending counts only what a flush can still write
$log_at = -s $node->logfile;
sql('postgres', 'DROP DATABASE d2');
is(status(), '256/0/1/320', 'status frees d2\'s entries: 256 pending (d3, d4), 320 discarded');
ok($node->log_contains(qr/dropped database $oid{d2} discarded \(128 queue entries freed\)/, $log_at), 'logged');

# d3 dropped: a flush in d4 writes d4's 128 entries and frees d3's
$log_at = -s $node->logfile;
sql('postgres', 'DROP DATABASE d3');
is(sql('d4', 'SELECT vms.audit_flush_denied()'), '128', 'd4 flushes its own 128 entries');
ok($node->log_contains(qr/dropped database $oid{d3} discarded \(128 queue entries freed\)/, $log_at),
	'the flush freed d3\'s entries');
is(sql('d4', q{SELECT sum(CASE WHEN action = 'denied_more' THEN (detail ->> 'refusals')::int
                             ELSE coalesce((detail ->> 'repeats')::int, 1) END)
                 FROM vms.audit_log WHERE action IN ('denied_ptz', 'denied_more')}),
	'160', 'd4\'s audit log holds all its 160 refusals');
is(status(), '0/0/1/480', 'the queue is empty; 480 refusals of dropped databases discarded');
is(sql('d4', 'SELECT ok FROM vms.audit_verify()') . sql('postgres', 'SELECT ok FROM vms.audit_verify()'), 'tt',
	'both chains hold');

$node->stop;
done_testing();
