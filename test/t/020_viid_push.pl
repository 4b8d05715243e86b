# GA/T 1400 push against a real HTTP receiver with digest auth and injected
# faults: a thousand records delivered; per-item failures, 500s, slow answers
# and dropped connections retried; the receiver killed and restarted
# mid-push (it forgets registrations: 401, register again); PostgreSQL
# stopped with -m immediate mid-push; a rolled-back enqueue never arrives;
# dead records re-driven; the worker supervised by the launcher.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IPC::Run;
use Time::HiRes qw(usleep);

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $log = "$tmp/received.log";
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $receiver;

sub start_receiver
{
	my @extra = @_;
	$receiver = IPC::Run::start(
		[ '/usr/bin/python3', "$root/test/peers/viid_receiver.py", '--port', $port, '--log', $log, @extra ],
		'>', "$tmp/receiver.out", '2>', "$tmp/receiver.err");
	# wait until it answers
	my $up = 0;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		$up = system("curl -s -o /dev/null http://127.0.0.1:$port/VIID/System/Time") == 0 and last;
		usleep(100_000);
	}
	$up or die 'the GA/T 1400 receiver did not come up';
}

# the receiver's counters (/stats)
sub receiver_stat
{
	my ($key) = @_;
	my $stats = `curl -s http://127.0.0.1:$port/stats`;
	return $stats =~ /"$key": (\d+)/ ? $1 : -1;
}

# wait until the receiver holds a request: it accepted the first ones of a
# push and hangs on the next, so the push is under way and cannot finish
sub wait_held
{
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		return 1 if receiver_stat('held') > 0;
		usleep(100_000);
	}
	return 0;
}

sub stop_receiver { $receiver->kill_kill; $receiver->finish; }

sub received
{
	my %ids;
	open(my $fh, '<', $log) or return {};
	while (<$fh>) { chomp; my (undef, $id) = split / /; $ids{$id}++; }
	close $fh;
	return \%ids;
}

my $node = vms_node('viid', { secret_key => 1 });

# the launcher starts the worker, visible in pg_stat_activity
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'vms viid'")
  or die 'viid worker did not start';
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'vms launcher'"),
	'1', 'launcher runs');

start_receiver('--fail-first-every', '7', '--error-every', '9', '--slow-every', '13', '--slow-seconds', '1',
	'--drop-every', '17');
$node->safe_psql('postgres', qq{
SELECT vms.viid_add_upstream('district', 'http://127.0.0.1:$port', '11010500005030000001', 'admin', 'admin',
                             '{"keepalive_s": 10, "batch_size": 50, "concurrency": 4, "timeout_ms": 3000, "max_attempts": 50}')});
$node->poll_query_until('postgres', "SELECT state = 'registered' FROM vms.viid_session WHERE upstream = 'district'")
  or die 'did not register';
pass('registered with digest authentication');
wait_ok($node, "SELECT clock_offset_ms IS NOT NULL FROM vms.viid_session",
	'clock offset recorded from /VIID/System/Time');
is($node->safe_psql('postgres', "SELECT password_enc::text LIKE '%61646d696e%' FROM vms.viid_upstream"), 'f',
	'password not stored in clear');

# a rolled-back enqueue never arrives
$node->safe_psql('postgres', q{
BEGIN;
SELECT vms.viid_enqueue('district', 'MotorVehicle', '{"MotorVehicleID": "ROLLED-BACK"}');
ROLLBACK;});

