# The inspector's sources, media and plans under hostile or broken input,
# and the secrets upgrade (issue 12):
# - a stream_url naming a server file (or another FFmpeg protocol) is refused
#   when written, and a row forced past the check by a superuser is refused
#   by the inspector without being opened (a real, decodable clip);
# - a media flood to the inspection port from a second sender (another
#   address, and the device's address with another SSRC) is ignored, and the
#   real camera's sample (test/sim/gbsim --media) is still diagnosed;
# - a plan with a window threshold that is not a number (forced in) fails
#   its own task, reported, beside a good plan whose channel is inspected; a
#   plan whose scope does not parse fails its own round; thresholds are
#   checked when a plan is written (22023, the key named);
# - upgrading a 0.1.0 database: upstream passwords re-encrypted bound to
#   their rows when the key is readable, kept readable in place when not;
#   an old stream_url that breaks the rule leaves the check NOT VALID.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IPC::Run;
use IO::Socket::INET;
use Time::HiRes qw(usleep);
use POSIX ();
use Socket qw(pack_sockaddr_in inet_aton);

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my $media_port = PostgreSQL::Test::Cluster::get_free_port();
my ($server_id, $realm) = ($SIP_SERVER_ID, $SIP_REALM);

# a decodable clip on the server, and the camera's H.264 for gbsim
system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '3',
	'-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', "$tmp/clip.mp4") == 0
  or die 'ffmpeg clip failed';
system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25', '-t', '4',
	'-c:v', 'libx264', '-preset', 'veryfast', '-x264-params', 'aud=1:keyint=25', '-bsf:v', 'h264_mp4toannexb',
	'-f', 'h264', "$tmp/cam.h264") == 0
  or die 'ffmpeg cam failed';
chmod 0755, $tmp;

my $node = vms_node('inspsec',
	'vms.viid_enabled' => 'off',
	'vms.sip_id' => $server_id,
	'vms.sip_listen' => '127.0.0.1',
	'vms.sip_port' => $sip_port,
	'vms.sip_flush_interval' => 200,
	'vms.inspector_workers' => 1,
	'vms.inspect_media_port_min' => $media_port,
	'vms.inspect_media_port_max' => $media_port);
my $key = $node->data_dir . '/vms_secret.key';
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('34020000001180000001', 'NVR');
INSERT INTO vms.channel (code, device_code, name) VALUES
  ('34020000001320000001', '34020000001180000001', 'file'),
  ('34020000001320000002', '34020000001180000001', 'file url'),
  ('34020000001320000003', '34020000001180000001', 'good'),
  ('34020000001320000004', '34020000001180000001', 'bad plan');
});

sub psql_err
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $err;
}

# ---------------------------------------------------------------- sources
for my $url ("$tmp/clip.mp4", "file://$tmp/clip.mp4", "concat:$tmp/clip.mp4", "subfile,,start,0,end,0,,:$tmp/clip.mp4",
	'pipe:0', 'data:video/mp4;base64,AAAA', 'rtsp://', 'http:///x', "rtsp://cam/a b", 'udp://127.0.0.1:5000')
{
	like(psql_err("UPDATE vms.channel SET stream_url = '$url' WHERE code = '34020000001320000001'"),
		qr/23514.*channel_stream_url_check/s, "stream_url '$url' is refused when written");
}
for my $url ('rtsp://admin:p%40ss@10.0.0.1:554/Streaming/Channels/101', 'rtsps://cam.example/live',
	'http://10.0.0.2/video.mjpg', 'https://cam.example/live.m3u8?token=a')
{
	is(psql_err("UPDATE vms.channel SET stream_url = '$url' WHERE code = '34020000001320000003'"), '',
		"stream_url '$url' is taken");
}

# a ledger import rejects such a row (with its reason) and loads the others
my $csv = "code,name,stream_url\n34020000001320000201,a,$tmp/clip.mp4\n34020000001320000202,b,rtsp://10.0.0.3/live\n";
is($node->safe_psql('postgres', "SELECT j.loaded_rows || ' ' || j.rejected_rows FROM vms.ledger_import(convert_to(\$\$$csv\$\$, 'UTF8')) j"),
	'1 1', 'an import rejects the row with a file stream_url and loads the other');
like($node->safe_psql('postgres', "SELECT array_to_string(reasons, ';') FROM vms.import_rejection"),
	qr/stream_url ".*clip.mp4" is not an rtsp/, 'with the reason');

