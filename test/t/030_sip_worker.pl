# The SIP worker against real peers over loopback: sipp scenarios acting as
# one device (digest REGISTER with a Date header, keepalive, catalog answer,
# wrong password, missing Expires, unregister) and the multi-device
# simulator test/sim/gbsim (hundreds of devices, UDP and TCP, MD5 and
# SHA-256, catalog faults, alarms, subscriptions, hostile input).  Online
# state follows keepalives; devices that keep sending keepalives are never
# marked offline by pg_ctl restart, fast or immediate; the launcher brings
# a killed worker back; reload applies settings.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $sippdir = "$root/test/sipp";
gbsim_path();
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my ($server_id, $realm) = ($SIP_SERVER_ID, $SIP_REALM);

my $node = vms_node('sip',
	'vms.viid_enabled' => 'off',
	'vms.sip_id' => $server_id,
	'vms.sip_listen' => '127.0.0.1',
	'vms.sip_port' => $sip_port,
	'vms.sip_keepalive_interval' => 5,
	'vms.sip_keepalive_count' => 2,
	'vms.sip_restart_grace' => 10,
	'vms.sip_ban_failures' => 3,
	'vms.sip_ban_minutes' => 1,
	'vms.sip_page_timeout' => 2,
	'vms.sip_catalog_timeout' => 10,
	'vms.sip_flush_interval' => 200,
	'log_min_messages' => 'log');

# the ledger: 300 devices 34020000001320000001.. with password 12345678,
# a sipp device 34020000001180000901, and devices with their own settings
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name)
SELECT ('3402000000132' || lpad(i::text, 7, '0'))::vms.gbcode, 'IPC ' || i FROM generate_series(1, 300) i;
INSERT INTO vms.device (code, name) VALUES ('34020000001180000901', 'sipp NVR');
INSERT INTO vms.device (code, name) VALUES ('34020000001180000999', 'sentinel: online before a restart, silent after');
SELECT count(vms.device_set_password(code, '12345678', '$realm')) FROM vms.device;
});

$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'vms sip'")
  or die 'sip worker did not start';
pass('the launcher starts the sip worker, visible in pg_stat_activity as "vms sip"');
sip_running($node);

sub worker_pid { return $node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'sip'"); }
sub counter
{
	my ($name) = @_;
	return $node->safe_psql('postgres', "SELECT (counters ->> '$name')::bigint FROM vms.worker_status WHERE name = 'sip'");
}

# gbsim in the foreground: its key=value stats line as a hash
sub gbsim
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(gbsim_cmd($sip_port, @args),
		'>', \$out, '2>', \$err, IPC::Run::timeout(180));
	my %s;
	for my $line (split /\n/, $out)
	{
		next if $line =~ /^hostile /;
		$s{$1} = $2 while $line =~ /(\w+)=(\S+)/g;
	}
	$s{_out} = $out;
	$s{_err} = $err;
	return \%s;
}

# gbsim in the background
sub gbsim_start
{
	my ($outfile, @args) = @_;
	return IPC::Run::start(gbsim_cmd($sip_port, @args),
		'>', $outfile, '2>', "$outfile.err");
}

sub stats_of
{
	my ($file) = @_;
	open(my $fh, '<', $file) or return {};
	my %s;
	while (my $line = <$fh>) { $s{$1} = $2 while $line =~ /(\w+)=(\S+)/g; }
	close $fh;
	return \%s;
}

