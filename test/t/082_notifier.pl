# The notifier worker against a real webhook receiver and SMTP sink
# (test/peers/notify_receiver.py): alarms raised by devices going offline
# arrive with the route's template applied and the notification id in the
# headers; a masked alarm does not; mail reaches the sink; a receiver that is
# down, then one that hangs, gets the notification retried and once delivered;
# a dead letter after max_attempts is redriven; PostgreSQL stopped with
# -m immediate while the receiver holds requests loses nothing and re-sends
# with the same ids; the worker calls vms.ops_run_due() on its own; queuing
# wakes the worker (delivered with an idle poll of an hour); a refused right
# wakes it too and reaches the audit log.
use strict;
use warnings;
use utf8;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep);

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $hook_log = "$tmp/hook.log";
my $mail_log = "$tmp/mail.log";
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
my $smtp_port = PostgreSQL::Test::Cluster::get_free_port();
my $nowhere_port = PostgreSQL::Test::Cluster::get_free_port();	# nothing listens there
my $poll = 10 * $PostgreSQL::Test::Utils::timeout_default;		# 100 ms steps
my ($receiver, $sink);

sub wait_for
{
	my ($what, $cond) = @_;
	for (1 .. $poll)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	diag("timed out waiting for $what");
	return 0;
}

sub start_receiver
{
	$receiver = IPC::Run::start(
		[ '/usr/bin/python3', "$root/test/peers/notify_receiver.py", '--http-port', $http_port, '--log', $hook_log ],
		'>', "$tmp/receiver.out", '2>>', "$tmp/receiver.err");
	wait_for('the webhook receiver', sub { system("curl -s -o /dev/null http://127.0.0.1:$http_port/stats") == 0 })
	  or die 'the webhook receiver did not come up';
}
sub stop_receiver { $receiver->kill_kill; $receiver->finish; }
sub receiver_mode { system("curl -s -o /dev/null -X POST 'http://127.0.0.1:$http_port/control?mode=$_[0]'") == 0 or die; }
sub receiver_stat
{
	my $stats = `curl -s http://127.0.0.1:$http_port/stats`;
	return $stats =~ /"$_[0]": (\d+)/ ? $1 : -1;
}

# what arrived, as a list of JSON documents
sub lines_of
{
	my ($file) = @_;
	my @docs;
	open(my $fh, '<:raw', $file) or return ();
	while (<$fh>) { push @docs, decode_json($_) if /\n\z/; }
	close $fh;
	return @docs;
}
sub hooks { return lines_of($hook_log); }
sub hooks_for { my ($code) = @_; return grep { $_->{body} =~ /\Q$code\E/ } hooks(); }

$sink = IPC::Run::start(
	[ '/usr/bin/python3', "$root/test/peers/notify_receiver.py", '--smtp-port', $smtp_port, '--mail-log', $mail_log ],
	'>', "$tmp/sink.out", '2>', "$tmp/sink.err");
wait_for('the SMTP sink', sub { -s "$tmp/sink.out" }) or die 'the SMTP sink did not come up';
start_receiver();

my $node = vms_node('notifier', 'vms.notifier_timeout_ms' => 3000, 'vms.notifier_mail_from' => 'vms@ops.example');
sub sql { return $node->safe_psql('postgres', $_[0]); }

# the launcher starts the worker; vms.worker_status shows it
wait_ok($node,
		"SELECT state = 'running' AND pid IS NOT NULL FROM vms.worker_status WHERE name = 'notifier' AND backend_type = 'vms notifier'",
	'notifier worker running under the launcher');

# devices in 朝阳 (110105): NVRs (type 118) and an IPC (132); one NVR in 天津 (120101)
my @nvr = map { sprintf('110105000011800000%02d', $_) } 1 .. 3;
my $ipc = '11010500001320000009';
my $tj = '12010100001180000001';
my @many = map { sprintf('110105000011800001%02d', $_) } 1 .. 20;
sql(qq{
INSERT INTO vms.device (code, name, civil_code)
SELECT c::vms.gbcode, 'dev ' || c, substr(c, 1, 6) FROM unnest(ARRAY['@{[join("','", @nvr, $ipc, $tj, @many)]}']) c;
});
sub offline
{
	my @codes = @_;
	sql("INSERT INTO vms.device_event (device_code, at, event, cause) SELECT c::vms.gbcode, now(), 'offline', 'keepalive timeout' "
		  . "FROM unnest(ARRAY['" . join("','", @codes) . "']) c");
}

