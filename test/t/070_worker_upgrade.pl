# The workers during an upgrade, and in a database they do not serve.
#
# With vms preloaded and the extension installed at the frozen 0.1.0 base,
# every worker (viid, sip, inspector) waits, shows
# "waiting for ALTER EXTENSION vms UPDATE (installed 0.1.0, library <current>)"
# and runs none of its SQL (a due inspection plan gets no round); after
# ALTER EXTENSION vms UPDATE they come up and do their work.  An ALTER
# EXTENSION vms held open in a transaction makes them wait for it; a
# schema newer than the library makes them wait for a restart, a DROP
# EXTENSION for a new CREATE EXTENSION.  CREATE
# EXTENSION vms (and ALTER EXTENSION vms UPDATE) in a database other than
# vms.database warns, naming vms.database; in vms.database it does not.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
open(my $control, '<', "$root/vms.control") or die "vms.control: $!";
my ($current) = map { /^default_version = '(.*)'/ ? $1 : () } <$control>;
close $control;
ok(defined $current && $current ne '0.1.0', "the library is newer than the 0.1.0 base ($current)");

my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = vms_node('upgrade', { extension => 0 },
	'vms.sip_id' => $SIP_SERVER_ID,
	'vms.sip_listen' => '127.0.0.1',
	'vms.sip_port' => $sip_port,
	'vms.inspector_workers' => 1);

my $all = "name IN ('viid', 'sip', 'inspector 1')";

# every worker in one state, as any database with vms shows it (shared memory)
sub all_in_state
{
	my ($state, $what, $db) = @_;
	$db //= 'postgres';
	ok($node->poll_query_until($db,
			"SELECT count(*) = 3 AND bool_and(state = '$state') FROM vms.worker_status WHERE $all"),
		$what)
	  or diag($node->safe_psql($db, 'SELECT name, state, last_error FROM vms.worker_status'));
}

# -- installed at the base version: the workers wait for the update

my ($rc, $out, $err) = $node->psql('postgres', "CREATE EXTENSION vms VERSION '0.1.0' CASCADE");
is($rc, 0, 'CREATE EXTENSION vms VERSION 0.1.0 with the current library');
unlike($err, qr/do not serve/, 'no warning in vms.database');
# a plan that is due now: a worker that ran its SQL would start a round of it
$node->safe_psql('postgres', "SELECT vms.inspection_plan_add('probe', '{}', 'every 1 h')");

my $waiting = "waiting for ALTER EXTENSION vms UPDATE (installed 0.1.0, library $current)";
# each worker looks before any SQL of its round: the state shows it looked
all_in_state($waiting, "viid, sip and inspector show '$waiting'");
my $log_from = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.inspection_run"), '0',
	'the waiting inspector ran none of its SQL: the due plan has no round');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.worker_status WHERE $all AND last_error IS NOT NULL"), '0',
	'waiting workers have no error');
is($node->safe_psql('postgres', "SELECT sum(restarts) FROM vms.worker_status WHERE $all"), '0',
	'waiting workers did not exit and restart');

# -- the update: the workers come up and work

($rc, $out, $err) = $node->psql('postgres', 'ALTER EXTENSION vms UPDATE');
is($rc, 0, 'ALTER EXTENSION vms UPDATE');
unlike($err, qr/do not serve/, 'the update script does not warn in vms.database');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'vms'"), $current,
	"extension at $current");
wait_ok($node,
		"SELECT count(*) = 3 AND bool_and(state NOT LIKE 'waiting%' AND state <> 'starting') FROM vms.worker_status WHERE $all",
	'after the update every worker is up')
  or diag($node->safe_psql('postgres', 'SELECT name, state, last_error FROM vms.worker_status'));
wait_ok($node, "SELECT count(*) > 0 FROM vms.inspection_run",
	'the inspector ran its SQL: the due plan got its round');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.worker_status WHERE $all AND last_error IS NOT NULL"), '0',
	'no worker recorded an error across the update');
like($node->safe_psql('postgres', "SELECT state FROM vms.worker_status WHERE name = 'sip'"), qr/^running$/,
	'the SIP worker listens');

# -- an ALTER EXTENSION vms in progress holds the workers back until it commits

my $alter = $node->background_psql('postgres', on_error_stop => 1);
$alter->query_safe('SET client_min_messages = warning');	# "already installed" is a NOTICE
$alter->query_safe('BEGIN');
$alter->query_safe('ALTER EXTENSION vms UPDATE');
all_in_state('waiting for ALTER or DROP EXTENSION vms to finish',
	'an uncommitted ALTER EXTENSION vms makes every worker wait');
