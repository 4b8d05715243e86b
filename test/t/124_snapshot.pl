# vms.snapshot (issue 17): a real JPEG of a channel, from three gbsim
# devices: one that speaks GB/T 28181-2016 (no X-GB-Ver: a frame sampled over
# INVITE, decoded by FFmpeg and encoded as JPEG), one that speaks 2022
# (X-GB-Ver: 3.0: DeviceConfig SnapShotConfig, and the device POSTs its own
# JPEG to the upload URL vms serves), and a 2022 device whose upload is not a
# JPEG (refused, then the INVITE path).  The pictures are checked with ffprobe
# (a tool we did not write) and against the uploaded file's bytes; the right
# is checked and the use audited; an offline device is refused.  Then what
# the security review asked for: the use stays audited when the caller rolls
# back; uploads only from the device's address, to its URL, of at most
# 8192x8192 pixels (a 2022 device that never uploads, --snapshot left out);
# the caps per channel, session role and cluster, and the minimum interval.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HTTP::Tiny;
use VmsTest;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = vms_node('snapshot',
	'vms.viid_enabled' => 'off',
	'vms.sip_id' => $SIP_SERVER_ID,
	'vms.sip_listen' => '127.0.0.1',
	'vms.sip_port' => $sip_port,
	'vms.sip_keepalive_interval' => 5,
	'vms.sip_flush_interval' => 200,
	'vms.inspect_media_ip' => '127.0.0.1',
	'vms.inspect_media_port_min' => 57700,
	'vms.inspect_media_port_max' => 57719,
	'vms.snapshot_http_port_min' => 57720,
	'vms.snapshot_http_port_max' => 57739,
	'vms.snapshot_timeout' => 40,
	'vms.snapshot_min_interval' => 0);

my %dev = (old => '34020000001320000101', new => '34020000001320000201', bad => '34020000001320000301',
	quiet => '34020000001320000501');
# each device's one channel (gbsim: type 131, serial = device serial x channels + 0)
my %ch = (old => '34020000001310000101', new => '34020000001310000201', bad => '34020000001310000301',
	quiet => '34020000001310000501');
$node->safe_psql('postgres', join('', map {
	"INSERT INTO vms.device (code, name) VALUES ('$dev{$_}', 'gbsim $_');
	 SELECT vms.device_set_password('$dev{$_}', '12345678', '$SIP_REALM');" } sort keys %dev) . qq{
INSERT INTO vms.device (code, name) VALUES ('34020000001320000401', 'never registers');
INSERT INTO vms.channel (code, device_code, name) VALUES ('34020000001310000402', '34020000001320000401', 'dark');
CREATE ROLE op LOGIN IN ROLE vms_analyst;
CREATE ROLE nosy LOGIN IN ROLE vms_analyst;
CREATE ROLE op2 LOGIN IN ROLE vms_analyst;
CREATE ROLE op3 LOGIN IN ROLE vms_analyst;
CREATE ROLE gadmin LOGIN IN ROLE vms_grant_admin;
});
sip_running($node);

# the stream gbsim sends over INVITE, the JPEG the 2022 device uploads, and a file that is not a JPEG
system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25', '-t', '1',
	'-c:v', 'libx264', '-preset', 'veryfast', '-x264-params', 'aud=1:keyint=25', '-bsf:v', 'h264_mp4toannexb',
	'-f', 'h264', "$tmp/cam.h264") == 0 or die 'ffmpeg failed';
system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=200x120', '-frames:v', '1',
	"$tmp/own.jpg") == 0 or die 'ffmpeg failed';
open(my $fh, '>', "$tmp/not.jpg") or die; print $fh "GIF89a not a JPEG at all\n" x 10; close $fh;

my %log = map { $_ => "$tmp/$_.log" } keys %dev;
my @sims;
for my $k (sort keys %dev)
{
	push @sims, IPC::Run::start(gbsim_cmd($sip_port, '--devices', '1', '--first-code', $dev{$k}, '--channels', '1',
			'--keepalive', '5', '--duration', '600', '--password', '12345678', '--media', "$tmp/cam.h264",
			'--control-log', $log{$k},
			($k eq 'old' ? () : ('--gb-version', '3.0')),
			($k eq 'new' || $k eq 'bad' ? ('--snapshot', $k eq 'new' ? "$tmp/own.jpg" : "$tmp/not.jpg") : ())),
		'>', "$tmp/$k.out", '2>', "$tmp/$k.err");
}
for my $k (sort keys %dev)
{
	wait_ok($node, "SELECT online FROM vms.device WHERE code = '$dev{$k}'", "device $k registers");
	my $rid = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('$dev{$k}')");
	is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rid, 60)"), 'done', "catalog of $k");
}
is($node->safe_psql('postgres', "SELECT string_agg(coalesce(gb_version, '-'), ',' ORDER BY device_code) FROM vms.device_session"
	. " WHERE device_code IN ('$dev{old}', '$dev{new}', '$dev{bad}')"), '-,3.0,3.0', 'the X-GB-Ver each registered with');