###########################################################################
# sipp: one device, scripted
###########################################################################
SKIP:
{
	skip 'sipp scenarios not present', 17 unless -f "$sippdir/register_digest.xml";
	my $dev = '34020000001180000901';
	my $sipp_port = PostgreSQL::Test::Cluster::get_free_port();
	my @common = ('-m', '1', '-s', $server_id, '-key', 'domain', $realm, '-key', 'device', $dev, '-au', $dev,
		'-ap', '12345678', '-auth_uri', "$server_id\@$realm", '-i', '127.0.0.1', '-p', $sipp_port, '-t', 'u1',
		'-nd', '-nostdin', '-timeout_error', '-recv_timeout', '10000', '-max_retrans', '5');
	my $sipp = sub {
		my ($scenario) = @_;
		my ($out, $err) = ('', '');
		my $ok = IPC::Run::run([ 'sipp', "127.0.0.1:$sip_port", '-sf', "$sippdir/$scenario", @common, '-timeout', '20s' ],
			'>', \$out, '2>', \$err, IPC::Run::timeout(60));
		diag("sipp $scenario failed: $out $err") unless $ok;
		return $ok;
	};
	ok($sipp->('register_digest.xml'), 'sipp: REGISTER → 401 digest challenge → 200 with a Date header');
	wait_ok($node, "SELECT online FROM vms.device WHERE code = '$dev'", 'the sipp device is online');
	ok($sipp->('keepalive.xml'), 'sipp: keepalive MESSAGEs answered 200');

	# a keepalive read by the fast path (sip_fastpath.c) and one left to the
	# full path (libosip2 + libxml2) change the device alike: the last
	# keepalive moves, the rest of its session row is the same
	my $session = "SELECT online, transport, host(address), port, user_agent, registered_at, expires_at, auth_failures "
	  . "FROM vms.device_session WHERE device_code = '$dev'";
	my $last_ka = "SELECT last_keepalive_at FROM vms.device_session WHERE device_code = '$dev'";
	my $counts = sub {
		my ($fast, $all) = @_;
		return "SELECT (counters ->> 'keepalives_fast')::bigint = $fast AND (counters ->> 'keepalives')::bigint = $all "
		  . "FROM vms.worker_status WHERE name = 'sip'";
	};
	wait_ok($node, "SELECT (counters ->> 'keepalives')::bigint >= 3 AND counters ->> 'keepalives_fast' = counters ->> 'keepalives' "
		  . "FROM vms.worker_status WHERE name = 'sip'", "keepalive.xml's three keepalives went by the fast path");
	my ($fast0, $all0) = (counter('keepalives_fast'), counter('keepalives'));
	my $t0 = $node->safe_psql('postgres', $last_ka);
	ok($sipp->('keepalive_common.xml'), 'sipp: a keepalive in the common shape answered 200');
	wait_ok($node, $counts->($fast0 + 1, $all0 + 1), 'it was read by the fast path (keepalives_fast and keepalives + 1)');
	wait_ok($node, "SELECT last_keepalive_at > '$t0' FROM vms.device_session WHERE device_code = '$dev'",
		'the fast path moved the device\'s last keepalive');
	my $after_fast = $node->safe_psql('postgres', $session);
	my $t1 = $node->safe_psql('postgres', $last_ka);
	ok($sipp->('keepalive_display_name.xml'), 'sipp: a keepalive with a display name in From answered 200');
	wait_ok($node, $counts->($fast0 + 1, $all0 + 2), 'it was read by the full path (keepalives + 1, keepalives_fast not)');
	wait_ok($node, "SELECT last_keepalive_at > '$t1' FROM vms.device_session WHERE device_code = '$dev'",
		'the full path moved the device\'s last keepalive');
	is($node->safe_psql('postgres', $session), $after_fast,
		'the session row after the full path is the row after the fast path (online, source, user agent, registration)');
	like($after_fast, qr/^t\|UDP\|127\.0\.0\.1\|$sipp_port\|sipp-gb28181\|/, 'online, over UDP from the sipp port, its User-Agent');
	ok($sipp->('missing_expires.xml'), 'sipp: REGISTER without Expires → 400');
	ok($sipp->('wrong_password.xml'), 'sipp: wrong password → 403');

	# catalog: sipp waits for the query and answers in two pages
	my $before_catalog = $node->safe_psql('postgres', 'SELECT now()');
	my $h = IPC::Run::start([ 'sipp', "127.0.0.1:$sip_port", '-sf', "$sippdir/catalog_answer.xml",
			'-oocsf', "$sippdir/catalog_answer_ooc.xml", @common, '-timeout', '30s' ],
		'>', "$tmp/sipp_catalog.out", '2>', "$tmp/sipp_catalog.err");
	wait_ok($node, "SELECT last_keepalive_at > '$before_catalog' FROM vms.device_session WHERE device_code = '$dev'",
		'sipp: the catalog scenario\'s keepalive arrived (the worker knows where to ask)');
	my $rid = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('$dev')");
	my $r = $node->safe_psql('postgres', "SELECT state, progress ->> 'received', progress ->> 'sum_num', result ->> 'channels' FROM vms.sip_request_wait($rid, 30)");
	is($r, 'done|3|3|3', 'sipp: a two-page catalog (SumNum 3) lands as three channels');
	ok($h->finish, 'sipp catalog scenario completed');
	ok($sipp->('unregister.xml'), 'sipp: REGISTER Expires: 0 → 200');
	wait_ok($node, "SELECT NOT online FROM vms.device WHERE code = '$dev'",
		'sipp: the unregistered device is offline');
}