# a superuser forces server-file sources past the check
my $check = $node->safe_psql('postgres',
	"SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'channel_stream_url_check'");
$node->safe_psql('postgres', qq{
ALTER TABLE vms.channel DROP CONSTRAINT channel_stream_url_check;
UPDATE vms.channel SET stream_url = '$tmp/clip.mp4' WHERE code = '34020000001320000001';
UPDATE vms.channel SET stream_url = 'file://$tmp/clip.mp4' WHERE code = '34020000001320000002';
ALTER TABLE vms.channel ADD CONSTRAINT channel_stream_url_check $check NOT VALID;
SELECT vms.inspection_plan_add('sources', '{"channels": ["34020000001320000001", "34020000001320000002"]}', 'every 1 h',
       '{"timeout_ms": 5000, "checks": ["stream", "black_screen"]}');
});
wait_ok($node, "SELECT count(*) = 2 FROM vms.quality_result", 'both forced channels have a result');
is($node->safe_psql('postgres', qq{
SELECT string_agg(channel_code || ' ' || stream_ok || ' ' || (checks -> 'stream' ->> 'detail' LIKE 'refused:%'), ',' ORDER BY channel_code)
  FROM vms.quality_result}),
	'34020000001320000001 false true,34020000001320000002 false true',
	'the inspector refused both without opening them (the clip itself decodes)');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.snapshot"), '0', 'and took no picture of the server file');

# ---------------------------------------------------------------- plans
like(psql_err(qq{SELECT vms.inspection_plan_add('w', '{}', 'every 1 h',
       '{"windows": [{"from": "22:00", "to": "06:00", "thresholds": {"blur_min": "high"}}]}')}),
	qr/22023.*threshold "blur_min" in the window from 22:00 to 06:00 must be a number/s,
	'a window threshold that is not a number is refused (22023, key named)');
like(psql_err(qq{SELECT vms.inspection_plan_add('w', '{}', 'every 1 h', '{"thresholds": {"blurriness": 0.5}}')}),
	qr/22023.*unknown threshold "blurriness"/s, 'an unknown threshold is refused');
like(psql_err(qq{SELECT vms.inspection_plan_add('w', '{}', 'every 1 h', '{"thresholds": {"blur_min": 7}}')}),
	qr/22023.*threshold "blur_min" in the plan's thresholds is out of range/s, 'a threshold out of range is refused');
like(psql_err(qq{SELECT vms.inspection_plan_add('w', '{}', 'every 1 h', '{"thresholds": {"blur_min": null}}')}),
	qr/22023.*threshold "blur_min" in the plan's thresholds must be a number/s, 'a null threshold is refused');

# the bad plan first (its task has the lower id), forced past the check: a
# window threshold that is not a number, all day long
$node->safe_psql('postgres', qq{
SELECT vms.inspection_plan_add('bad', '{"channels": ["34020000001320000004"]}', 'every 1 h',
       '{"timeout_ms": 3000, "checks": ["stream"], "enabled": false}');
SELECT vms.inspection_plan_add('bad scope', '{"channels": ["34020000001320000004"]}', 'every 1 h',
       '{"timeout_ms": 3000, "checks": ["stream"], "enabled": false}');
UPDATE vms.channel SET stream_url = 'rtsp://127.0.0.1:1/none' WHERE code IN ('34020000001320000003', '34020000001320000004');
ALTER TABLE vms.inspection_plan DISABLE TRIGGER inspection_plan_check;
UPDATE vms.inspection_plan
   SET windows = '[{"from": "00:00", "to": "12:00", "thresholds": {"blur_min": "high"}},
                   {"from": "12:00", "to": "00:00", "thresholds": {"blur_min": "high"}}]', enabled = true
 WHERE name = 'bad';
UPDATE vms.inspection_plan SET scope = '{"channels": "34020000001320000004"}', enabled = true WHERE name = 'bad scope';
ALTER TABLE vms.inspection_plan ENABLE TRIGGER inspection_plan_check;
});
wait_ok($node, "SELECT count(*) = 1 FROM vms.inspection_task t JOIN vms.inspection_plan p ON p.id = t.plan_id WHERE p.name = 'bad'",
	'the bad plan has its task');
$node->safe_psql('postgres', qq{
SELECT vms.inspection_plan_add('good', '{"channels": ["34020000001320000003"]}', 'every 1 h',
       '{"timeout_ms": 3000, "checks": ["stream"]}')});
wait_ok($node, "SELECT count(*) = 1 FROM vms.quality_result WHERE channel_code = '34020000001320000003'",
	"the good plan's channel is inspected");
like($node->safe_psql('postgres', qq{
SELECT t.state || ': ' || t.error FROM vms.inspection_task t JOIN vms.inspection_plan p ON p.id = t.plan_id WHERE p.name = 'bad'}),
	qr/^failed: plan "bad" is not usable: .*blur_min.*must be a number/, 'the bad plan failed its own task, with the reason');
is($node->safe_psql('postgres', "SELECT failed || ' ' || (finished_at IS NOT NULL) FROM vms.inspection_run_rates WHERE plan = 'bad'"),
	'1 true', 'its round counts the failure and is finished');
like($node->safe_psql('postgres', "SELECT channels || ' ' || error FROM vms.inspection_run_rates WHERE plan = 'bad scope'"),
	qr/^0 inspection scope key "channels" must be an array/, 'a scope that does not parse fails its own round, reported');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.quality_result WHERE channel_code = '34020000001320000004'"), '0',
	'no verdict (and no alarm) for the channel of the bad plan');