# the set-based enqueue: outbox ids in the order of the documents; one bad
# document fails the whole call, naming its position, and queues nothing
is($node->safe_psql('postgres', q{
BEGIN;
CREATE TEMP TABLE many AS
SELECT vms.viid_enqueue_many('district', 'MotorVehicle', ARRAY['{"MotorVehicleID": "MANY-1"}', '{"MotorVehicleID": "MANY-2"}']::jsonb[]) AS ids;
SELECT (SELECT array_agg(o.doc ->> 'MotorVehicleID' ORDER BY o.id) FROM vms.viid_outbox o WHERE o.id = ANY (m.ids))
       || (SELECT array_agg(o.doc ->> 'MotorVehicleID' ORDER BY u.n) FROM unnest(m.ids) WITH ORDINALITY u(id, n) JOIN vms.viid_outbox o ON o.id = u.id)
  FROM many m;
ROLLBACK;}), '{MANY-1,MANY-2,MANY-1,MANY-2}', 'viid_enqueue_many queues every document, ids in their order (rolled back here)');
my (undef, undef, $many_err) = $node->psql('postgres',
	q{SELECT vms.viid_enqueue_many('district', 'MotorVehicle', ARRAY['{"MotorVehicleID": "MANY-3"}', '{"PlateNo": "no id"}']::jsonb[])});
like($many_err, qr/MotorVehicle document 2 lacks its id field "MotorVehicleID"/, 'a document without its id fails the whole call, naming its position');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_outbox WHERE doc ->> 'MotorVehicleID' LIKE 'MANY-%'"), '0',
	'and nothing of it is queued');

sub enqueue
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
SELECT count(vms.viid_enqueue('district', 'MotorVehicle',
        jsonb_build_object('MotorVehicleID',
                           vms.viid_object_id(vms.viid_image_id('11010500001320000001', 2, '2026-11-22 10:00:00', i), 2, i),
                           'PlateNo', 'A' || i, 'PlateColor', '2', 'PassTime', '20261122100000')))
  FROM generate_series($from, $to) i});
}

sub wait_delivered
{
	my ($what) = @_;
	wait_ok($node,
			"SELECT count(*) = 0 FROM vms.viid_outbox WHERE state = 'pending'", "$what: nothing pending");
	is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_outbox WHERE state = 'dead'"), '0',
		"$what: nothing dead");
}

sub all_received
{
	my ($n, $what) = @_;
	my $got = received();
	my @ids = split /\n/, $node->safe_psql('postgres',
		"SELECT vms.viid_object_id(vms.viid_image_id('11010500001320000001', 2, '2026-11-22 10:00:00', i), 2, i) FROM generate_series(1, $n) i");
	my @missing = grep { !$got->{$_} } @ids;
	is(scalar(@missing), 0, "$what: all $n records received at least once");
	ok(!$got->{'ROLLED-BACK'}, "$what: the rolled-back record never arrived");
}

enqueue(1, 1000);
wait_delivered('1000 records through faults');
all_received(1000, 'faults');
my $status = $node->safe_psql('postgres', "SELECT counters->>'http_errors' FROM vms.worker_status WHERE name = 'viid'");
cmp_ok($status, '>', 0, 'faults were met and retried');

# the receiver dies mid-push (it answers three requests of the push, then
# hangs) and comes back without our registration
stop_receiver();
start_receiver('--hold-after', '3');
enqueue(1001, 2000);
ok(wait_held(), 'the receiver hangs mid-push');
stop_receiver();
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_outbox WHERE state = 'pending'"), '>', 0,
	'records wait while the receiver is down');
start_receiver();
wait_delivered('receiver restarted');
all_received(2000, 'receiver restarted');
cmp_ok($node->safe_psql('postgres', "SELECT counters->>'registrations' FROM vms.worker_status WHERE name = 'viid'"),
	'>=', 2, 'registered again after the receiver forgot us');

# PostgreSQL stops hard mid-push (requests in flight, the receiver holding one)
stop_receiver();
start_receiver('--hold-after', '3');
enqueue(2001, 3000);
ok(wait_held(), 'the push is under way when the server stops');
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_outbox WHERE state = 'pending'"), '>', 0,
	'records are still pending');
$node->stop('immediate');
stop_receiver();
start_receiver();
$node->start;
wait_delivered('after immediate restart');
all_received(3000, 'after immediate restart');