###########################################################################
# many devices: register, keep alive, answer queries
###########################################################################
my $run = "$tmp/run1.out";
# (--duration is only a bound: the run is ended with a signal once the restarts are checked)
my $h1 = gbsim_start($run, '--devices', '200', '--duration', '300', '--keepalive', '2', '--channels', '3',
	'--page-size', '2', '--wrong-password-every', '50', '--reg-rate', '500', '--alarm-every', '15');
wait_ok($node, "SELECT count(*) = 196 FROM vms.device WHERE online AND code::text LIKE '34020000001320%'",
	'196 devices online')
  or diag($node->safe_psql('postgres', 'SELECT count(*) FROM vms.device WHERE online'));
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.device WHERE online AND code::text LIKE '34020000001320%'"),
	'196', '200 devices register; the 4 with a wrong password do not');
is($node->safe_psql('postgres', "SELECT count(DISTINCT device_code) FROM vms.device_event WHERE event = 'auth_failed' AND device_code::text LIKE '34020000001320%'"),
	'4', 'each wrong password is an auth_failed event');
# counters are published a moment after the events are written: wait for them
wait_ok($node,
		"SELECT (counters ->> 'auth_failures')::bigint >= 4 FROM vms.worker_status WHERE name = 'sip'",
	'auth failures counted in vms.worker_status');

my $dev = '34020000001320000007';
my $rid = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('$dev')");
is($node->safe_psql('postgres', "SELECT state, result ->> 'channels' FROM vms.sip_request_wait($rid, 20)"),
	'done|3', 'catalog of three channels over two pages');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE device_code = '$dev' AND online"),
	'3', 'the channels are online with their device');
$rid = $node->safe_psql('postgres', "SELECT vms.sip_query_device_info('$dev')");
is($node->safe_psql('postgres', "SELECT state, result ->> 'Manufacturer' FROM vms.sip_request_wait($rid, 20)"),
	'done|gbsim', 'DeviceInfo answered');
is($node->safe_psql('postgres', "SELECT manufacturer FROM vms.device WHERE code = '$dev'"),
	'gbsim', 'DeviceInfo reported into the device');
$rid = $node->safe_psql('postgres', "SELECT vms.sip_query_device_status('$dev')");
is($node->safe_psql('postgres', "SELECT state, result ->> 'Online' FROM vms.sip_request_wait($rid, 20)"),
	'done|ONLINE', 'DeviceStatus answered');
is($node->safe_psql('postgres', "SELECT last_status ->> 'Encode' FROM vms.device_session WHERE device_code = '$dev'"),
	'ON', 'DeviceStatus kept in the session');
$rid = $node->safe_psql('postgres', "SELECT vms.sip_subscribe('$dev', 'Catalog', 60)");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rid, 20)"), 'done', 'Catalog subscription accepted');
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_subscription WHERE device_code = '$dev'"), 'active',
	'subscription active');
$rid = $node->safe_psql('postgres', "SELECT vms.sip_subscribe('$dev', 'MobilePosition', 60)");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rid, 20)"), 'done', 'MobilePosition subscription accepted');
wait_ok($node, "SELECT count(*) > 0 FROM vms.mobile_position WHERE device_code = '$dev'",
	'MobilePosition NOTIFY lands in vms.mobile_position');
wait_ok($node, "SELECT count(*) > 0 FROM vms.alarm WHERE source = 'sip'",
	'device alarms land in the alarm centre');
# an offline device cannot be asked
$rid = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('34020000001320000050')");
is($node->safe_psql('postgres', "SELECT state, error FROM vms.sip_request_wait($rid, 10)"),
	'failed|device is not online', 'a query to a device that is not online fails at once');

# restart with devices keeping alive: nobody goes offline, fast or immediate.
# The positive marker that the restarted worker has judged every device after
# its restart grace: a sentinel device, online in the database before the
# restart and silent after it, goes offline "within the restart grace" at the
# end of the grace.  All devices get the same grace, so any other device the
# restart put offline is flipped in the same deadline check or before, and
# written in the same batch or before (flips are written in order).
my $sentinel = '34020000001180000999';
sub arm_sentinel
{
	# the session the worker would have written for a device seen a moment ago
	$node->safe_psql('postgres', qq{
SELECT vms._sip_flush(jsonb_build_object(
  's', jsonb_build_array(jsonb_build_object('d', '$sentinel', 'o', true, 'af', 0, 'tr', 'UDP', 'ad', '127.0.0.1', 'pt', 9,
         'ra', extract(epoch FROM now()), 'ex', extract(epoch FROM now() + interval '1 hour'), 'ka', extract(epoch FROM now()))),
  'e', '[]'::jsonb,
  'f', jsonb_build_array(jsonb_build_object('d', '$sentinel', 'o', true, 'at', extract(epoch FROM now())))))});
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM vms.device_event WHERE device_code = '$sentinel' AND event = 'offline'");
}
sub sentinel_judged
{
	my ($before, $what) = @_;
	wait_ok($node, qq{
SELECT count(*) > $before FROM vms.device_event
 WHERE device_code = '$sentinel' AND event = 'offline' AND cause = 'no keepalive within the restart grace'},
		"$what: the restarted worker judged the devices after its grace (the silent sentinel went offline)");
}
my $offline_sql = "SELECT count(*) FROM vms.device_event WHERE event = 'offline' AND device_code::text LIKE '34020000001320%'";
my $before = $node->safe_psql('postgres', $offline_sql);
my $armed = arm_sentinel();
$node->restart(mode => 'fast');
wait_ok($node, "SELECT state = 'running' FROM vms.worker_status WHERE name = 'sip'",
	'fast restart: the sip worker runs again');
