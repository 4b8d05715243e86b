# Device control, recordings and a GB/T 28181-2022 device (issue 17), through
# the SIP worker to the device simulator test/sim/gbsim, which logs every
# Control/Query body exactly as it arrived (--control-log).  Checked on the
# device's side: the PTZCmd bytes of every command (hand-computed here, GB/T
# 28181 A.3), presets, the other commands; on ours: the answers stored (OK,
# an ERROR with the device's words, a query the device never answers timing
# out), RecordInfo collected over pages up to SumNum, the recording gap the
# device's list leaves found and alarmed (by hand and by an inspection plan's
# "recording" check), the X-GB-Ver it registered with, and a playback session
# whose RTP/PS FFmpeg decodes, over UDP and over TCP with the media server
# passive (the device connects) and active (it connects to the device);
# forty concurrent live views of one channel sharing one INVITE; a device's
# error answer and a device that never answers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use IO::Select;
use IO::Socket::INET;

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $gbsim = "$root/test/sim/gbsim";
-x $gbsim or BAIL_OUT("build test/sim/gbsim first (make -C test/sim)");
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my $server_id = '34020000002000000001';
my $realm = '3402000000';
my $dev = '34020000001320000001';
# gbsim's channels of device serial 1 (2 channels, type 131): serials 2 and 3
my $ch = '34020000001310000002';

my $node = PostgreSQL::Test::Cluster->new('devctl');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'vms'
vms.database = 'postgres'
vms.viid_enabled = off
vms.sip_id = '$server_id'
vms.sip_listen = '127.0.0.1'
vms.sip_port = $sip_port
vms.sip_keepalive_interval = 5
vms.sip_keepalive_count = 3
vms.sip_page_timeout = 3
vms.sip_catalog_timeout = 6
vms.sip_flush_interval = 200
max_connections = 80
});
$node->start;
$node->safe_psql('postgres', qq{
CREATE EXTENSION vms CASCADE;
INSERT INTO vms.device (code, name) VALUES ('$dev', 'gbsim 2022 IPC');
SELECT vms.device_set_password('$dev', '12345678', '$realm');
CREATE ROLE op LOGIN IN ROLE vms_analyst;
CREATE ROLE gadmin LOGIN IN ROLE vms_grant_admin;
SET SESSION AUTHORIZATION gadmin;
SELECT vms.grant_access('op', 'all', NULL, '{ptz}', 4::smallint);
});
$node->poll_query_until('postgres', "SELECT state = 'running' FROM vms.worker_status WHERE name = 'sip'")
  or die 'sip worker not running';

# a short clip for the playback session (H.264 with access-unit delimiters, as 060 makes)
system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25', '-t', '1',
	'-c:v', 'libx264', '-preset', 'veryfast', '-x264-params', 'aud=1:keyint=25', '-bsf:v', 'h264_mp4toannexb',
	'-f', 'h264', "$tmp/cam.h264") == 0
  or die 'ffmpeg failed';
# the media server stand-in: a UDP socket on a port of 56200-56299
my ($rtp, $rtp_port);
for my $p (56200 .. 56299)
{
	$rtp = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => $p) and do { $rtp_port = $p; last };
}
die 'no UDP port free in 56200-56299' unless $rtp;

my $log = "$tmp/control.log";
my $sim = IPC::Run::start([ $gbsim, '--server', "127.0.0.1:$sip_port", '--server-id', $server_id, '--domain', $realm,
		'--devices', '1', '--first-code', $dev, '--channels', '2', '--keepalive', '5', '--duration', '900',
		'--gb-version', '3.0', '--control-log', $log, '--control-fail', 'GuardCmd', '--silent', 'HomePositionQuery',
		'--page-size', '3', '--record-gap', '2', '--media', "$tmp/cam.h264" ],
	'>', "$tmp/gbsim.out", '2>', "$tmp/gbsim.err");

ok($node->poll_query_until('postgres', "SELECT online FROM vms.device WHERE code = '$dev'"), 'the 2022 device registers and is online');
ok($node->poll_query_until('postgres', "SELECT gb_version = '3.0' FROM vms.device_session WHERE device_code = '$dev'"),
	'its X-GB-Ver: 3.0 is recorded in vms.device_session.gb_version');

# its channels through the catalog; the raw items are kept whole
my $rid = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('$dev')");
is($node->safe_psql('postgres', "SELECT state, result ->> 'channels' FROM vms.sip_request_wait($rid, 30)"), 'done|2',
	'catalog: two channels');
is($node->safe_psql('postgres', "SELECT count(*), min(item ->> 'Model') FROM vms.channel_catalog_item WHERE device_code = '$dev'"),
	'2|GBSIM-IPC', 'the raw catalog items are kept (vms.channel_catalog_item)');