# a DingTalk-style robot for 朝阳's raised alarms, mail for offline alarms,
# and a route to a port where nothing listens (天津, two attempts)
my $template = '{"msgtype": "text", "text": {"content": "{{level_name}}告警 {{code}} {{fault_type}} {{event}} ({{id}})"}}';
sql(qq{
SELECT vms.notify_route_add('robot', 'http://127.0.0.1:$http_port/robot/send',
    jsonb_build_object('regions', jsonb_build_array('110105'), 'events', jsonb_build_array('raised'), 'max_attempts', 50,
                       'template', \$t\$$template\$t\$));
SELECT vms.notify_route_add('duty mail', 'smtp://127.0.0.1:$smtp_port',
    '{"regions": ["110105"], "events": ["raised"], "fault_types": ["offline"], "mail_to": ["ops\@example.org", "duty\@example.org"]}');
SELECT vms.notify_route_add('chief mail', 'smtp://127.0.0.1:$smtp_port',
    '{"regions": ["110105"], "events": ["raised"], "levels": [2], "mail_to": ["chief\@example.org"], "mail_from": "noc\@ops.example"}');
SELECT vms.notify_route_add('nowhere', 'http://127.0.0.1:$nowhere_port/', '{"regions": ["120101"], "max_attempts": 2}');
SELECT vms.alarm_mask_add('planned work', '{"codes": ["$ipc"]}', '{offline}', now() - interval '1 minute',
                          now() + interval '1 day', 'cabinet moved');
});

# --- an NVR and the masked IPC go offline: the NVR's alarm arrives, templated
offline($nvr[0], $ipc);
ok(wait_for('the first alarm', sub { hooks_for($nvr[0]) == 1 }), 'raised alarm arrives at the webhook');
my ($first) = hooks_for($nvr[0]);
my $content = JSON::PP->new->decode($first->{body})->{text}{content};	# the body as characters
my $dedup = sql("SELECT o.dedup_key FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id "
	  . "WHERE r.name = 'robot' AND o.doc ->> 'code' = '$nvr[0]'");
like($dedup, qr/^vms:\d+:alarm:\d+$/, 'the outbox row has its de-duplication id');
is($content, "严重告警 $nvr[0] offline raised ($dedup)", 'template applied: the robot body with the alarm\'s values');
is($first->{path}, '/robot/send', 'posted to the route\'s URL');
is($first->{id}, $dedup, 'X-Vms-Notification-Id carries the id');
is($first->{idempotency_key}, $dedup, 'Idempotency-Key carries the id');
like($first->{content_type}, qr{^application/json}, 'sent as JSON');
wait_ok($node, "SELECT state = 'delivered' AND attempts = 1 AND last_status = '200' "
		  . "FROM vms.notify_outbox WHERE dedup_key = '$dedup'", 'recorded as delivered');

# --- mail for the same alarm at the SMTP sink
ok(wait_for('the mails', sub { (grep { $_->{data} =~ /\Q$nvr[0]\E/ } lines_of($mail_log)) == 2 }), 'mail arrives at the SMTP sink, once per route');
my ($mail) = grep { $_->{data} =~ /\Q$nvr[0]\E/ && $_->{to}[0] ne '<chief@example.org>' } lines_of($mail_log);
my ($chief) = grep { $_->{data} =~ /\Q$nvr[0]\E/ && $_->{to}[0] eq '<chief@example.org>' } lines_of($mail_log);
is($chief->{from}, '<noc@ops.example>', 'a route\'s own mail_from is its MAIL FROM');
like($chief->{data}, qr/^From: <noc\@ops\.example>\r$/m, 'and its From:');
# a fault type is free text: a line break in it stays out of the mail headers
sql("SELECT vms.alarm_raise('$nvr[0]', E'power\\r\\nBcc: evil\@example.org', 2::smallint, 'manual')");
ok(wait_for('the odd mail', sub { grep { $_->{data} =~ /power/ } lines_of($mail_log) }), 'mail for a fault type with a line break');
my ($odd) = grep { $_->{data} =~ /power/ } lines_of($mail_log);
like($odd->{data}, qr/^Subject: \[vms\] alarm raised \Q$nvr[0]\E power  Bcc: evil\@example\.org level 2\r$/m,
	'the subject stays one line');