$alter->query_safe('COMMIT');
$alter->quit;
wait_ok($node,
		"SELECT count(*) = 3 AND bool_and(state NOT LIKE 'waiting%') FROM vms.worker_status WHERE $all",
	'after it commits they run again');

# -- a schema newer than the library (a new package installed, server not restarted)

$node->safe_psql('postgres', "UPDATE pg_catalog.pg_extension SET extversion = '99.0.0' WHERE extname = 'vms'");
all_in_state("waiting for a restart with the vms 99.0.0 library (installed 99.0.0, library $current)",
	'a newer schema makes every worker wait for a restart');
$node->safe_psql('postgres', "UPDATE pg_catalog.pg_extension SET extversion = '$current' WHERE extname = 'vms'");
wait_ok($node,
		"SELECT count(*) = 3 AND bool_and(state NOT LIKE 'waiting%') FROM vms.worker_status WHERE $all",
	'back at the library version they run again');
like(slurp_file($node->logfile, $log_from), qr/waiting for a restart with the vms 99\.0\.0 library/,
	'the change of state is logged');

# -- CREATE EXTENSION vms in a database the workers do not serve

$node->safe_psql('postgres', 'CREATE DATABASE elsewhere');
($rc, $out, $err) = $node->psql('elsewhere', 'CREATE EXTENSION vms CASCADE');
is($rc, 0, 'CREATE EXTENSION vms in another database succeeds');
like($err, qr/WARNING:  the vms workers do not serve database "elsewhere"/, 'and warns');
like($err, qr/connect to database "postgres", set by vms\.database/, 'the warning names vms.database');
like($err, qr/HINT:  .*set vms\.database = 'elsewhere' and restart the server/, 'with a hint');

$node->safe_psql('postgres', 'CREATE DATABASE elsewhere_old');
($rc, $out, $err) = $node->psql('elsewhere_old', "CREATE EXTENSION vms VERSION '0.1.0' CASCADE");
is($rc, 0, 'the 0.1.0 base installs in another database');
($rc, $out, $err) = $node->psql('elsewhere_old', 'ALTER EXTENSION vms UPDATE');
is($rc, 0, 'and updates');
like($err, qr/WARNING:  the vms workers do not serve database "elsewhere_old"/, 'the update script warns too');

# the workers still serve vms.database only: a plan due in "elsewhere" gets
# no round, while one made due in vms.database after it does (so the
# inspector has taken up due plans since); every vms worker with a database
# is connected to vms.database, none to "elsewhere"
$node->safe_psql('elsewhere', "SELECT vms.inspection_plan_add('elsewhere probe', '{}', 'every 1 h')");
$node->safe_psql('postgres', "SELECT vms.inspection_plan_add('probe 2', '{}', 'every 1 h')");
wait_ok($node, qq{
SELECT count(*) > 0 FROM vms.inspection_run r JOIN vms.inspection_plan p ON p.id = r.plan_id WHERE p.name = 'probe 2'},
	'a plan due in vms.database gets its round');
is($node->safe_psql('elsewhere', "SELECT count(*) FROM vms.inspection_run"), '0',
	'the plan due in the other database, made due first, gets none');
is($node->safe_psql('postgres', qq{
SELECT string_agg(DISTINCT datname, ',') FROM pg_stat_activity WHERE backend_type LIKE 'vms %' AND datname IS NOT NULL}),
	'postgres', 'every vms worker is connected to vms.database');

# -- DROP EXTENSION vms: the workers wait for it, then for a new CREATE EXTENSION
# (watched from the other database: the DROP locks and removes this one's view)

my $drop = $node->background_psql('postgres', on_error_stop => 1);
$drop->query_safe('SET client_min_messages = warning');
$drop->query_safe('BEGIN');
$drop->query_safe('DROP EXTENSION vms CASCADE');
all_in_state('waiting for ALTER or DROP EXTENSION vms to finish', 'an uncommitted DROP EXTENSION vms makes every worker wait',
	'elsewhere');
$drop->query_safe('COMMIT');
$drop->quit;
all_in_state('waiting for CREATE EXTENSION vms', 'after it commits they wait for CREATE EXTENSION vms', 'elsewhere');

$node->stop;
done_testing();