$node->safe_psql('postgres', "SET SESSION AUTHORIZATION gadmin; SELECT vms.grant_access(r, 'all', NULL, '{snapshot}', 4::smallint) FROM unnest('{op,op2,op3}'::name[]) r");

# a picture as bytes: vms.snapshot's result written to a file for ffprobe
sub snapshot
{
	my ($who, $channel, $file) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET SESSION AUTHORIZATION $who; SELECT encode(vms.snapshot('$channel'), 'hex')", timeout => 180);
	return (undef, $err) if $ret != 0;
	open(my $o, '>:raw', $file) or die;
	print $o pack('H*', $out);
	close $o;
	return ($out, '');
}
sub probe
{
	my ($file) = @_;
	my $out = `ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height -of csv=p=0 '$file' 2>&1`;
	chomp $out;
	return $out;
}
sub file_hex
{
	my ($file) = @_;
	open(my $i, '<:raw', $file) or die;
	local $/;
	my $b = <$i>;
	close $i;
	return unpack('H*', $b);
}

# no right: refused (42501), nothing asked of the device
my ($x, $err) = snapshot('nosy', $ch{old}, "$tmp/nosy.jpg");
like($err, qr/permission denied to snapshot channel/, 'without the snapshot right: refused');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.snapshot_request"), '0', 'nothing was asked of a device');
($x, $err) = snapshot('op', '34020000001310000402', "$tmp/dark.jpg");
like($err, qr/device 34020000001320000401 is offline/, 'a channel whose device is offline: refused');