unlike($odd->{data}, qr/^Bcc:/m, 'no header injected');
# a route written straight into the table, past notify_route_add's checks:
# an address with a line break is left out of RCPT TO and To:
sql(qq{
INSERT INTO vms.notify_route (name, kind, url, filter, mail_to)
VALUES ('raw mail', 'smtp', 'smtp://127.0.0.1:$smtp_port', '{"fault_types": ["no such fault"]}',
        ARRAY['raw\@example.org', E'x\@example.org\r\nBcc: evil\@example.org']);
INSERT INTO vms.notify_outbox (route_id, dedup_key, doc, body)
SELECT id, 'test:raw-mail', '{"type": "test"}', 'raw-mail-marker' FROM vms.notify_route WHERE name = 'raw mail';
});
ok(wait_for('the raw route\'s mail', sub { grep { $_->{data} =~ /raw-mail-marker/ } lines_of($mail_log) }),
	'mail for a route with a line break in an address');
my ($raw) = grep { $_->{data} =~ /raw-mail-marker/ } lines_of($mail_log);
is_deeply($raw->{to}, ['<raw@example.org>'], 'the address with the line break is left out of RCPT TO');
like($raw->{data}, qr/^To: raw\@example\.org\r$/m, 'and out of To:');
unlike($raw->{data}, qr/^Bcc:/m, 'no header injected through mail_to');
# a file:// URL written straight into the table is never read
open(my $hfh, '<', '/etc/hostname') or die;
chomp(my $hostname = <$hfh> // '');
close $hfh;
sql(qq{
INSERT INTO vms.notify_route (name, kind, url, filter, max_attempts)
VALUES ('file', 'webhook', 'file:///etc/hostname', '{"fault_types": ["no such fault"]}', 1);
INSERT INTO vms.notify_outbox (route_id, dedup_key, doc, body)
SELECT id, 'test:file', '{"type": "test"}', '{}' FROM vms.notify_route WHERE name = 'file';
});
wait_ok($node, "SELECT state = 'dead' AND last_error ~* 'protocol' FROM vms.notify_outbox WHERE dedup_key = 'test:file'",
	'a file:// URL fails as an unsupported protocol');
my $file_error = sql("SELECT last_error FROM vms.notify_outbox WHERE dedup_key = 'test:file'");
unlike($file_error, qr/\Q$hostname\E/, 'and the file is not read') if length $hostname;
sql("DELETE FROM vms.notify_route WHERE name IN ('raw mail', 'file')");	# (their rows go too: redrive below counts)
is($mail->{from}, '<vms@ops.example>', 'MAIL FROM is vms.notifier_mail_from');
is_deeply($mail->{to}, [ '<ops@example.org>', '<duty@example.org>' ], 'RCPT TO every address of the route');
my $mail_id = sql("SELECT o.dedup_key FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id "
	  . "WHERE r.name = 'duty mail' AND o.doc ->> 'code' = '$nvr[0]'");
like($mail->{data}, qr/^X-Vms-Notification-Id: \Q$mail_id\E\r$/m, 'the mail carries the id');
like($mail->{data}, qr/^Subject: \[vms\] alarm raised \Q$nvr[0]\E offline/m, 'subject names the event');
like($mail->{data}, qr/"fault_type": "offline"/, 'the body is the document');
wait_ok($node, "SELECT state = 'delivered' AND last_status = '250' FROM vms.notify_outbox WHERE dedup_key = '$mail_id'",
	'recorded with the mail server\'s 250');

# --- the masked IPC: recorded, never queued, never sent
is(sql("SELECT count(*) FROM vms.alarm WHERE code = '$ipc' AND mask_id IS NOT NULL"), '1', 'masked alarm recorded');
is(sql("SELECT count(*) FROM vms.notify_outbox WHERE doc ->> 'code' = '$ipc'"), '0', 'masked alarm not queued');

# --- the receiver is down: retried, then delivered once when it is back
stop_receiver();
offline($nvr[1]);
wait_ok($node, "SELECT attempts >= 1 AND state = 'pending' AND last_error IS NOT NULL AND last_status IS NULL "
		  . "FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id WHERE r.name = 'robot' AND doc ->> 'code' = '$nvr[1]'",
	'receiver down: the attempt failed and is kept for a retry');
start_receiver();
wait_ok($node, "SELECT state = 'delivered' FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id "
		  . "WHERE r.name = 'robot' AND doc ->> 'code' = '$nvr[1]'", 'delivered once the receiver is back');
is(scalar(hooks_for($nvr[1])), 1, 'and received exactly once');

# --- the receiver hangs: the request times out (vms.notifier_timeout_ms), retried when it answers again
receiver_mode('hang');
offline($nvr[2]);
wait_ok($node, "SELECT attempts >= 1 AND last_error ~* 'timed? ?out' "
		  . "FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id WHERE r.name = 'robot' AND doc ->> 'code' = '$nvr[2]'",
	'a hanging receiver: the request timed out');
receiver_mode('ok');
wait_ok($node, "SELECT state = 'delivered' FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id "
		  . "WHERE r.name = 'robot' AND doc ->> 'code' = '$nvr[2]'", 'delivered when it answers again');
is(scalar(hooks_for($nvr[2])), 1, 'and received exactly once');

# --- dead letter after max_attempts; redriven to a fixed URL, delivered
offline($tj);
wait_ok($node, "SELECT state = 'dead' AND attempts = 2 AND last_error IS NOT NULL "
		  . "FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id WHERE r.name = 'nowhere'",
	'dead letter after max_attempts (2)');
sql("UPDATE vms.notify_route SET url = 'http://127.0.0.1:$http_port/fixed' WHERE name = 'nowhere'");
is(sql('SELECT vms.notify_redrive()'), '1', 'redrive the dead letter');
ok(wait_for('the redriven notification', sub { grep { $_->{path} eq '/fixed' && $_->{body} =~ /\Q$tj\E/ } hooks() }),
	'redriven notification delivered');

# --- PostgreSQL stopped with -m immediate while the receiver holds requests:
# nothing lost, duplicates carry the same id
receiver_mode('hold');
offline(@many);
ok(wait_for('held requests', sub { receiver_stat('held') > 0 }), 'the receiver holds requests in flight');
$node->stop('immediate');
receiver_mode('ok');
$node->start;
my $many_list = "ARRAY['" . join("','", @many) . "']";
wait_ok($node, "SELECT count(*) = 20 AND bool_and(o.state = 'delivered') FROM vms.notify_outbox o "
		  . "JOIN vms.notify_route r ON r.id = o.route_id WHERE r.name = 'robot' AND o.doc ->> 'code' = ANY ($many_list)",
	'after the crash every notification is delivered');
my %queued = map { $_ => 1 } split /\n/, sql("SELECT o.dedup_key FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id "
	  . "WHERE r.name = 'robot' AND o.doc ->> 'code' = ANY ($many_list)");
my %seen;
my $mismatch = 0;
for my $h (grep { my $b = $_->{body}; grep { $b =~ /\Q$_\E/ } @many } hooks())
{
	$seen{ $h->{id} }++;
	$mismatch++ unless $h->{body} =~ /\(\Q$h->{id}\E\)/ && $h->{idempotency_key} eq $h->{id};
}
is_deeply([ sort keys %seen ], [ sort keys %queued ], 'nothing lost: every queued id arrived, and no other');
ok((grep { $_ > 1 } values %seen) > 0, 'the requests held at the crash were sent again');
is($mismatch, 0, 'every copy carries its own id in header and body');

# --- nothing about the masked IPC ever arrived
is(scalar(hooks_for($ipc)), 0, 'masked alarm never sent');
is(scalar(grep { $_->{data} =~ /\Q$ipc\E/ } lines_of($mail_log)), 0, 'masked alarm never mailed');

# --- the worker runs vms.ops_run_due(): the schedules are timed, then the
# every-minute escalation runs
wait_ok($node, "SELECT bool_and(next_run_at IS NOT NULL) FROM vms.ops_schedule WHERE enabled",
	'vms.ops_run_due() called: every schedule timed');
wait_ok($node, "SELECT last_run_at IS NOT NULL AND last_error IS NULL FROM vms.ops_schedule "
		  . "WHERE action = 'alarm_escalate'", 'the every-minute escalation ran');
cmp_ok(sql("SELECT (counters ->> 'ops_runs')::int FROM vms.worker_status WHERE name = 'notifier'"), '>=', 1,
	'counted in vms.worker_status');
# (shared memory: counted since the restart)
is(sql("SELECT (counters ->> 'delivered')::int >= 20 AND (counters ->> 'webhook')::int >= 20 AND (counters ->> 'mail')::int >= 20 "
		  . "FROM vms.worker_status WHERE name = 'notifier'"), 't', 'delivery counters');

# --- queuing wakes the worker: with an idle poll of an hour and the
# schedule off, nothing but the wake at the enqueue's commit makes the
# worker look at the outbox again within the wait below (the test
# harness's timeout, minutes, far under the hour)
my @woken = map { sprintf('110105000011800002%02d', $_) } 1 .. 2;
sql(qq{INSERT INTO vms.device (code, name, civil_code)
       SELECT c::vms.gbcode, 'dev ' || c, '110105' FROM unnest(ARRAY['$woken[0]', '$woken[1]']) c});
$node->append_conf('postgresql.conf', "vms.notifier_poll_interval = '1h'\nvms.notifier_run_schedule = off\n");
$node->restart;
is(sql("SHOW vms.notifier_poll_interval"), '1h', 'the poll is an hour');
# the worker is in its idle wait (WaitLatch, wait event Extension, state
# running; not the one-second wait of a worker not yet ready) before each
# notification is queued: a round in progress cannot pick it up
my $idle = "SELECT a.wait_event = 'Extension' AND w.state = 'running' FROM pg_stat_activity a "
  . "JOIN vms.worker_status w ON w.pid = a.pid WHERE a.backend_type = 'vms notifier'";
for my $code (@woken)
{
	wait_ok($node, $idle, "the worker waits idle before $code goes offline");
	offline($code);
	wait_ok($node, "SELECT state = 'delivered' FROM vms.notify_outbox o "
			  . "JOIN vms.notify_route r ON r.id = o.route_id WHERE r.name = 'robot' AND o.doc ->> 'code' = '$code'",
		"woken at the enqueue: $code delivered long before the hour's poll");
}
ok(wait_for('the woken webhooks', sub { hooks_for($woken[0]) == 1 && hooks_for($woken[1]) == 1 }),
	'both arrived at the receiver once');

# --- a refused right reaches the audit log although its error rolls the
# refusing transaction back: queued outside it, written by the notifier when
# woken (the poll still an hour: only the refusal's wake moves it)
sql("CREATE ROLE notifier_nobody LOGIN IN ROLE vms_analyst");
wait_ok($node, $idle, 'the worker waits idle before the refusal');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT vms.exercise_right('ptz', '11010500001320000001', '{\"cmd\": \"left\"}')",
	extra_params => [ '-U', 'notifier_nobody' ]);