# the lines gbsim logged since the last look: [root, CmdType, DeviceID, body]
my $seen = 0;
sub received
{
	my @lines;
	open(my $fh, '<', $log) or return ();
	my @all = <$fh>;
	close $fh;
	for my $l (@all[$seen .. $#all]) { chomp $l; push @lines, [ split /\t/, $l, 4 ]; }
	$seen = scalar @all;
	return @lines;
}
sub wait_request
{
	my ($id) = @_;
	return $node->safe_psql('postgres', "SELECT state, coalesce(error, '') FROM vms.sip_request_wait($id, 60)");
}

# PTZ: every command at speed 128 (80h), hand-computed: A5 0F 01, the
# instruction (A.3.2: 00 zoom-out zoom-in up down left right; A.3.3: 0100
# iris-close iris-open focus-near focus-far), pan speed in byte 5, tilt (or
# iris) in byte 6, zoom speed in byte 7's high nibble, checksum = sum mod 256
my @ptz = (
	[ 'up', 'A50F01080080003D' ], [ 'down', 'A50F010400800039' ], [ 'left', 'A50F010280000037' ],
	[ 'right', 'A50F010180000036' ], [ 'up_left', 'A50F010A808000BF' ], [ 'up_right', 'A50F0109808000BE' ],
	[ 'down_left', 'A50F0106808000BB' ], [ 'down_right', 'A50F0105808000BA' ], [ 'zoom_in', 'A50F011000008045' ],
	[ 'zoom_out', 'A50F012000008055' ], [ 'focus_near', 'A50F014280000077' ], [ 'focus_far', 'A50F014180000076' ],
	[ 'iris_open', 'A50F014400800079' ], [ 'iris_close', 'A50F01480080007D' ], [ 'stop', 'A50F0100000000B5' ]);
received();
for my $c (@ptz)
{
	my ($cmd, $hex) = @$c;
	my $id = $node->safe_psql('postgres', "SET ROLE op; SELECT vms.ptz('$ch', '$cmd', 128)");
	is(wait_request($id), 'done|', "ptz $cmd: done at the MESSAGE's 200 (PTZCmd has no Response)");
	my @got = received();
	is(scalar @got, 1, "ptz $cmd: the device received one Control");
	my ($r, $type, $target, $body) = @{ $got[0] // [] };
	is("$r $type $target", "Control DeviceControl $ch", "ptz $cmd: a DeviceControl for the channel");
	is(($body // '') =~ m{<PTZCmd>([0-9A-F]{16})</PTZCmd>} ? $1 : '', $hex, "ptz $cmd: the device got PTZCmd $hex");
}
# at the ends of the speed range: left at 255 (181+2+255 = 438 -> B6), zoom at 1 (nibble 1: 181+16+16 = D5)
for my $c ([ 'left', 255, 'A50F0102FF0000B6' ], [ 'zoom_in', 1, 'A50F0110000010D5' ])
{
	my $id = $node->safe_psql('postgres', "SET ROLE op; SELECT vms.ptz('$ch', '$c->[0]', $c->[1])");
	wait_request($id);
	my @got = received();
	is(($got[0][3] // '') =~ m{<PTZCmd>([0-9A-F]{16})</PTZCmd>} ? $1 : '', $c->[2], "ptz $c->[0] at speed $c->[1]: $c->[2]");
}
# presets: call 7 (82h, byte 6 = 7: 181+130+7 = 318 -> 3E)
$rid = $node->safe_psql('postgres', "SET ROLE op; SELECT vms.ptz_preset('$ch', 'call', 7)");
is(wait_request($rid), 'done|', 'preset call: done');
is(((received())[0][3] // '') =~ m{<PTZCmd>(\w+)</PTZCmd>} ? $1 : '', 'A50F01820007003E', 'preset call 7: PTZCmd A50F01820007003E');
# refused before anything is sent
my ($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.ptz('$ch', 'spin')");
like($err, qr/unknown PTZ command "spin"/, 'an unknown command is refused');
($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.ptz('$ch', 'up', 0)");
like($err, qr/PTZ speed 0 is out of range/, 'a speed out of range is refused');
# op's grant is 'all': the device's own code is no channel, so no right reaches it
($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.ptz('$dev', 'up')");
like($err, qr/no channel $dev/, 'ptz on the device code (not a channel) is refused');
is(scalar(received()), 0, 'nothing was sent for them');

# other commands: the device answers with a Result; ERROR fails the request with what it said
$rid = $node->safe_psql('postgres', "SELECT vms.device_guard('$dev', true)");
is(wait_request($rid), 'failed|the device answered ERROR', 'GuardCmd: the device\'s ERROR is stored');
is((received())[0][3] =~ m{<GuardCmd>SetGuard</GuardCmd>} ? 1 : 0, 1, 'the device got <GuardCmd>SetGuard</GuardCmd>');
$rid = $node->safe_psql('postgres', "SELECT vms.device_record('$ch', true)");
is(wait_request($rid), 'done|', 'RecordCmd: done');
is($node->safe_psql('postgres', "SELECT result ->> 'Result' FROM vms.sip_request WHERE id = $rid"), 'OK', 'RecordCmd: Result OK stored');
$rid = $node->safe_psql('postgres', "SELECT vms.device_alarm_reset('$dev', 5, 2)");
is(wait_request($rid), 'done|', 'AlarmCmd ResetAlarm: done');
like((received())[-1][3], qr{<AlarmCmd>ResetAlarm</AlarmCmd><Info><AlarmMethod>5</AlarmMethod><AlarmType>2</AlarmType></Info>},
	'the device got the AlarmCmd with its Info');
$rid = $node->safe_psql('postgres',
	"SELECT vms.device_config('$dev', '{\"BasicParam\": {\"Name\": \"gate <1> & 2\", \"HeartBeatInterval\": 20}}')");
is(wait_request($rid), 'done|', 'DeviceConfig BasicParam: done');
like((received())[-1][3], qr{<CmdType>DeviceConfig</CmdType>.*<BasicParam><Name>gate &lt;1&gt; &amp; 2</Name><HeartBeatInterval>20</HeartBeatInterval></BasicParam>},
	'the device got the BasicParam, escaped');

# configuration and queries
$rid = $node->safe_psql('postgres', "SELECT vms.device_config_download('$dev', 'BasicParam')");
is(wait_request($rid), 'done|', 'ConfigDownload BasicParam: done');
is($node->safe_psql('postgres', "SELECT keepalive_interval, keepalive_count FROM vms.device_session WHERE device_code = '$dev'"),
	'5|3', 'the HeartBeatInterval/Count it reports become its session\'s keepalive parameters');
# a channel's recording plan as the device has it (2022 VideoRecordPlan: repeated RecordSchedule and TimeSegment)
my $ch2 = '34020000001310000003';
$rid = $node->safe_psql('postgres', "SELECT vms.device_config_download('$ch2', 'VideoRecordPlan')");
is(wait_request($rid), 'done|', 'ConfigDownload VideoRecordPlan of a channel: done');
is($node->safe_psql('postgres', "SELECT string_agg(weekday || ' ' || start_time || '-' || end_time, ', ' ORDER BY weekday, start_time) FROM vms.recording_plan WHERE channel_code = '$ch2'"),
	'0 00:00:00-00:00:00, 1 00:00:00-08:00:00, 1 12:00:00-00:00:00',
	'its VideoRecordPlan becomes the channel\'s recording plan (Sunday all day, Monday two periods)');
$rid = $node->safe_psql('postgres', "SELECT vms.sip_query_presets('$ch')");
is(wait_request($rid), 'done|', 'PresetQuery: done');
like($node->safe_psql('postgres', "SELECT result -> 'PresetList' FROM vms.sip_request WHERE id = $rid"), qr/gate.*road/s,
	'PresetQuery: the PresetList is in the result');
# a query the device never answers times out (vms.sip_catalog_timeout)
$rid = $node->safe_psql('postgres', "SELECT vms.sip_query_home_position('$ch')");
is(wait_request($rid), 'timeout|no HomePositionQuery answer within vms.sip_catalog_timeout', 'a query never answered times out');

# RecordInfo: six hours asked, the device lists five (hour 2 missing) in pages of 3
$rid = $node->safe_psql('postgres',
	"SELECT vms.sip_query_records('$ch', '2026-01-10 00:00+00', '2026-01-10 06:00+00')");
is(wait_request($rid), 'done|', 'RecordInfo: done');
is($node->safe_psql('postgres', "SELECT progress ->> 'sum_num', progress ->> 'pages', progress ->> 'received', result ->> 'records' FROM vms.sip_request WHERE id = $rid"),
	'5|2|5|5', 'RecordInfo: 5 records (SumNum 5) over 2 pages');
like((grep { $_->[1] eq 'RecordInfo' } received())[0][3], qr{<DeviceID>$ch</DeviceID><StartTime>[0-9T:-]{19}</StartTime><EndTime>[0-9T:-]{19}</EndTime>},
	'the device got a RecordInfo query with StartTime and EndTime');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(extract(epoch FROM start_time - '2026-01-10 00:00+00')::int / 3600 || ':' || file_path || ':' || file_size, ',' ORDER BY start_time)
	  FROM vms.channel_record WHERE channel_code = '$ch'}),
	"0:/gbsim/$ch/0.ps:3600000,1:/gbsim/$ch/1.ps:3600000,3:/gbsim/$ch/3.ps:3600000,4:/gbsim/$ch/4.ps:3600000,5:/gbsim/$ch/5.ps:3600000",
	'the records are stored at the hours the device listed (times round-trip through device time)');
is($node->safe_psql('postgres', "SELECT (vms.recording_check('$ch', '2026-01-10 00:00+00', '2026-01-10 06:00+00')).gaps"),
	'1', 'the integrity check finds one gap');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(extract(epoch FROM lower(gap) - '2026-01-10 00:00+00')::int || '+' || extract(epoch FROM upper(gap) - lower(gap))::int, ',')
	  FROM vms.recording_gap WHERE channel_code = '$ch'}),
	'7200+3600', 'the gap stored is the missing hour 02:00-03:00');
is($node->safe_psql('postgres', "SELECT state, source FROM vms.alarm WHERE code = '$ch' AND fault_type = 'recording_gap'"),
	'open|inspection', 'and raises a recording_gap alarm');

# an inspection plan with the "recording" check: its round asks the channel for
# the plan's period (6 h up to the round's start, the first time) and a later
# pass of the inspector's scheduling collects the answer and checks it (a new
# plan's first round starts at once)
$node->safe_psql('postgres', "SELECT vms.inspection_plan_add('recordings', '{\"channels\": [\"$ch\"]}', 'every 6 h', '{\"checks\": [\"recording\"]}')");
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM vms.inspection_recording r JOIN vms.inspection_plan p ON p.id = r.plan_id
	 WHERE p.name = 'recordings' AND r.state <> 'queried'}), 'the round\'s RecordInfo answer is collected');
is($node->safe_psql('postgres', qq{
	SELECT r.state, r.channel_code, upper(r.period) - lower(r.period), upper(r.period) = date_trunc('second', u.started_at),
	       q.kind, q.params ->> 'cmd', u.channels, u.finished_at IS NOT NULL
	  FROM vms.inspection_recording r JOIN vms.inspection_run u ON u.id = r.run_id JOIN vms.sip_request q ON q.id = r.request_id}),
	"checked|$ch|06:00:00|t|record_info|RecordInfo|0|t",
	'the round queried RecordInfo for the 6 h before its start, checked it, sampled no video, and is finished');
is($node->safe_psql('postgres', qq{
	SELECT c.gaps, c.expected_s, c.recorded_s, c.alarm_id IS NOT NULL,
	       string_agg(extract(epoch FROM lower(g.gap) - lower(r.period))::int || '+' || extract(epoch FROM upper(g.gap) - lower(g.gap))::int, ',')
	  FROM vms.inspection_recording r JOIN vms.recording_check c ON c.id = r.check_id
	  JOIN vms.recording_gap g ON g.check_id = c.id GROUP BY 1, 2, 3, 4}),
	'1|21600|18000|t|7200+3600', 'its check stored the hour gbsim leaves out (the third) as a gap and alarmed it');
is($node->safe_psql('postgres', "SELECT state, detail ->> 'gaps' FROM vms.alarm WHERE code = '$ch' AND fault_type = 'recording_gap'"),
	'open|1', 'the recording_gap alarm is open');
# the next round checks from where the last one ended: the few seconds since, complete
$node->poll_query_until('postgres', "SELECT date_trunc('second', now()) > max(upper(period)) FROM vms.inspection_recording")
  or die 'the clock does not move';
$node->safe_psql('postgres', "SELECT vms.inspection_run_now('recordings')");
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 2 FROM vms.inspection_recording r WHERE r.state <> 'queried'}), 'the second round is collected');
is($node->safe_psql('postgres', qq{
	SELECT r.state, c.gaps, lower(r.period) = (SELECT upper(period) FROM vms.inspection_recording ORDER BY id LIMIT 1),
	       upper(r.period) - lower(r.period) < interval '6 hours'
	  FROM vms.inspection_recording r JOIN vms.recording_check c ON c.id = r.check_id ORDER BY r.id DESC LIMIT 1}),
	'checked|0|t|t', 'the second round checked the period since the first, without gaps');