# 2016 device: a frame over INVITE, a JPEG FFmpeg reads at the stream's size
($x, $err) = snapshot('op', $ch{old}, "$tmp/old.jpg");
ok(defined $x, 'the 2016 device gives a snapshot') or diag($err);
like($x // '', qr/^ffd8ff/, 'it starts with a JPEG marker');
is(probe("$tmp/old.jpg"), 'mjpeg,320,180', 'ffprobe reads it as a 320x180 JPEG (a frame of the stream)');
is($node->safe_psql('postgres', "SELECT method, state, requested_by, error IS NULL FROM vms.snapshot_request WHERE channel_code = '$ch{old}'"),
	'invite|done|op|t', 'taken over INVITE, for op');
my @ctl = do { open(my $l, '<', $log{old}); <$l> };
is(scalar(grep { /SnapShotConfig/ } @ctl), 0, 'no SnapShotConfig was sent to the 2016 device');

# 2022 device: its own picture, uploaded to us; byte for byte the file it sent
($x, $err) = snapshot('op', $ch{new}, "$tmp/new.jpg");
ok(defined $x, 'the 2022 device gives a snapshot') or diag($err);
is($x, file_hex("$tmp/own.jpg"), 'it is the JPEG the device uploaded, byte for byte');
is(probe("$tmp/new.jpg"), 'mjpeg,200,120', 'ffprobe reads it as the 200x120 JPEG');
my ($token, $method) = split /\|/, $node->safe_psql('postgres',
	"SELECT token, method FROM vms.snapshot_request WHERE channel_code = '$ch{new}'");
is($method, 'device', "taken by the device's own SnapShotConfig");
@ctl = do { open(my $l, '<', $log{new}); <$l> };
my ($cfg) = grep { /\tDeviceConfig\t/ } @ctl;
like($cfg // '', qr{<SnapShotConfig><SnapNum>1</SnapNum><Interval>1</Interval><UploadURL>http://127\.0\.0\.1:577[23][0-9]/snapshot/$token</UploadURL><SessionID>$token</SessionID></SnapShotConfig>},
	'the device received SnapShotConfig: one picture, the upload URL with the token, SessionID the token');
like($token, qr/^[0-9a-f]{32}$/, 'the token is 128 random bits');
ok((grep { /^Upload\t200\t/ } @ctl), 'its upload was answered 200');
is($node->safe_psql('postgres', "SELECT count(*), min(detail ->> 'method') FROM vms.audit_log WHERE action = 'snapshot' AND session_role = 'op'"),
	'2|device', 'each use is audited with how it was taken');

# 2022 device uploading something else: refused (415), then the INVITE path
($x, $err) = snapshot('op', $ch{bad}, "$tmp/bad.jpg");
ok(defined $x, 'the device with a bad upload still gives a snapshot') or diag($err);
is(probe("$tmp/bad.jpg"), 'mjpeg,320,180', 'a frame of its stream, over INVITE');
@ctl = do { open(my $l, '<', $log{bad}); <$l> };
ok((grep { /^Upload\t415\t/ } @ctl), 'its upload that is not a JPEG was refused 415');
like($node->safe_psql('postgres', "SELECT method || ': ' || error FROM vms.snapshot_request WHERE channel_code = '$ch{bad}'"),
	qr/^invite: the device accepted SnapShotConfig but uploaded no JPEG/, 'why the device picture was not taken is kept');

# ---- the use is audited by the worker's own transaction: a rollback keeps it
my $audited = "SELECT count(*) FROM vms.audit_log WHERE action = 'snapshot' AND session_role = 'op' AND object = '$ch{new}'";
my $before = $node->safe_psql('postgres', $audited);
my ($ret, $out);
($ret, $out, $err) = $node->psql('postgres',
	"SET SESSION AUTHORIZATION op; BEGIN; SELECT octet_length(vms.snapshot('$ch{new}')) = " . (-s "$tmp/own.jpg") . "; ROLLBACK;",
	timeout => 180);
is($out, 't', 'a snapshot in a transaction then rolled back: the caller had the picture') or diag($err);
is($node->safe_psql('postgres', $audited), $before + 1, 'and its use is audited all the same');
is($node->safe_psql('postgres', "SELECT detail ->> 'role', detail ->> 'method', (detail ->> 'request')::bigint = (SELECT max(id) FROM vms.snapshot_request)"
	. " FROM vms.audit_log WHERE action = 'snapshot' ORDER BY seq DESC LIMIT 1"), 'op|device|t',
	'the entry names the role, how the device was asked and the request');
($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nBEGIN; SELECT vms.audit('note', 'before a snapshot'); SELECT vms.snapshot('$ch{old}');");
like($err, qr/55000: vms\.snapshot cannot run in a transaction that has written the audit log/,
	'a transaction that wrote the audit log is refused (the worker would wait for its lock)');

# settings that every new backend and worker sees (ALTER SYSTEM, reload)
sub set_conf
{
	my (%kv) = @_;
	$node->safe_psql('postgres', join('', map { "ALTER SYSTEM SET $_ = '$kv{$_}';" } sort keys %kv) . "SELECT pg_reload_conf();");
	for my $k (sort keys %kv)
	{
		$node->poll_query_until('postgres', "SELECT setting = '$kv{$k}' FROM pg_settings WHERE name = '$k'")
		  or die "$k is not $kv{$k}";
	}
}
sub bg_snapshot
{
	my ($who, $channel) = @_;
	my %h = (out => '', err => '');
	$h{run} = IPC::Run::start([ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-c',
			"SET SESSION AUTHORIZATION $who; SELECT octet_length(vms.snapshot('$channel')) > 0" ],
		'>', \$h{out}, '2>', \$h{err});
	return \%h;
}
sub refused
{
	my ($who, $channel) = @_;
	my ($r, $o, $e) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET SESSION AUTHORIZATION $who; SELECT vms.snapshot('$channel')", timeout => 180);
	return $e;
}

# ---- uploads: only from the device's address, to its URL, of at most 8192x8192 pixels
set_conf('vms.snapshot_device_wait' => 120, 'vms.snapshot_timeout' => 120);
my $q = bg_snapshot('op', $ch{quiet});
ok($node->poll_query_until('postgres', "SELECT r.state = 'done' FROM vms.snapshot_request s JOIN vms.sip_request r ON r.id = s.sip_request_id"
	. " WHERE s.channel_code = '$ch{quiet}'"), 'the device that never uploads accepted SnapShotConfig');
my $url = $node->safe_psql('postgres', "SELECT (xpath('//UploadURL/text()', (r.params ->> 'xml')::xml))[1]::text"
	. " FROM vms.snapshot_request s JOIN vms.sip_request r ON r.id = s.sip_request_id WHERE s.channel_code = '$ch{quiet}'");
like($url, qr{^http://127\.0\.0\.1:\d+/snapshot/[0-9a-f]{32}$}, 'its upload URL');
my $own = do { open(my $i, '<:raw', "$tmp/own.jpg") or die; local $/; <$i> };
my $r = HTTP::Tiny->new(local_address => '127.0.0.2', timeout => 60)
  ->request('POST', $url, { content => $own, headers => { 'Content-Type' => 'image/jpeg' } });
is($r->{status}, 403, 'a JPEG to the right URL from another address (127.0.0.2) is refused 403');
my $dev_http = HTTP::Tiny->new(timeout => 60);
(my $wrong = $url) =~ s{/snapshot/[0-9a-f]{32}$}{/snapshot/00000000000000000000000000000000};
is($dev_http->request('POST', $wrong, { content => $own, headers => { 'Content-Type' => 'image/jpeg' } })->{status}, 404,
	'from the device\'s address to a wrong URL: 404');
# the worker looks at its request again after these (a refused upload of its own would end the wait there)
my $t = $node->safe_psql('postgres', "SELECT clock_timestamp()");
ok($node->poll_query_until('postgres', "SELECT bool_or(query_start > '$t' AND query LIKE '%sip_request%') FROM pg_stat_activity"
	. " WHERE backend_type = 'vms snapshot'"), 'the worker looked at the device\'s answer since');
system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'color=c=gray:size=8200x8200', '-frames:v', '1',
	"$tmp/big.jpg") == 0 or die 'ffmpeg failed';
my $big = do { open(my $i, '<:raw', "$tmp/big.jpg") or die; local $/; <$i> };
ok(length($big) < 4 * 1024 * 1024, 'an 8200x8200 JPEG under the 4 MB limit');
is($dev_http->request('POST', $url, { content => $big, headers => { 'Content-Type' => 'image/jpeg' } })->{status}, 415,
	'the wait goes on (the 403 and 404 did not end it); a JPEG of more than 8192x8192 pixels is refused 415');
$q->{run}->finish;
is($q->{out}, "t\n", 'the snapshot is then taken over INVITE') or diag($q->{err});
like($node->safe_psql('postgres', "SELECT method || ': ' || error FROM vms.snapshot_request WHERE channel_code = '$ch{quiet}'"),
	qr/^invite: the device accepted SnapShotConfig but uploaded no JPEG within 120 s \(its uploads were refused/,
	'none of the three uploads was taken; the device\'s own refused one ended the wait');

# ---- caps: one snapshot of a channel at a time, per session role, in the cluster
set_conf('vms.snapshot_max_per_role' => 1, 'vms.snapshot_max_concurrent' => 2);
# the workers are held at their first statement (the request's INSERT) by a lock of ours
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE vms.snapshot_request IN EXCLUSIVE MODE');
my $b1 = bg_snapshot('op', $ch{old});
my $b2 = bg_snapshot('op2', $ch{new});
ok($node->poll_query_until('postgres', "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'vms snapshot' AND wait_event_type = 'Lock'"),
	'two snapshots in progress (op, op2)');
like(refused('op', $ch{bad}), qr/53400: too many snapshots in progress for role "op"/, 'a second one of op: refused (vms.snapshot_max_per_role 1)');
like(refused('op3', $ch{bad}), qr/53400: too many snapshots in progress\n/, 'a third in the cluster: refused (vms.snapshot_max_concurrent 2)');
like(refused('op3', $ch{old}), qr/55P03: a snapshot of channel $ch{old} is being taken/, 'a second of the same channel: refused');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'vms snapshot'"), '2',
	'no worker was started for the refused ones');
$locker->query_safe('COMMIT');
$locker->quit;
$b1->{run}->finish;
$b2->{run}->finish;
is("$b1->{out}|$b2->{out}", "t\n|t\n", 'the two held snapshots are taken once let go') or diag("$b1->{err} $b2->{err}");
my $b3 = bg_snapshot('op', $ch{bad});
$b3->{run}->finish;
is($b3->{out}, "t\n", 'then op may take one again') or diag($b3->{err});

# ---- a cancel once the device was asked: the use stays audited, the worker goes
my $aq = "SELECT count(*) FROM vms.audit_log WHERE action = 'snapshot' AND object = '$ch{quiet}'";
my $before_q = $node->safe_psql('postgres', $aq);
my $last_q = $node->safe_psql('postgres', "SELECT max(id) FROM vms.snapshot_request WHERE channel_code = '$ch{quiet}'");
my $c = bg_snapshot('op', $ch{quiet});
ok($node->poll_query_until('postgres', "SELECT r.state = 'done' FROM vms.snapshot_request s JOIN vms.sip_request r ON r.id = s.sip_request_id"
	. " WHERE s.channel_code = '$ch{quiet}' AND s.id > $last_q"), 'a snapshot waits for a device that was asked');
is($node->safe_psql('postgres', "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity"
	. " WHERE backend_type = 'client backend' AND query LIKE '%vms.snapshot(''$ch{quiet}'')%' AND pid <> pg_backend_pid()"), '1',
	'its caller is cancelled');
$c->{run}->finish;
like($c->{err}, qr/canceling statement due to user request/, 'the caller gets the cancel');
is($node->safe_psql('postgres', $aq), $before_q + 1, 'the use is audited all the same');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'vms snapshot'"),
	'and the worker is stopped');

# ---- the least time between two snapshots of a channel
set_conf('vms.snapshot_min_interval' => 3600);
like(refused('op', $ch{new}), qr/53400: a snapshot of channel $ch{new} was taken less than 1h ago/,
	'a channel snapshotted within vms.snapshot_min_interval: refused');

$_->kill_kill for @sims;
$node->stop;

done_testing();