like($err, qr/permission denied to ptz channel 11010500001320000001/, 'the right is refused (42501)');
wait_ok($node, "SELECT count(*) = 1 FROM vms.audit_log WHERE session_role = 'notifier_nobody' AND action = 'denied_ptz' "
		  . "AND object = '11010500001320000001' AND detail ->> 'cmd' = 'left' AND detail ? 'attempted_at'",
	'the refusal is in the audit log, written by the notifier');
is(sql("SELECT ok FROM vms.audit_verify()"), 't', 'the chain holds');
# the notifier frees its claim just after its audit row is visible: wait for it
wait_ok($node, "SELECT pending = 0 AND claimed = 0 FROM vms.audit_denied_status()", 'nothing left in the queue');
# the counter is bumped after the claim is freed: wait for it too
wait_ok($node, "SELECT (counters ->> 'denied_audited')::int >= 1 FROM vms.worker_status WHERE name = 'notifier'",
	'counted in vms.worker_status');

# --- search history without a synchronous INSERT: in the database the
# workers serve, a search queues its history row and the notifier writes the
# queued rows at its next round (the poll is an hour here, so a quarter of
# the queue, 512 searches, must fill to wake it; the rows keep their user,
# filter, page and time, in the order searched)
my $before = sql("SELECT count(*) FROM vms.search_history");
my ($src, $sout, $serr) = $node->psql('postgres',
	"SELECT count(*) FROM generate_series(1, 520) i, LATERAL vms.search_points(jsonb_build_object('near', "
	  . "jsonb_build_object('lon', 116.4 + i * 1e-4, 'lat', 39.9)), 5, i % 3)",
	extra_params => [ '-U', 'notifier_nobody' ]);
