# Inspection of channels reachable only through GB/T 28181: the inspector
# binds a media port, the SIP worker INVITEs the channel (SDP, PS/90000),
# ACKs the 200, the simulated device (test/sim/gbsim --media) streams H.264
# in an MPEG-2 program stream over RTP (UDP, then TCP per RFC 4571), the
# inspector diagnoses what arrived and the SIP worker sends BYE.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IPC::Run;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my $media_min = PostgreSQL::Test::Cluster::get_free_port();
my ($server_id, $realm) = ($SIP_SERVER_ID, $SIP_REALM);

# the camera's picture: H.264 with access-unit delimiters (Annex B)
system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25', '-t', '4',
	'-c:v', 'libx264', '-preset', 'veryfast', '-x264-params', 'aud=1:keyint=25', '-bsf:v', 'h264_mp4toannexb',
	'-f', 'h264', "$tmp/cam.h264") == 0
  or die 'ffmpeg failed';

my $node = vms_node('media',
	'vms.viid_enabled' => 'off',
	'vms.sip_id' => $server_id,
	'vms.sip_listen' => '127.0.0.1',
	'vms.sip_port' => $sip_port,
	'vms.sip_flush_interval' => 200,
	'vms.inspector_workers' => 1,
	'vms.inspect_media_port_min' => $media_min,
	'vms.inspect_media_port_max' => $media_min + 20);
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('34020000001320000001', 'IPC');
SELECT vms.device_set_password('34020000001320000001', '12345678', '$realm');
});
sip_running($node);

my $h = IPC::Run::start(gbsim_cmd($sip_port, '--devices', '1', '--keepalive', '2', '--channels', '1', '--media', "$tmp/cam.h264", '--duration', '60'),
	'>', "$tmp/gbsim.out", '2>', "$tmp/gbsim.err");
wait_ok($node, "SELECT online FROM vms.device WHERE code = '34020000001320000001'",
	'the camera registered');
my $rid = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('34020000001320000001')");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rid, 20)"), 'done', 'its catalog arrived');
my $channel = $node->safe_psql('postgres', "SELECT code FROM vms.channel WHERE device_code = '34020000001320000001'");
like($channel, qr/^\d{20}$/, "one channel ($channel), without a stream URL");

# INVITE and BYE from SQL
my $media_port = $media_min + 30;
$rid = $node->safe_psql('postgres', "SELECT vms.sip_invite('$channel', '127.0.0.1', $media_port)");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rid, 20)"), 'done', 'INVITE answered 200 and ACKed');
like($node->safe_psql('postgres', "SELECT result ->> 'call_id' FROM vms.sip_request WHERE id = $rid"), qr/\w+/, 'the call id is kept');
my $bye = $node->safe_psql('postgres', "SELECT vms.sip_bye($rid)");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($bye, 20)"), 'done', 'BYE answered');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT vms.sip_invite('$channel', 'not-an-ip', 5)");
like($err, qr/is not an IPv4 address and a port/, 'a bad media address is refused');

# the inspector samples it through the SIP worker
$node->safe_psql('postgres', qq{
SELECT vms.inspection_plan_add('gb', '{"channels": ["$channel"]}', 'every 1 h',
       '{"timeout_ms": 15000, "checks": ["stream", "black_screen", "blur", "freeze"]}')});
wait_ok($node, "SELECT count(*) = 1 FROM vms.quality_result", 'a result arrived');
is($node->safe_psql('postgres', "SELECT source FROM vms.inspection_task"), "gb28181:$channel",
	'the task goes through GB/T 28181 (no stream URL)');
my $r = $node->safe_psql('postgres', "SELECT stream_ok || ' ' || image_ok || ' ' || array_to_string(abnormal, ',') FROM vms.quality_result");
is($r, 'true true ', 'the RTP/PS stream was decoded and judged normal');
like($node->safe_psql('postgres', "SELECT sample ->> 'codec' FROM vms.quality_result"), qr/h264.*ps-rtp/, 'H.264 in PS over RTP');
wait_ok($node, "SELECT count(*) = 2 FROM vms.sip_request WHERE kind = 'bye' AND state = 'done'",
	'and the session was ended with BYE');

# the same over TCP (RFC 4571): the inspector listens, the device connects
$node->append_conf('postgresql.conf', "vms.inspect_media_transport = tcp\n");
$node->reload;
# a new session sees the setting once the postmaster has read the file and
# signalled its children; the inspector reloads before its next round
wait_ok($node, "SELECT current_setting('vms.inspect_media_transport') = 'tcp'",
	'the reload is in force');
$node->safe_psql('postgres', "SELECT vms.inspection_run_now('gb')");
wait_ok($node, "SELECT count(*) = 2 FROM vms.quality_result", 'a second result arrived');
is($node->safe_psql('postgres', "SELECT stream_ok || ' ' || image_ok FROM vms.quality_result ORDER BY id DESC LIMIT 1"),
	'true true', 'RTP over TCP decoded too');
like($node->safe_psql('postgres', "SELECT params ->> 'transport' FROM vms.sip_request WHERE kind = 'invite' ORDER BY id DESC LIMIT 1"),
	qr/^tcp$/, 'the INVITE asked for TCP');
($ret, $out, $err) = $node->psql('postgres', "SELECT vms.sip_invite('$channel', '127.0.0.1', 40000, 'sctp')");
like($err, qr/media transport "sctp" is neither udp nor tcp/, 'an unknown media transport is refused');

$h->kill_kill;
$node->stop;
done_testing();