sentinel_judged($armed, 'fast restart');
is($node->safe_psql('postgres', $offline_sql), $before, 'no device went offline across pg_ctl restart -m fast');
$armed = arm_sentinel();
$node->stop('immediate');
$node->start;
wait_ok($node, "SELECT state = 'running' FROM vms.worker_status WHERE name = 'sip'",
	'immediate restart: the sip worker runs again');
sentinel_judged($armed, 'immediate restart');
is($node->safe_psql('postgres', $offline_sql), $before, 'no device went offline across pg_ctl stop -m immediate and start');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.device WHERE online AND code::text LIKE '34020000001320%'"),
	'196', 'all 196 devices still online after the restarts');
$h1->signal('INT');
$h1->finish;
my $s1 = stats_of($run);
is($s1->{date_missing}, '0', 'every 200 to REGISTER carried a Date header');
cmp_ok($s1->{subscriptions} + $s1->{renewals}, '>=', 3,
	"subscriptions kept: made, and made again by the restarted worker ($s1->{subscriptions} + $s1->{renewals} renewals)");
cmp_ok($s1->{keepalive_ok}, '>', 1000, "keepalives answered ($s1->{keepalive_ok})");

# keepalives stop: offline after interval x count, channels with the device
wait_ok($node, "SELECT count(*) = 0 FROM vms.device WHERE online AND code::text LIKE '34020000001320%'",
	'devices that stop sending keepalives go offline');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE device_code = '$dev' AND online"), '0',
	'their channels go offline with them');
is($node->safe_psql('postgres', "SELECT cause FROM vms.device_event WHERE device_code = '$dev' AND event = 'offline' ORDER BY id DESC LIMIT 1"),
	'keepalive timeout', 'the transition records its cause');

###########################################################################
# catalog faults: duplicate pages, a missing page, GB18030 bodies
###########################################################################
my $h2 = gbsim_start("$tmp/run2.out", '--devices', '2', '--first-code', '34020000001320000101', '--duration', '25',
	'--keepalive', '2', '--channels', '5', '--page-size', '2', '--catalog-faults', 'dup,drop1,gbk');
wait_ok($node, "SELECT online FROM vms.device WHERE code = '34020000001320000101'",
	'the catalog-fault devices are online');
$rid = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('34020000001320000101')");
is($node->safe_psql('postgres', "SELECT state, progress ->> 'sum_num', result ->> 'channels' FROM vms.sip_request_wait($rid, 20)"),
	'partial|5|3', 'a missing page: the arrived items land, the request says partial (duplicates counted once)');
like($node->safe_psql('postgres', "SELECT string_agg(name, ',' ORDER BY code) FROM vms.channel WHERE device_code = '34020000001320000101'"),
	qr/模拟/, 'GB18030 names converted to UTF-8');
$h2->finish;

###########################################################################
# TCP and SHA-256
###########################################################################
my $s3 = gbsim('--devices', '5', '--first-code', '34020000001320000201', '--duration', '6', '--keepalive', '1',
	'--transport', 'tcp', '--algorithm', 'SHA-256');
is($s3->{registered}, '5', 'five devices register over TCP with SHA-256 digest');
cmp_ok($s3->{keepalive_ok}, '>=', 10, 'keepalives over TCP answered');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.device_session WHERE transport = 'TCP'"), '5',
	'sessions record the transport');

###########################################################################
# bans, unknown devices, hostile input
###########################################################################
my $s4 = gbsim('--devices', '1', '--first-code', '34020000001320000250', '--duration', '6', '--keepalive', '0',
	'--password', 'wrong', '--reg-retry', '1');