like(slurp_file($node->logfile), qr/WARNING:  inspection task \d+ \(channel 34020000001320000004\) failed: plan "bad"/,
	'the failure is in the server log');
$node->safe_psql('postgres', "UPDATE vms.inspection_plan SET enabled = false");

# ---------------------------------------------------------------- media flood
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('34020000001320000101', 'IPC');
SELECT vms.device_set_password('34020000001320000101', '12345678', '$realm');
});
wait_ok($node, "SELECT state = 'running' FROM vms.worker_status WHERE name = 'sip'", 'sip worker runs');
my $h = IPC::Run::start(gbsim_cmd($sip_port, '--devices', '1', '--first-code', '34020000001320000101', '--keepalive', '2', '--channels', '1',
		'--media', "$tmp/cam.h264", '--duration', '120'),
	'>', "$tmp/gbsim.out", '2>', "$tmp/gbsim.err");
wait_ok($node, "SELECT online FROM vms.device WHERE code = '34020000001320000101'",
	'the camera registered');
my $rid = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('34020000001320000101')");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rid, 20)"), 'done', 'its catalog arrived');
my $cam = $node->safe_psql('postgres',
	"SELECT code FROM vms.channel WHERE device_code = '34020000001320000101' AND stream_url IS NULL");
like($cam, qr/^\d{20}$/, 'a GB/T 28181 channel');
$node->safe_psql('postgres', qq{
SELECT vms.inspection_plan_add('gb', '{"channels": ["$cam"]}', 'every 1 h',
       '{"timeout_ms": 20000, "sample_seconds": 3, "checks": ["stream", "signal_loss", "black_screen"]}')});
wait_ok($node, "SELECT count(*) = 1 FROM vms.sip_request WHERE kind = 'invite' AND progress ? 'ssrc'",
	'the inspector INVITEd the camera');
my $ssrc = $node->safe_psql('postgres', "SELECT progress ->> 'ssrc' FROM vms.sip_request WHERE kind = 'invite'");

# two senders flood the media port while the camera streams: another
# address with the right SSRC, and the camera's address with another SSRC.
# The flood runs from the INVITE (before the inspector's sample can start)
# until the sample has its result, so it covers the whole sample window
# however the machine schedules the two; the parent stops it.
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0)
{
	# the child must not run the cluster's END blocks: POSIX::_exit.  A bound
	# in case the parent dies without stopping it.
	my $until = time() + 2 * $PostgreSQL::Test::Utils::timeout_default;
	eval {
		my $foreign = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.2') or die "socket: $!";
		my $local = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1') or die "socket: $!";
		my @senders = ([ $foreign, $ssrc ], [ $local, ($ssrc + 1) % 4294967296 ]);
		my $to = pack_sockaddr_in($media_port, inet_aton('127.0.0.1'));
		# payloads that start like an MPEG-PS pack, so that they would corrupt
		# the stream if taken (made once: the flood is not the CPU's main work)
		my @payload = map { "\x00\x00\x01\xba" . join('', map { chr(int(rand(256))) } 1 .. 1000) } 1 .. 32;
		for (my $i = 1; time() < $until; $i++)
		{
			for my $s (@senders)
			{
				# RTP v2, PT 96, a random sequence number
				my $pkt = pack('CCnNN', 0x80, 96, int(rand(65536)), ($i * 3600) % 4294967296, $s->[1]) . $payload[ $i % 32 ];
				$s->[0]->send($pkt, 0, $to);
			}
			usleep(1000) if $i % 2 == 0;
		}
	};
	print STDERR "flood: $@" if $@;
	POSIX::_exit(0);
}
my $have_result = $node->poll_query_until('postgres', "SELECT count(*) = 1 FROM vms.quality_result WHERE channel_code = '$cam'");
kill 'TERM', $pid;
waitpid($pid, 0);
ok($have_result, 'the GB/T 28181 sample has a result, under the flood');
is($node->safe_psql('postgres', "SELECT stream_ok || ' ' || image_ok || ' ' || array_to_string(abnormal, ',') FROM vms.quality_result WHERE channel_code = '$cam'"),
	'true true ', "the camera's stream was still diagnosed, and normal");