is($src, 0, '520 searches as an analyst') or diag($serr);
wait_ok($node, "SELECT count(*) >= 512 FROM vms.search_history WHERE username = 'notifier_nobody'",
	'the notifier, woken by the queue filling, wrote their history');
is(sql("SELECT count(*) = count(DISTINCT filter) AND bool_and(lim = 5 AND result_count = 0 AND took_ms >= 0) "
	  . "AND array_agg(off ORDER BY id) = array_agg(off ORDER BY searched_at, id) "
	  . "FROM vms.search_history WHERE username = 'notifier_nobody'"),
	't', 'one row per search, with its page, in the order searched');
cmp_ok(sql("SELECT (counters ->> 'searches_written')::int FROM vms.worker_status WHERE name = 'notifier'"), '>=', 512,
	'counted in vms.worker_status');
is(sql("SELECT vms.search_history_flush() + count(*) FROM vms.search_history WHERE username = 'notifier_nobody'"), '520',
	'the rest written by a flush on demand: none lost, none twice');

# --- a flush's claims follow its subtransactions (extension/xact_claims.c):
# rows taken in a savepoint rolled back go back to the queue; rows taken in a
# released one stay taken, past a later savepoint's rollback, until the
# transaction ends; a PREPARE with rows taken is refused and puts them back.
# Ten searches do not fill a quarter of the queue: the idle worker (poll of
# an hour) is not woken and leaves them queued.
wait_ok($node, $idle, 'the worker waits idle before ten more searches');
($src, $sout, $serr) = $node->psql('postgres',
	"SELECT count(*) FROM generate_series(1, 10) i, LATERAL vms.search_points(jsonb_build_object('near', "
	  . "jsonb_build_object('lon', 117.4 + i * 1e-4, 'lat', 39.9)), 5, 0)",
	extra_params => [ '-U', 'notifier_nobody' ]);
