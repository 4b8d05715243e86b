# vms.snapshot (issue 17): a real JPEG of a channel, from three gbsim
# devices: one that speaks GB/T 28181-2016 (no X-GB-Ver: a frame sampled over
# INVITE, decoded by FFmpeg and encoded as JPEG), one that speaks 2022
# (X-GB-Ver: 3.0: DeviceConfig SnapShotConfig, and the device POSTs its own
# JPEG to the upload URL vms serves), and a 2022 device whose upload is not a
# JPEG (refused, then the INVITE path).  The pictures are checked with ffprobe
# (a tool we did not write) and against the uploaded file's bytes; the right
# is checked and the use audited; an offline device is refused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
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
	'vms.snapshot_timeout' => 40);

my %dev = (old => '34020000001320000101', new => '34020000001320000201', bad => '34020000001320000301');
# each device's one channel (gbsim: type 131, serial = device serial x channels + 0)
my %ch = (old => '34020000001310000101', new => '34020000001310000201', bad => '34020000001310000301');
$node->safe_psql('postgres', join('', map {
	"INSERT INTO vms.device (code, name) VALUES ('$dev{$_}', 'gbsim $_');
	 SELECT vms.device_set_password('$dev{$_}', '12345678', '$SIP_REALM');" } sort keys %dev) . qq{
INSERT INTO vms.device (code, name) VALUES ('34020000001320000401', 'never registers');
INSERT INTO vms.channel (code, device_code, name) VALUES ('34020000001310000402', '34020000001320000401', 'dark');
CREATE ROLE op LOGIN IN ROLE vms_analyst;
CREATE ROLE nosy LOGIN IN ROLE vms_analyst;
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
			($k eq 'old' ? () : ('--gb-version', '3.0', '--snapshot', $k eq 'new' ? "$tmp/own.jpg" : "$tmp/not.jpg"))),
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

$node->safe_psql('postgres', "SET SESSION AUTHORIZATION gadmin; SELECT vms.grant_access('op', 'all', NULL, '{snapshot}', 4::smallint)");

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

$_->kill_kill for @sims;
$node->stop;
done_testing();