cmp_ok($s4->{auth_403}, '>=', 3, 'repeated wrong passwords are refused');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.device_event WHERE device_code = '34020000001320000250' AND event = 'banned'"),
	'1', 'and the device is banned at that address (127.0.0.1; bans are per device and source address)');
my $s5 = gbsim('--devices', '1', '--first-code', '34020000001320000250', '--duration', '3', '--keepalive', '0');
is($s5->{registered}, '0', 'from the banned address the device is refused even with the right password');

my $s6 = gbsim('--devices', '3', '--first-code', '34020000001320000901', '--duration', '3', '--keepalive', '0');
is($s6->{registered}, '0', 'unknown devices are refused by default');
$node->append_conf('postgresql.conf', "vms.sip_unknown_devices = accept\nvms.sip_password = 'fallback-pw'\n");
$node->reload;
# a new session sees the setting once the postmaster has read the file and
# signalled its children, the worker among them; --reg-retry covers the
# worker acting on the signal a moment later
wait_ok($node, "SELECT current_setting('vms.sip_unknown_devices') = 'accept'",
	'the reload is in force');
my $s7 = gbsim('--devices', '3', '--first-code', '34020000001320000901', '--duration', '10', '--keepalive', '1',
	'--password', 'fallback-pw', '--reg-retry', '1');
is($s7->{registered}, '3', 'with vms.sip_unknown_devices = accept (reload) they register with vms.sip_password');
wait_ok($node, "SELECT count(*) = 3 FROM vms.device_event WHERE event = 'added'",
	'and enter the ledger for governance');

my $pid = worker_pid();
my $parse_before = counter('parse_errors');
my $s8 = gbsim('--mode', 'hostile', '--duration', '60', '--first-code', '34020000001320000001');
like($s8->{_out}, qr/alive=1/, 'hostile input: the worker still answers afterwards');
like($s8->{_out}, qr/hostile register_without_expires 400/, 'REGISTER without Expires → 400');
like($s8->{_out}, qr/hostile xml_billion_laughs 400/, 'XML entity bomb → 400');
like($s8->{_out}, qr/hostile xml_external_entity 400/, 'external entity → 400');
like($s8->{_out}, qr/hostile code_19_digits 403/, 'invalid device code → 403');
like($s8->{_out}, qr/hostile wrong_domain_request_uri 403/, 'wrong domain → 403');
is(worker_pid(), $pid, 'the worker did not restart');
cmp_ok(counter('parse_errors'), '>', $parse_before, 'parse errors counted');

###########################################################################
# supervision and reload
###########################################################################
$node->safe_psql('postgres', "SELECT pg_terminate_backend(pid) FROM vms.worker_status WHERE name = 'sip'");
wait_ok($node, "SELECT pid IS NOT NULL AND pid <> $pid AND state = 'running' FROM vms.worker_status WHERE name = 'sip'",
	'a worker killed with pg_terminate_backend comes back');
$node->safe_psql('postgres', "SELECT vms.worker_stop('sip')");
wait_ok($node, "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'vms sip'",
	'vms.worker_stop stops it');
# stays stopped: the positive marker is a supervision pass of the launcher
# after the stop.  A killed inspector is started again by such a pass, which
# looks at every slot (the sip slot before the inspectors') and, had it
# wanted sip back, would have counted a restart of it.
my $sip_restarts = $node->safe_psql('postgres', "SELECT restarts FROM vms.worker_status WHERE name = 'sip'");
my $ipid = $node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'inspector 1'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($ipid)");
wait_ok($node, "SELECT pid IS NOT NULL AND pid <> $ipid FROM vms.worker_status WHERE name = 'inspector 1'",
	'the launcher made a pass after the stop (a killed inspector is back)');
is($node->safe_psql('postgres', "SELECT pid IS NULL AND NOT wanted AND restarts = $sip_restarts FROM vms.worker_status WHERE name = 'sip'"), 't',
	'and the stopped sip worker stays stopped');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'vms sip'"), '0',
	'no sip process');
$node->safe_psql('postgres', "SELECT vms.worker_start('sip')");
wait_ok($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'vms sip'",
	'vms.worker_start brings it back');
$node->append_conf('postgresql.conf', "vms.sip_enabled = off\n");
$node->reload;
wait_ok($node, "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'vms sip'",
	'vms.sip_enabled = off + reload stops the worker');
$node->append_conf('postgresql.conf', "vms.sip_enabled = on\n");
$node->reload;
wait_ok($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'vms sip'",
	'on again + reload starts it');

$node->stop;
done_testing();