is($node->safe_psql('postgres', "SELECT state, clear_reason FROM vms.alarm WHERE code = '$ch' AND fault_type = 'recording_gap' ORDER BY id DESC LIMIT 1"),
	'cleared|recording complete in the last check', 'and the recording_gap alarm is cleared');

# media sessions: playback and download INVITE the channel with the standard's SDP lines
my ($t0, $t1) = split /\|/, $node->safe_psql('postgres',
	"SELECT extract(epoch FROM timestamptz '2026-01-10 00:00+00')::bigint, extract(epoch FROM timestamptz '2026-01-10 06:00+00')::bigint");
# the media server is on this host: loopback, used only once the owner lists it
($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.playback('$ch', '2026-01-10 00:00+00', '2026-01-10 06:00+00', '{\"ip\": \"127.0.0.1\", \"port\": $rtp_port}')");
like($err, qr/media address 127\.0\.0\.1 is a loopback address/, 'a loopback media server not listed is refused');
($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.download('$ch', '2026-01-10 00:00+00', '2026-01-10 06:00+00', '{\"ip\": \"192.0.2.77\", \"port\": $rtp_port, \"transport\": \"tcp\"}', 32)");
like($err, qr/media server 192\.0\.2\.77:$rtp_port is not allowed/, 'a media server the owner did not list is refused');
is(scalar(grep { $_->[0] eq 'INVITE' } received()), 0, 'no INVITE went out for them');
$node->safe_psql('postgres', "INSERT INTO vms.media_server_allowed (network, ports, note) VALUES ('127.0.0.1/32', int4range($rtp_port, $rtp_port, '[]'), 'test media server')");
($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.playback('$ch', '2026-01-10 00:00+00', '2026-01-10 06:00+00', '{\"ip\": \"127.0.0.1\", \"port\": $rtp_port}')");
like($err, qr/permission denied to playback channel/, 'playback needs the playback right');
is(scalar(grep { $_->[0] eq 'INVITE' } received()), 0, 'no INVITE went out without it');
$node->safe_psql('postgres', "SET SESSION AUTHORIZATION gadmin; SELECT vms.grant_access('op', 'all', NULL, '{playback,download,view_live}', 4::smallint)");
($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.playback('$ch', '2026-01-10 00:00+00', '2026-01-10 06:00+00')");
like($err, qr/no media server address/, 'and a media server address (or vms.media_server)');
($ret, $out, $err) = $node->psql('postgres', "SET vms.media_server = '192.0.2.77:$rtp_port'; SET ROLE op; SELECT vms.view_live('$dev')");
like($err, qr/no channel $dev/, 'live view of the device code (not a channel) is refused');
is(scalar(grep { $_->[0] eq 'INVITE' } received()), 0, 'no INVITE went out for it');
($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.playback('$ch', '2026-01-10 06:00+00', '2026-01-10 00:00+00', '{\"ip\": \"127.0.0.1\", \"port\": $rtp_port}')");
like($err, qr/ends before it starts/, 'a reversed period is refused');
received();
$rid = $node->safe_psql('postgres', qq{SET ROLE op; SELECT vms.playback('$ch', '2026-01-10 00:00+00', '2026-01-10 06:00+00',
	'{"ip": "127.0.0.1", "port": $rtp_port}')});
is(wait_request($rid), 'done|', 'playback: the device accepted the INVITE (200, ACKed)');
my ($inv) = grep { $_->[0] eq 'INVITE' } received();
my %sdp;
for my $line (split /\|/, $inv->[3] // '') { $sdp{$1} //= $2 if $line =~ /^(\w)=(.*)$/; }
is($inv->[2], $ch, 'playback: the INVITE names the channel');
is($sdp{s}, 'Playback', 'playback SDP: s=Playback');
is($sdp{u}, "$ch:0", "playback SDP: u=$ch:0");
is($sdp{t}, "$t0 $t1", 'playback SDP: t= the period in seconds since 1970');
is($sdp{c}, 'IN IP4 127.0.0.1', 'playback SDP: c= the media server');
is($sdp{m}, "video $rtp_port RTP/AVP 96", 'playback SDP: m= its port');
like($sdp{y} // '', qr/^120000[0-9]{4}$/, 'playback SDP: a 10-digit SSRC (y=), 1 for history, then 20000 (digits 4-8 of the domain)');
# the media server stand-in keeps the RTP payloads (MPEG-PS) of the first 50
# frames (the marker bit ends a frame; loopback keeps the order) and FFmpeg,
# not our code, demuxes and decodes them
my $sel = IO::Select->new($rtp);
my ($pkts, $frames, $buf, $ps, %ssrcs) = (0, 0, '', '');
for (1 .. 600)
{
	last if $frames >= 50;
	next unless $sel->can_read(0.5);
	$rtp->recv($buf, 65535);
	next unless length($buf) > 12 && (ord($buf) >> 6) == 2;
	my ($b0, $b1, $seq, $ts, $ssrc) = unpack('C C n N N', $buf);
	my $hl = 12 + 4 * ($b0 & 0x0f);
	$hl += 4 + 4 * unpack('n', substr($buf, $hl + 2, 2)) if $b0 & 0x10;
	$ps .= substr($buf, $hl);
	$ssrcs{$ssrc}++;
	$pkts++;
	$frames++ if $b1 & 0x80;
}
is($frames, 50, "the media server address receives RTP (version 2): 50 frames in $pkts packets");
is(join(',', keys %ssrcs), $sdp{y} + 0, 'with the SSRC of the SDP\'s y= line');
open(my $psf, '>:raw', "$tmp/playback.ps") or die "$tmp/playback.ps: $!";
print $psf $ps;
close $psf;
my $probe = `ffprobe -v error -f mpeg -count_frames -select_streams v:0 -show_entries stream=codec_name,width,height,nb_read_frames -of csv=p=0 $tmp/playback.ps 2>$tmp/ffprobe.err`;
chomp $probe;
like($probe, qr/^h264,320,180,(\d+)$/, 'FFmpeg demuxes the RTP payloads as MPEG-PS: H.264 320x180');
my ($decoded) = $probe =~ /,(\d+)$/;
cmp_ok($decoded // 0, '>=', 49, "and decodes the frames sent ($decoded of 50)");
# (raw video out: gbsim's PS carries no DTS, so a muxer that checks them would
# complain about the clip's B-frames; the decoder must not)
is(`ffmpeg -v error -xerror -f mpeg -i $tmp/playback.ps -f rawvideo -y /dev/null 2>&1`, '', 'without a decoding error');
is($node->safe_psql('postgres', "SELECT channel_code, mode, requested_by, media_port, ssrc = '$sdp{y}' FROM vms.media_sessions WHERE id = $rid"),
	"$ch|Playback|op|$rtp_port|t", 'vms.media_sessions lists the playback session with its SSRC');
# playback control: MANSRTSP in INFO requests of the session's dialog
for my $c ([ 'pause', 'NULL', 'PAUSE RTSP/1.0|CSeq: 1|PauseTime: now||' ], [ 'scale', '2', 'PLAY RTSP/1.0|CSeq: 2|Scale: 2.0||' ],
	[ 'seek', '600', 'PLAY RTSP/1.0|CSeq: 3|Range: npt=600.000-||' ], [ 'resume', 'NULL', 'PLAY RTSP/1.0|CSeq: 4|Range: npt=now-||' ])
{
	my $id = $node->safe_psql('postgres', "SET ROLE op; SELECT vms.playback_control($rid, '$c->[0]', $c->[1])");
	is(wait_request($id), 'done|', "playback $c->[0]: the device answered 200 to the INFO");
	my ($info) = grep { $_->[0] eq 'INFO' } received();
	is($info->[3] // '', $c->[2], "playback $c->[0]: the device got the MANSRTSP request");
}
($ret, $out, $err) = $node->psql('postgres', "SET ROLE op; SELECT vms.playback_control($rid, 'scale', 3)");
like($err, qr/playback scale 3 is not one of/, 'a scale the standard has not is refused');
($ret, $out, $err) = $node->psql('postgres', "SELECT vms.playback_control($rid + 1000, 'pause')");
like($err, qr/no playback session \d+ of yours is open/, 'control of a session that is not open is refused');
my $bye = $node->safe_psql('postgres', "SELECT vms.sip_bye($rid)");
is(wait_request($bye), 'done|', 'BYE ends the playback session');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.media_sessions WHERE id = $rid"), '0', 'and it is no longer listed');
# a playback asked at speed 4 starts at it: after the INVITE's 200 (ACKed) the
# device gets, in the session's dialog, the MANSRTSP PLAY with Scale 4
received();
$rid = $node->safe_psql('postgres', qq{SET ROLE op; SELECT vms.playback('$ch', '2026-01-10 00:00+00', '2026-01-10 06:00+00',
	'{"ip": "127.0.0.1", "port": $rtp_port}', 4)});
is(wait_request($rid), 'done|', 'playback at speed 4: the device accepted the INVITE');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM vms.sip_request WHERE kind = 'mansrtsp' AND params ->> 'session' = '$rid'"),
	'playback at speed 4: its first control is queued once the INVITE was accepted');
is(wait_request($node->safe_psql('postgres', "SELECT id FROM vms.sip_request WHERE kind = 'mansrtsp' AND params ->> 'session' = '$rid'")),
	'done|', 'and the device answered 200 to it');
my @got = grep { $_->[0] eq 'INVITE' || $_->[0] eq 'INFO' } received();
is(join(' ', map { $_->[0] } @got), 'INVITE INFO', 'the device got the INVITE, then one INFO');
is($got[1][3] // '', 'PLAY RTSP/1.0|CSeq: 1|Scale: 4.0||', 'the INFO is the MANSRTSP PLAY with Scale 4');
is($node->safe_psql('postgres', "SELECT speed, requested_by FROM vms.media_sessions WHERE id = $rid"), '4|op',
	'vms.media_sessions shows the speed');
my $c2 = $node->safe_psql('postgres', "SET ROLE op; SELECT vms.playback_control($rid, 'scale', 0.5)");
is(wait_request($c2), 'done|', 'a later scale control of that session is answered');
my ($info2) = grep { $_->[0] eq 'INFO' } received();
is($info2->[3] // '', 'PLAY RTSP/1.0|CSeq: 2|Scale: 0.5||', 'with the next CSeq');
is($node->safe_psql('postgres', "SELECT speed FROM vms.media_sessions WHERE id = $rid"), '0.5', 'and the speed shown follows it');
$bye = $node->safe_psql('postgres', "SELECT vms.sip_bye($rid)");
is(wait_request($bye), 'done|', 'BYE ends the playback at speed 4');
received();
$rid = $node->safe_psql('postgres', qq{SET ROLE op; SELECT vms.download('$ch', '2026-01-10 00:00+00', '2026-01-10 01:00+00',
	'{"ip": "127.0.0.1", "port": $rtp_port}', 8)});
is(wait_request($rid), 'done|', 'download: the device accepted the INVITE');
($inv) = grep { $_->[0] eq 'INVITE' } received();
like($inv->[3] // '', qr/\|s=Download\|u=$ch:0\|c=IN IP4 127\.0\.0\.1\|t=$t0 \d+\|m=video $rtp_port RTP\/AVP 96\|.*a=downloadspeed:8\|/,
	'download SDP: s=Download, u=, t=, a=downloadspeed:8');
$node->safe_psql('postgres', "SELECT vms.sip_bye($rid)");

# a session ends when its owner's right lapses: live view, then the grant is revoked
$rid = $node->safe_psql('postgres', qq{SET ROLE op; SELECT vms.view_live('$ch', '{"ip": "127.0.0.1", "port": $rtp_port}')});
is(wait_request($rid), 'done|', 'live view: the device accepted the INVITE');
is($node->safe_psql('postgres', "SELECT mode FROM vms.media_sessions WHERE id = $rid"), 'Play', 'the live session is open');
$node->safe_psql('postgres', "SET SESSION AUTHORIZATION gadmin; SELECT vms.revoke_access(id, 'test: right lapses') FROM vms.access_grant WHERE grantee = 'op' AND 'view_live' = ANY (actions)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM vms.media_sessions WHERE id = $rid"),
	'after the grant is revoked the worker ends the session');
is($node->safe_psql('postgres', "SELECT w.state, w.params ->> 'reason' FROM vms.sip_request r, vms.sip_request_wait(r.id, 60) w WHERE r.kind = 'bye' AND (r.params ->> 'session')::bigint = $rid"),
	"done|the owner's right lapsed", 'with a BYE the device answered');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.audit_log WHERE action = 'media_session_ended' AND (detail ->> 'session')::bigint = $rid"),
	'1', 'and it is audited');

# ---------------------------------------------------------------------------
# media transport over TCP (RFC 4571 framing), shared live view, bad answers.
# The owner allows this test's media server ports 57800-57899 too.
$node->safe_psql('postgres', qq{
INSERT INTO vms.media_server_allowed (network, ports, note) VALUES ('127.0.0.1/32', int4range(57800, 57899, '[]'), 'test media servers');
CREATE ROLE v1 LOGIN IN ROLE vms_analyst; CREATE ROLE v2 LOGIN IN ROLE vms_analyst;
CREATE ROLE v3 LOGIN IN ROLE vms_analyst; CREATE ROLE v4 LOGIN IN ROLE vms_analyst;
SET SESSION AUTHORIZATION gadmin;
SELECT vms.grant_access(r, 'all', NULL, '{view_live,playback}', 4::smallint) FROM unnest(ARRAY['v1', 'v2', 'v3', 'v4']::name[]) r;
});
# RFC 4571: 2-byte length, then the RTP packet; the payloads (MPEG-PS) of $want frames
sub tcp_frames
{
	my ($sock, $want) = @_;
	my ($buf, $ps, $pkts, $frames, %ssrcs) = ('', '', 0, 0);
	my $sel = IO::Select->new($sock);
	my $idle = 0;
	while ($frames < $want)
	{
		unless ($sel->can_read(1)) { last if ++$idle > 180; next; }
		my $n = sysread($sock, my $chunk, 65536);
		last unless $n;
		$buf .= $chunk;
		while (length($buf) >= 2 && $frames < $want)
		{
			my $len = unpack('n', $buf);
			last if length($buf) < 2 + $len;
			my $pkt = substr($buf, 2, $len);
			$buf = substr($buf, 2 + $len);
			next unless $len > 12 && (ord($pkt) >> 6) == 2;
			my ($b0, $b1, $seq, $ts, $ssrc) = unpack('C C n N N', $pkt);
			my $hl = 12 + 4 * ($b0 & 0x0f);
			$hl += 4 + 4 * unpack('n', substr($pkt, $hl + 2, 2)) if $b0 & 0x10;
			$ps .= substr($pkt, $hl);
			$ssrcs{$ssrc}++;
			$pkts++;
			$frames++ if $b1 & 0x80;
		}
	}
	return ($frames, $pkts, $ps, join(',', keys %ssrcs));
}
# FFmpeg, not our code, demuxes and decodes what arrived
sub decodes
{
	my ($ps, $name) = @_;
	open(my $f, '>:raw', "$tmp/$name.ps") or die "$tmp/$name.ps: $!";
	print $f $ps;
	close $f;
	my $pr = `ffprobe -v error -f mpeg -count_frames -select_streams v:0 -show_entries stream=codec_name,width,height,nb_read_frames -of csv=p=0 $tmp/$name.ps 2>>$tmp/ffprobe.err`;
	chomp $pr;
	like($pr, qr/^h264,320,180,(\d+)$/, "$name: FFmpeg demuxes the payloads as MPEG-PS, H.264 320x180");
	my ($nf) = $pr =~ /,(\d+)$/;
	cmp_ok($nf // 0, '>=', 49, "$name: and decodes the frames sent (" . ($nf // 0) . ' of 50)');
	is(`ffmpeg -v error -xerror -f mpeg -i $tmp/$name.ps -f rawvideo -y /dev/null 2>&1`, '', "$name: without a decoding error");
}
sub bye_of
{
	my ($session) = @_;
	my $id = $node->safe_psql('postgres', "SELECT id FROM vms.sip_request WHERE kind = 'bye' AND (params ->> 'session')::bigint = $session");
	return $id eq '' ? 'none|' : wait_request($id);
}

# tcp_passive: the media server listens, the device connects (a=setup:passive)
my ($lsn, $tport);
for my $p (57800 .. 57849)
{
	$lsn = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.1', LocalPort => $p, Listen => 1, ReuseAddr => 1)
	  and do { $tport = $p; last };
}
die 'no TCP port free in 57800-57849' unless $lsn;
received();
($ret, $out, $err) = $node->psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch', '{"ip": "127.0.0.1", "port": $tport, "transport": "tcp_pasive"}')});
like($err, qr/unknown media transport "tcp_pasive"/, 'an unknown media transport is refused');
is(scalar(grep { $_->[0] eq 'INVITE' } received()), 0, 'no INVITE went out for it');
$rid = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch', '{"ip": "127.0.0.1", "port": $tport, "transport": "tcp_passive"}')});
is(wait_request($rid), 'done|', 'tcp_passive: the device accepted the INVITE');
($inv) = grep { $_->[0] eq 'INVITE' } received();
like($inv->[3] // '', qr/\|c=IN IP4 127\.0\.0\.1\|.*\|m=video $tport TCP\/RTP\/AVP 96\|.*\|a=setup:passive\|a=connection:new\|/,
	'tcp_passive SDP: m=video <port> TCP/RTP/AVP, a=setup:passive, a=connection:new');
my $conn = IO::Select->new($lsn)->can_read(60) ? $lsn->accept : undef;
ok($conn, 'tcp_passive: the device connects to the media server');
my ($fr, $pk, $tps, $tss) = $conn ? tcp_frames($conn, 50) : (0, 0, '', '');
is($fr, 50, "tcp_passive: 50 frames arrive, RFC 4571 framed ($pk packets)");
is($tss, $node->safe_psql('postgres', "SELECT ssrc::bigint FROM vms.media_sessions WHERE id = $rid"), 'tcp_passive: with the session\'s SSRC');
decodes($tps, 'tcp_passive');
is($node->safe_psql('postgres', "SELECT transport, viewers FROM vms.media_sessions WHERE id = $rid"), 'tcp_passive|1',
	'vms.media_sessions: transport tcp_passive, one viewer');
is($node->safe_psql('postgres', "SET ROLE v1; SELECT vms.media_leave($rid)"), '0', 'the viewer leaves: none left');
is(bye_of($rid), 'done|', 'the device gets its BYE');
close $conn if $conn;
close $lsn;

# tcp_active: the device listens (its answer says where), the media server connects (a=setup:active)
$rid = $node->safe_psql('postgres', qq{SET ROLE v2; SELECT vms.view_live('$ch', '{"ip": "127.0.0.1", "port": 57850, "transport": "tcp_active"}')});
is(wait_request($rid), 'done|', 'tcp_active: the device accepted the INVITE');
($inv) = grep { $_->[0] eq 'INVITE' } received();
like($inv->[3] // '', qr/\|m=video 57850 TCP\/RTP\/AVP 96\|.*\|a=setup:active\|a=connection:new\|/,
	'tcp_active SDP: m=video TCP/RTP/AVP, a=setup:active, a=connection:new');
my ($dip, $dport) = split /\|/, $node->safe_psql('postgres', "SELECT device_media_ip, device_media_port FROM vms.media_sessions WHERE id = $rid");
like("$dip:" . ($dport // ''), qr/^127\.0\.0\.1:\d+$/, 'vms.media_sessions: where the device listens, from its SDP answer');
$conn = IO::Socket::INET->new(Proto => 'tcp', PeerAddr => $dip, PeerPort => $dport, Timeout => 30);
ok($conn, 'tcp_active: the media server connects to the device');
($fr, $pk, $tps, $tss) = $conn ? tcp_frames($conn, 50) : (0, 0, '', '');
is($fr, 50, "tcp_active: 50 frames arrive, RFC 4571 framed ($pk packets)");
is($tss, $node->safe_psql('postgres', "SELECT ssrc::bigint FROM vms.media_sessions WHERE id = $rid"), 'tcp_active: with the session\'s SSRC');
decodes($tps, 'tcp_active');
is($node->safe_psql('postgres', "SET ROLE v2; SELECT vms.media_leave($rid)"), '0', 'the viewer leaves');
is(bye_of($rid), 'done|', 'the device gets its BYE');
close $conn if $conn;

# WVP #923: forty concurrent live views of one channel from four roles -> one INVITE
my $cport = 57851;
received();
my (@procs, @outs, @errs);
for my $i (0 .. 39)
{
	my $role = 'v' . (1 + $i % 4);
	# each its own login, as viewers are
	push @procs, IPC::Run::start([ 'psql', '-X', '-qAt', '-h', $node->host, '-p', $node->port, '-U', $role, '-d', 'postgres', '-c',
			qq{SELECT vms.view_live('$ch', '{"ip": "127.0.0.1", "port": $cport}')} ],
		'>', \$outs[$i], '2>', \$errs[$i]);
}
$_->finish for @procs;
my %sids = map { my $o = $_ // ''; chomp $o; ($o => 1) } @outs;
is(join(',', grep { !/^\d+$/ } keys %sids) . join('', map { $_ // '' } @errs), '', 'forty concurrent view_live calls all succeed');
is(scalar(keys %sids), 1, 'and all return the same session');
my ($sid) = keys %sids;
is(wait_request($sid), 'done|', 'the shared session is accepted by the device');
is(scalar(grep { $_->[0] eq 'INVITE' } received()), 1, 'the device received one INVITE for the forty viewers');
is($node->safe_psql('postgres', "SELECT count(*), count(DISTINCT viewer) FROM vms.media_viewer WHERE session_id = $sid AND left_at IS NULL"),
	'40|4', 'forty viewer rows, of four roles');
is($node->safe_psql('postgres', "SELECT viewers FROM vms.media_sessions WHERE id = $sid"), '40', 'vms.media_sessions counts forty viewers');
is($node->safe_psql('postgres', qq{SELECT count(*), count(*) FILTER (WHERE detail ->> 'shared' = 'true'), count(DISTINCT session_role)
	FROM vms.audit_log WHERE action = 'view_live' AND object = '$ch' AND detail ->> 'port' = '$cport'}),
	'40|39|4', 'each viewer\'s right is checked and audited on its own (39 of them joined)');
# thirty-nine leave: no BYE; the last one leaves: BYE
is($node->safe_psql('postgres', qq{
	SET ROLE v1; SELECT count(vms.media_leave($sid)) FROM generate_series(1, 10); RESET ROLE;
	SET ROLE v2; SELECT count(vms.media_leave($sid)) FROM generate_series(1, 10); RESET ROLE;
	SET ROLE v3; SELECT count(vms.media_leave($sid)) FROM generate_series(1, 10); RESET ROLE;
	SET ROLE v4; SELECT min(n) FROM (SELECT vms.media_leave($sid) AS n FROM generate_series(1, 9)) x}),
	"10\n10\n10\n1", 'thirty-nine viewers leave; one is left');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.sip_request WHERE kind = 'bye' AND (params ->> 'session')::bigint = $sid"),
	'0', 'no BYE is queued while a viewer watches');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.media_sessions WHERE id = $sid"), '1', 'the session stays open');
is($node->safe_psql('postgres', "SET ROLE v4; SELECT vms.media_leave($sid)"), '0', 'the last viewer leaves');
is(bye_of($sid), 'done|', 'then the device gets its BYE');
my $call = $node->safe_psql('postgres', "SELECT result ->> 'call_id' FROM vms.sip_request WHERE id = $sid");
is(join(',', map { $_->[3] } grep { $_->[0] eq 'BYE' } received()), $call, 'one BYE, for the shared session, reached the device');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.media_viewer WHERE session_id = $sid AND left_reason = 'left'"),
	'40', 'all forty viewings ended, each audited');

# a viewer whose right lapses leaves alone; the session stays for the others
$rid = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch', '{"ip": "127.0.0.1", "port": $cport}')});
is($node->safe_psql('postgres', qq{SET ROLE v3; SELECT vms.view_live('$ch', '{"ip": "127.0.0.1", "port": $cport}')}), $rid,
	'a second role joins a new live session');
is(wait_request($rid), 'done|', 'which the device accepted');
$node->safe_psql('postgres', "SET SESSION AUTHORIZATION gadmin; SELECT vms.revoke_access(id, 'test: one viewer lapses') FROM vms.access_grant WHERE grantee = 'v3'");
ok($node->poll_query_until('postgres', "SELECT left_reason = 'the owner''s right lapsed' FROM vms.media_viewer WHERE session_id = $rid AND viewer = 'v3'"),
	'the viewer whose grant was revoked is let go');
is($node->safe_psql('postgres', "SELECT viewers, (SELECT count(*) FROM vms.sip_request WHERE kind = 'bye' AND (params ->> 'session')::bigint = $rid) FROM vms.media_sessions WHERE id = $rid"),
	'1|0', 'the other viewer keeps the session, no BYE');
is($node->safe_psql('postgres', "SET ROLE v1; SELECT vms.media_leave($rid)"), '0', 'the last viewer leaves');
is(bye_of($rid), 'done|', 'BYE');

# a device that answers INVITE with an error (gbsim without --media: 488), and one that never answers
# and one that answers 200 only after vms gave up (--invite-delay 20 s; vms gives up after 16 s)
# and one whose SDP answer points elsewhere (--sdp-ip: c= names another host)
my ($dev2, $dev3, $dev4, $dev5) = ('34020000001320000011', '34020000001320000021', '34020000001320000031', '34020000001320000041');
# one channel each: serial = device serial x 1 + 0
my ($ch2x, $ch3x, $ch4x, $ch5x) = ('34020000001310000011', '34020000001310000021', '34020000001310000031', '34020000001310000041');
my $late_log = "$tmp/late.log";
my $pointer_log = "$tmp/pointer.log";
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('$dev2', 'gbsim without media'), ('$dev3', 'gbsim silent to INVITE'),
       ('$dev4', 'gbsim late to INVITE'), ('$dev5', 'gbsim pointing elsewhere');
SELECT vms.device_set_password('$dev2', '12345678', '$realm'), vms.device_set_password('$dev3', '12345678', '$realm'),
       vms.device_set_password('$dev4', '12345678', '$realm'), vms.device_set_password('$dev5', '12345678', '$realm');
});
my @simx;
for my $c ([ $dev2 ], [ $dev3, '--silent', 'INVITE' ],
	[ $dev4, '--invite-delay', '20000', '--media', "$tmp/cam.h264", '--control-log', $late_log ],
	[ $dev5, '--sdp-ip', '10.1.2.3', '--media', "$tmp/cam.h264", '--control-log', $pointer_log ])
{
	my ($code, @more) = @$c;
	push @simx, IPC::Run::start([ $gbsim, '--server', "127.0.0.1:$sip_port", '--server-id', $server_id, '--domain', $realm,
			'--devices', '1', '--first-code', $code, '--channels', '1', '--keepalive', '5', '--duration', '600', @more ],
		'>', "$tmp/gbsim-$code.out", '2>', "$tmp/gbsim-$code.err");
}
ok($node->poll_query_until('postgres', "SELECT count(*) = 4 FROM vms.device WHERE code IN ('$dev2', '$dev3', '$dev4', '$dev5') AND online"),
	'four more devices register');
for my $d ($dev2, $dev3, $dev4, $dev5)
{
	my $q = $node->safe_psql('postgres', "SELECT vms.sip_query_catalog('$d')");
	is($node->safe_psql('postgres', "SELECT state, result ->> 'channels' FROM vms.sip_request_wait($q, 30)"), 'done|1', "$d: its channel");
}
$rid = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch2x', '{"ip": "127.0.0.1", "port": $cport}')});
is(wait_request($rid), 'failed|device answered 488 Not Acceptable Here to INVITE', 'an error answer fails the session with the device\'s words');
is($node->safe_psql('postgres', "SELECT result ->> 'status', result ->> 'reason' FROM vms.sip_request WHERE id = $rid"),
	'488|Not Acceptable Here', 'its status and reason phrase are stored');
ok($node->poll_query_until('postgres', "SELECT left_reason = 'INVITE failed: device answered 488 Not Acceptable Here to INVITE' FROM vms.media_viewer WHERE session_id = $rid"),
	'its viewer is released with the reason');
$rid = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch3x', '{"ip": "127.0.0.1", "port": $cport}')});
is(wait_request($rid), 'timeout|no final answer to INVITE', 'an INVITE never answered times out');
ok($node->poll_query_until('postgres', "SELECT left_reason = 'INVITE timeout: no final answer to INVITE' FROM vms.media_viewer WHERE session_id = $rid"),
	'and its session is released: the viewer let go with the reason');
isnt($node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch3x', '{"ip": "127.0.0.1", "port": $cport}')}), $rid,
	'a later live view does not join the session that timed out');
# the late device: vms gives up, then the 200 comes: ACK and BYE at once, nothing streams unasked
$rid = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch4x', '{"ip": "127.0.0.1", "port": $cport}')});
is(wait_request($rid), 'timeout|no final answer to INVITE', 'an INVITE answered too late times out first');
my $late_call = $node->safe_psql('postgres', "SELECT progress ->> 'call_id' FROM vms.sip_request WHERE id = $rid");
my $late_bye = '';
for (1 .. 600)
{
	open(my $lf, '<', $late_log) or next;
	($late_bye) = map { (split /\t/)[3] } grep { /^BYE\t/ } <$lf>;
	close $lf;
	last if $late_bye;
	select(undef, undef, undef, 0.1);    # poll the log until the BYE is in it (60 s at most)
}
chomp $late_bye if $late_bye;
is($late_bye // '', $late_call, 'the device that answered 200 after the timeout gets a BYE for that call');
# tcp_active to a device whose answer names another host (10.1.2.3): the media
# server must not be pointed there; the session fails with why, the call gets its BYE
$rid = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch5x', '{"ip": "127.0.0.1", "port": 57852, "transport": "tcp_active"}')});
like(wait_request($rid), qr/^failed\|tcp_active: the device's SDP answer names 10\.1\.2\.3:\d+ to connect to, not the address the device registered from$/,
	'tcp_active: an SDP answer naming another address than the device\'s fails the session with why');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.media_sessions WHERE id = $rid OR device_media_ip = '10.1.2.3'"), '0',
	'no media session points at that address');
my $pointer_call = $node->safe_psql('postgres', "SELECT progress ->> 'call_id' FROM vms.sip_request WHERE id = $rid");
my $pointer_bye = '';
for (1 .. 600)
{
	open(my $lf, '<', $pointer_log) or next;
	($pointer_bye) = map { (split /\t/)[3] } grep { /^BYE\t/ } <$lf>;
	close $lf;
	last if $pointer_bye;
	select(undef, undef, undef, 0.1);    # poll the log until the BYE is in it (60 s at most)
}
chomp $pointer_bye if $pointer_bye;
is($pointer_bye // '', $pointer_call, 'the call its ACK opened is ended with a BYE');
# the same device over UDP: where it listens is not used, the session opens
$rid = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch5x', '{"ip": "127.0.0.1", "port": $cport}')});
is(wait_request($rid), 'done|', 'over UDP the same device\'s session opens');
is($node->safe_psql('postgres', "SET ROLE v1; SELECT vms.media_leave($rid)"), '0', 'and is left');
is(bye_of($rid), 'done|', 'with its BYE');
# all media sessions taken (vms.sip_max_media_sessions = 1, one open): a
# device that accepts an INVITE then gets ACK and BYE at once, the session
# fails with why
my $held = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch', '{"ip": "127.0.0.1", "port": $cport}')});
is(wait_request($held), 'done|', 'one live session open');
$node->safe_psql('postgres', 'ALTER SYSTEM SET vms.sip_max_media_sessions = 1; SELECT pg_reload_conf()');
my $full = '';
for (1 .. 100)
{
	# until the worker has read the setting: a session it still opened is left again
	$rid = $node->safe_psql('postgres', qq{SET ROLE v1; SELECT vms.view_live('$ch5x', '{"ip": "127.0.0.1", "port": $cport}')});
	$full = wait_request($rid);
	last if $full ne 'done|';
	$node->safe_psql('postgres', "SET ROLE v1; SELECT vms.media_leave($rid)");
	bye_of($rid);
}
is($full, "failed|too many media sessions (vms.sip_max_media_sessions = 1 open): the device's 200 was answered with ACK and BYE",
	'a 200 to an INVITE with every media session taken fails the session with why');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.media_sessions WHERE id = $rid"), '0', 'it is no media session');
my $full_call = $node->safe_psql('postgres', "SELECT progress ->> 'call_id' FROM vms.sip_request WHERE id = $rid");
my $full_bye = '';
for (1 .. 600)
{
	open(my $lf, '<', $pointer_log) or next;
	($full_bye) = grep { $_ eq $full_call } map { chomp; (split /\t/)[3] } grep { /^BYE\t/ } <$lf>;
	close $lf;
	last if $full_bye;
	select(undef, undef, undef, 0.1);    # poll the log until the BYE is in it (60 s at most)
}
is($full_bye // '', $full_call, 'the device gets a BYE for that call: it does not stream unasked');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET vms.sip_max_media_sessions; SELECT pg_reload_conf()');
is($node->safe_psql('postgres', "SET ROLE v1; SELECT vms.media_leave($held)"), '0', 'the open session is left');
$_->kill_kill for @simx;

$sim->kill_kill;
$node->stop;
done_testing();