is($src, 0, 'ten more searches') or diag($serr);
is(sql("BEGIN; SAVEPOINT a; SELECT vms.search_history_flush(); ROLLBACK TO a; "
	  . "SAVEPOINT b; SELECT vms.search_history_flush(); RELEASE b; "
	  . "SAVEPOINT c; ROLLBACK TO c; SELECT vms.search_history_flush(); ROLLBACK"),
	"10\n10\n0", 'taken in a savepoint rolled back: queued again; in a released one: kept past a later rollback');
($src, $sout, $serr) = $node->psql('postgres',
	"BEGIN; SELECT vms.search_history_flush(); PREPARE TRANSACTION 'vms_flush'",
	on_error_stop => 0);
is($sout, '10', 'a flush in a transaction to be prepared takes them');
like($serr, qr/cannot PREPARE a transaction that took rows from the search history queue/, 'PREPARE is refused');
is(sql("SELECT vms.search_history_flush()"), '10', 'the whole rollback, then the refused PREPARE, queued them again');
is(sql("SELECT count(DISTINCT filter) FROM vms.search_history WHERE username = 'notifier_nobody' "
	  . "AND (filter #>> '{near,lon}')::float8 > 117"),
	'10', 'each written once');

$node->stop;
stop_receiver();
$sink->kill_kill;
$sink->finish;
done_testing();