my ($packets, $rejected, $capped) = split /\|/, $node->safe_psql('postgres',
	"SELECT sample #>> '{rtp,packets}', sample #>> '{rtp,rejected}', sample #>> '{rtp,capped}' FROM vms.quality_result WHERE channel_code = '$cam'");
ok($rejected > 100, "the flood was counted and ignored ($rejected packets rejected)");
$h->signal('TERM');
$h->finish;
my ($sent) = slurp_file("$tmp/gbsim.out") =~ /media_packets=(\d+)/;
ok(defined $sent && $packets > 0 && $packets <= $sent,
	"only the camera's packets were taken ($packets taken, the camera sent " . ($sent // '?') . ")");
is($capped, 'false', 'within the byte cap');

# ---------------------------------------------------------------- upgrade of 0.1.0 secrets and stream URLs
system("head -c 32 /dev/urandom > '$key' && chmod 600 '$key'") == 0 or die 'key file';
for my $db ('old_key', 'old_nokey')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, qq{
CREATE EXTENSION vms VERSION '0.1.0' CASCADE;
SET vms.secret_key_file = '$key';
SELECT vms.viid_add_upstream('up', 'http://127.0.0.1:9', '11010500005030000001', 'u', 'pw-$db');
INSERT INTO vms.device (code, name) VALUES ('34020000001180000009', 'NVR');
INSERT INTO vms.channel (code, device_code, name, stream_url) VALUES ('34020000001320000009', '34020000001180000009', 'old', '/var/video/old.mp4');
});
	is($node->safe_psql($db, "SELECT substr(password_enc, 1, 2) FROM vms.viid_upstream"), '\x5631', "$db: a 0.1.0 (V1) password");
}
my ($rc, $out, $err) = $node->psql('old_key', "SET vms.secret_key_file = '$key'; ALTER EXTENSION vms UPDATE");
is($rc, 0, 'old_key: updated with the key readable');
like($err, qr/1 channels have a stream URL that is not an rtsp/, 'the old file stream_url is reported');
is($node->safe_psql('old_key', qq{
SET vms.secret_key_file = '$key';
SELECT encode(substr(password_enc, 1, 2), 'escape') || ' ' || vms.secret_decrypt(password_enc, 'viid_upstream.password_enc:up') FROM vms.viid_upstream}),
	'V2 pw-old_key', 'old_key: re-encrypted bound to its row (V2), same password');
is($node->safe_psql('old_key', "SELECT convalidated FROM pg_constraint WHERE conname = 'channel_stream_url_check'"), 'f',
	'the stream_url check is left NOT VALID while old rows break it');
isnt(scalar $node->psql('old_key', "UPDATE vms.channel SET stream_url = 'concat:/etc/passwd'"), 0,
	'but new writes are checked');
($rc, $out, $err) = $node->psql('old_nokey', "ALTER EXTENSION vms UPDATE");
is($rc, 0, 'old_nokey: updated without the key');
like($err, qr/upstream passwords are left in the 0.1.0 form/, 'with a warning that says how to finish');
is($node->safe_psql('old_nokey', qq{
SET vms.secret_key_file = '$key';
SELECT encode(substr(password_enc, 1, 2), 'escape') || ' ' || vms.secret_decrypt(password_enc, 'viid_upstream.password_enc:up') FROM vms.viid_upstream}),
	'V1 pw-old_nokey', 'old_nokey: the 0.1.0 password still works where it is');

$node->stop;
done_testing();