# records that cannot be delivered go dead and can be re-driven
stop_receiver();
start_receiver('--error-every', '1');
$node->safe_psql('postgres', q{SELECT vms.viid_alter_upstream('district', options => '{"max_attempts": 2}')});
$node->safe_psql('postgres', q{SELECT vms.viid_enqueue('district', 'Face', '{"FaceID": "FACE-DEAD-1"}')});
wait_ok($node, "SELECT state = 'dead' FROM vms.viid_outbox WHERE object_id = 'FACE-DEAD-1'",
	'a record refused every time goes dead');
like($node->safe_psql('postgres', "SELECT last_error FROM vms.viid_outbox WHERE object_id = 'FACE-DEAD-1'"),
	qr/HTTP 500/, 'dead record keeps its reason');
stop_receiver();
start_receiver();
is($node->safe_psql('postgres', q{SELECT vms.viid_redrive('district')}), '1', 'redrive');
wait_ok($node, "SELECT state = 'delivered' FROM vms.viid_outbox WHERE object_id = 'FACE-DEAD-1'",
	're-driven record delivered');

# supervision: killed comes back, stopped stays stopped
my $pid = $node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'viid'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
wait_ok($node,
		"SELECT pid IS NOT NULL AND pid <> $pid FROM vms.worker_status WHERE name = 'viid'",
	'a terminated worker is started again');
$node->safe_psql('postgres', "SELECT vms.worker_stop('viid')");
wait_ok($node, "SELECT pid IS NULL AND NOT wanted FROM vms.worker_status WHERE name = 'viid'",
	'worker_stop stops it');
# stays stopped: the positive marker is a supervision pass of the launcher
# after the stop.  A killed inspector is started again by such a pass, which
# looks at every slot (viid's first) and, had it wanted viid back, would have
# counted a restart of it.
my $viid_restarts = $node->safe_psql('postgres', "SELECT restarts FROM vms.worker_status WHERE name = 'viid'");
my $ipid = $node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'inspector 1'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($ipid)");
wait_ok($node, "SELECT pid IS NOT NULL AND pid <> $ipid FROM vms.worker_status WHERE name = 'inspector 1'",
	'the launcher made a pass after the stop (a killed inspector is back)');
is($node->safe_psql('postgres', "SELECT pid IS NULL AND NOT wanted AND restarts = $viid_restarts FROM vms.worker_status WHERE name = 'viid'"),
	't', 'a stopped worker stays stopped');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'vms viid'"), '0',
	'no viid process');
$node->safe_psql('postgres', "SELECT vms.worker_start('viid')");
wait_ok($node, "SELECT pid IS NOT NULL FROM vms.worker_status WHERE name = 'viid'",
	'worker_start brings it back');
# SIGHUP: vms.viid_enabled off stops the worker, on starts it
$node->safe_psql('postgres', "ALTER SYSTEM SET vms.viid_enabled = off");
$node->reload;
wait_ok($node, "SELECT pid IS NULL AND NOT wanted FROM vms.worker_status WHERE name = 'viid'",
	'reload with vms.viid_enabled off stops the worker');
$node->safe_psql('postgres', "ALTER SYSTEM SET vms.viid_enabled = on");
$node->reload;
wait_ok($node, "SELECT pid IS NOT NULL FROM vms.worker_status WHERE name = 'viid'",
	'reload with vms.viid_enabled on starts it again');
my ($rc, $out, $err) = $node->psql('postgres', "SELECT vms.worker_stop('nosuch')");
like($err, qr/vms worker "nosuch" does not exist/, 'unknown worker name');

# clean shutdown unregisters
$node->stop('fast');
my $stats = `curl -s http://127.0.0.1:$port/stats`;
like($stats, qr/"unregister": [1-9]/, 'UnRegister sent on clean shutdown');
stop_receiver();
done_testing();
