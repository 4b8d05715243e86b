# The exact bytes a device receives (issue 17), checked by sipp, a SIP peer
# we did not write: test/sipp/device_2016.xml and device_2022.xml register
# and wait, test/sipp/device_ooc.xml receives what the platform sends and
# checks it against hand-computed values (see its header): the PTZCmd of all
# fifteen commands (byte layout and checksum), RecordInfo's request and two
# answer pages with a gap, the SDP lines of a playback, a download and a live
# INVITE (the y= SSRC's first digit: 1 for a recording, 0 for live, GB/T
# 28181-2016's SSRC annex), and a 2022 device
# (X-GB-Ver: 3.0 both ways) receiving PTZPreciseCtrl.  Each run ends with a
# TeleBoot; sipp's exit status is the verdict.  Every check is also run once
# against bytes that differ from the expected ones, and must then fail (the
# y= digit, which the platform always gets right, through INVITEs made here
# by hand, sent to sipp as a platform would).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use IO::Select;
use IO::Socket::INET;
use VmsTest;

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $sippdir = "$root/test/sipp";
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = vms_node('devsipp',
	'vms.viid_enabled' => 'off',
	'vms.sip_id' => $SIP_SERVER_ID,
	'vms.sip_listen' => '127.0.0.1',
	'vms.sip_port' => $sip_port,
	'vms.sip_keepalive_interval' => 60,
	'vms.sip_catalog_timeout' => 8,
	'vms.sip_page_timeout' => 5,
	'vms.sip_flush_interval' => 200,
	'TimeZone' => 'UTC');

my $nvr = '34020000001180009001';    # the 2016 device, fifteen channels
my $ipc = '34020000001320009101';    # the 2022 device
my @ptz = qw(up down left right up_left up_right down_left down_right zoom_in zoom_out focus_near focus_far
  iris_open iris_close stop);
my @ch = map { sprintf('34020000001310009%03d', $_) } 1 .. 15;
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('$nvr', 'sipp NVR 2016'), ('$ipc', 'sipp IPC 2022');
SELECT vms.device_set_password('$nvr', '12345678', '$SIP_REALM');
SELECT vms.device_set_password('$ipc', '12345678', '$SIP_REALM');
INSERT INTO vms.channel (code, device_code, name) SELECT c, '$nvr', 'sipp camera ' || right(c, 2)
  FROM unnest('{@{[ join(',', @ch) ]}}'::text[]) c;
INSERT INTO vms.channel (code, device_code, name) VALUES ('34020000001310009101', '$ipc', 'sipp 2022 camera');
INSERT INTO vms.media_server_allowed (network, ports, note) VALUES ('127.0.0.1/32', '[57790,57799]', 'test receiver');
CREATE ROLE op LOGIN IN ROLE vms_analyst;
CREATE ROLE gadmin LOGIN IN ROLE vms_grant_admin;
SET SESSION AUTHORIZATION gadmin;
SELECT vms.grant_access('op', 'all', NULL, '{ptz,playback,download,view_live}', 4::smallint);
});
sip_running($node);

my $sipp_port = PostgreSQL::Test::Cluster::get_free_port();
my $run_no = 0;
# start sipp as device $dev with main scenario $main; returns the harness
sub sipp_start
{
	my ($main, $dev) = @_;
	$run_no++;
	my $since = $node->safe_psql('postgres', 'SELECT now()');
	my $h = IPC::Run::start([ 'sipp', "127.0.0.1:$sip_port", '-sf', "$sippdir/$main", '-oocsf', "$sippdir/device_ooc.xml",
			'-m', '1', '-s', $SIP_SERVER_ID, '-key', 'domain', $SIP_REALM, '-key', 'device', $dev, '-au', $dev,
			'-ap', '12345678', '-auth_uri', "$SIP_SERVER_ID\@$SIP_REALM", '-i', '127.0.0.1', '-p', $sipp_port,
			'-t', 'u1', '-nd', '-nostdin', '-timeout', '150s', '-timeout_error', '-recv_timeout', '130000',
			'-max_retrans', '5' ],
		'>', "$tmp/sipp$run_no.out", '2>', "$tmp/sipp$run_no.err");
	wait_or_die($node, "SELECT coalesce(last_keepalive_at > '$since', false) FROM vms.device_session WHERE device_code = '$dev'",
		"sipp $main did not register and keep alive");
	return $h;
}
# a request as op (or the owner), waited for: "state|error"
sub request
{
	my ($sql, $as_op) = @_;
	my $id = $node->safe_psql('postgres', ($as_op ? 'SET SESSION AUTHORIZATION op; ' : '') . "SELECT $sql");
	return $node->safe_psql('postgres', "SELECT state || '|' || coalesce(error, '') FROM vms.sip_request_wait($id, 60)");
}
# an INVITE made by hand, as the platform would send it, to the device
# (sipp) for channel $chan with the SDP lines @sdp; the call is completed
# (200, ACK, BYE, 200).  Returns the status line of the answer to the INVITE.
sub hand_invite
{
	my ($chan, @sdp) = @_;
	my $s = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', PeerAddr => '127.0.0.1',
		PeerPort => $sipp_port) or die "udp socket: $!";
	my $port = $s->sockport;
	my $cid = "hand$run_no" . $$;
	my $body = join('', map { "$_\r\n" } @sdp);
	my $msg = sub {
		my ($method, $cseq, $to_tag, $b) = @_;
		return "$method sip:$chan\@127.0.0.1:$sipp_port SIP/2.0\r\n"
		  . "Via: SIP/2.0/UDP 127.0.0.1:$port;rport;branch=z9hG4bK$cid$method\r\n"
		  . "From: <sip:$SIP_SERVER_ID\@$SIP_REALM>;tag=t$cid\r\nTo: <sip:$chan\@$SIP_REALM>"
		  . ($to_tag ? ";tag=$to_tag" : '') . "\r\nCall-ID: $cid\r\nCSeq: $cseq $method\r\nMax-Forwards: 70\r\n"
		  . "Contact: <sip:$SIP_SERVER_ID\@127.0.0.1:$port>\r\n"
		  . ($b ? "Content-Type: APPLICATION/SDP\r\nSubject: $chan:0,$SIP_SERVER_ID:0\r\n" : '')
		  . 'Content-Length: ' . length($b // '') . "\r\n\r\n" . ($b // '');
	};
	my $answer = sub {
		IO::Select->new($s)->can_read(120) or die "sipp did not answer the hand-made INVITE";
		my $buf;
		$s->recv($buf, 65535);
		return $buf;
	};
	$s->send($msg->('INVITE', 1, undef, $body));
	my $ok = $answer->();
	my ($tag) = $ok =~ /^To:[^\r\n]*;tag=([^\s;]+)/mi;
	$s->send($msg->('ACK', 1, $tag));
	$s->send($msg->('BYE', 2, $tag));
	$answer->();
	return ($ok =~ /^(SIP\/2\.0 \d+)/)[0];
}
my $o = "o=$SIP_SERVER_ID 0 0 IN IP4 127.0.0.1";
my @media = ('a=recvonly', 'a=rtpmap:96 PS/90000');
# the three INVITEs of device_ooc.xml, made by hand with the SSRC $y
sub hand_playback
{
	hand_invite($ch[0], 'v=0', $o, 's=Playback', "u=$ch[0]:0", 'c=IN IP4 127.0.0.1', 't=1772323200 1772326800',
		'm=video 57790 RTP/AVP 96', @media, "y=$_[0]");
}
sub hand_download
{
	hand_invite($ch[0], 'v=0', $o, 's=Download', "u=$ch[0]:0", 'c=IN IP4 127.0.0.1', 't=1772326800 1772330400',
		'm=video 57794 RTP/AVP 96', @media, 'a=downloadspeed:4', "y=$_[0]");
}
sub hand_live
{
	hand_invite($ch[1], 'v=0', $o, 's=Play', 'c=IN IP4 127.0.0.1', 't=0 0', 'm=video 57792 RTP/AVP 96', @media,
		"y=$_[0]");
}
# end the run (TeleBoot) and take sipp's verdict: true when it exited 0
sub sipp_verdict
{
	my ($h, $dev) = @_;
	request("vms.device_teleboot('$dev')");
	return $h->finish;
}

# 1. the 2016 device: fifteen PTZ commands, RecordInfo, a playback session
my $h = sipp_start('device_2016.xml', $nvr);
is($node->safe_psql('postgres', "SELECT gb_version IS NULL FROM vms.device_session WHERE device_code = '$nvr'"), 't',
	'the 2016 device registered without X-GB-Ver');
for my $i (0 .. $#ptz)
{
	is(request("vms.ptz('$ch[$i]', '$ptz[$i]')", 1), 'done|', "ptz $ptz[$i] to $ch[$i]: sent and answered 200");
}
is(request("vms.sip_query_records('$ch[0]', '2026-03-01 00:00+00', '2026-03-01 04:00+00')"), 'done|',
	'RecordInfo: the answer arrived in full');
is($node->safe_psql('postgres', "SELECT progress ->> 'pages', progress ->> 'received', progress ->> 'sum_num'
	FROM vms.sip_request WHERE kind = 'record_info' ORDER BY id DESC LIMIT 1"), '2|3|3', 'in two pages, SumNum 3');
is($node->safe_psql('postgres', "SELECT string_agg(to_char(start_time, 'HH24') || '-' || to_char(end_time, 'HH24'), ',' ORDER BY start_time)
	FROM vms.channel_record WHERE channel_code = '$ch[0]'"), '00-01,01-02,03-04', 'the three records are kept');
is($node->safe_psql('postgres', "SELECT gaps FROM vms.recording_check('$ch[0]', '2026-03-01 00:00+00', '2026-03-01 04:00+00')"),
	'1', 'the recording check finds one gap');
is($node->safe_psql('postgres', "SELECT string_agg(gap::text, ',') FROM vms.recording_gap WHERE channel_code = '$ch[0]'"),
	'["2026-03-01 02:00:00+00","2026-03-01 03:00:00+00")', 'the gap between the pages: 02:00 to 03:00');
my $play = $node->safe_psql('postgres', "SET SESSION AUTHORIZATION op; SELECT vms.playback('$ch[0]', '2026-03-01 00:00+00',"
	. " '2026-03-01 01:00+00', '{\"ip\": \"127.0.0.1\", \"port\": 57790}')");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($play, 60)"), 'done', 'playback: the INVITE was answered 200');
is(request("vms.sip_bye($play)"), 'done|', 'playback: BYE answered 200');
like($node->safe_psql('postgres', "SELECT progress ->> 'ssrc' FROM vms.sip_request WHERE id = $play"), qr/^120000\d{4}$/,
	'playback: the SSRC kept is the one of a recording (1, then 20000 of the domain 3402000000)');
my $down = $node->safe_psql('postgres', "SET SESSION AUTHORIZATION op; SELECT vms.download('$ch[0]', '2026-03-01 01:00+00',"
	. " '2026-03-01 02:00+00', '{\"ip\": \"127.0.0.1\", \"port\": 57794}')");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($down, 60)"), 'done', 'download: the INVITE was answered 200');
like($node->safe_psql('postgres', "SELECT ssrc FROM vms.media_sessions WHERE id = $down"), qr/^120000\d{4}$/,
	'download: vms.media_sessions keeps its SSRC, a recording\'s');
is(request("vms.sip_bye($down)"), 'done|', 'download: BYE answered 200');
my $live = $node->safe_psql('postgres', "SET SESSION AUTHORIZATION op; SELECT vms.view_live('$ch[1]', '{\"ip\": \"127.0.0.1\", \"port\": 57792}')");
is($node->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($live, 60)"), 'done', 'live: the INVITE was answered 200');
like($node->safe_psql('postgres', "SELECT ssrc FROM vms.media_sessions WHERE id = $live"), qr/^020000\d{4}$/,
	'live: vms.media_sessions keeps its SSRC, a live one (0)');
is(request("vms.sip_bye($live)"), 'done|', 'live: BYE answered 200');
is(hand_playback('1200009999'), 'SIP/2.0 200', 'a hand-made playback INVITE with the right digit is answered 200 (it must pass)');
my ($rc, $out, $err) = $node->psql('postgres', "SET SESSION AUTHORIZATION op; SELECT vms.ptz_precise('$ch[0]', 90.5, -10, 4)");
like($err, qr/PTZPreciseCtrl is a GB\/T 28181-2022 command/, 'PTZPreciseCtrl is refused for the 2016 device, never sent');
ok(sipp_verdict($h, $nvr), 'sipp (device_2016.xml): every PTZCmd, RecordInfo and the SDP of the playback, download and live INVITEs were the expected bytes')
  or diag(slurp_file("$tmp/sipp$run_no.out") . slurp_file("$tmp/sipp$run_no.err"));

# 2. the 2022 device: X-GB-Ver: 3.0 both ways, PTZPreciseCtrl
$h = sipp_start('device_2022.xml', $ipc);
is($node->safe_psql('postgres', "SELECT gb_version FROM vms.device_session WHERE device_code = '$ipc'"), '3.0',
	'the 2022 device registered with X-GB-Ver: 3.0');
is(request("vms.ptz_precise('34020000001310009101', 90.5, -10, 4)", 1), 'done|', 'PTZPreciseCtrl: answered Result OK');
ok(sipp_verdict($h, $ipc), 'sipp (device_2022.xml): the 200 to REGISTER carried X-GB-Ver: 3.0, PTZPreciseCtrl the exact values');

# 3. each check fails on other bytes: sipp must exit non-zero
my @wrong = (
	[ 'a PTZCmd for another command', $nvr, 'device_2016.xml', sub { request("vms.ptz('$ch[0]', 'down')", 1) } ],
	[ 'a PTZCmd at another speed', $nvr, 'device_2016.xml', sub { request("vms.ptz('$ch[0]', 'up', 64)", 1) } ],
	[ 'RecordInfo for another period', $nvr, 'device_2016.xml',
		sub { request("vms.sip_query_records('$ch[0]', '2026-03-01 00:00+00', '2026-03-01 05:00+00')") } ],
	[ 'a playback INVITE for another period', $nvr, 'device_2016.xml', sub {
		my $id = $node->safe_psql('postgres', "SELECT vms.playback('$ch[0]', '2026-03-01 00:00+00', '2026-03-01 02:00+00',"
			. " '{\"ip\": \"127.0.0.1\", \"port\": 57790}')");
		$node->safe_psql('postgres', "SELECT vms.sip_request_wait($id, 60)");
		request("vms.sip_bye($id)");
	} ],
	[ 'PTZPreciseCtrl with another pan', $ipc, 'device_2022.xml',
		sub { request("vms.ptz_precise('34020000001310009101', 91, -10, 4)", 1) } ],
	[ 'a playback INVITE with the live digit (y=0...)', $nvr, 'device_2016.xml', sub { hand_playback('0200009999') } ],
	[ 'a download INVITE with the live digit (y=0...)', $nvr, 'device_2016.xml', sub { hand_download('0200009999') } ],
	[ 'a live INVITE with the history digit (y=1...)', $nvr, 'device_2016.xml', sub { hand_live('1200009999') } ],
	[ 'a playback INVITE with another domain in y= (digits 4-8 of 3402000000 are 20000)', $nvr, 'device_2016.xml',
		sub { hand_playback('1340209999') } ]);
for my $w (@wrong)
{
	my ($what, $dev, $main, $do) = @$w;
	$h = sipp_start($main, $dev);
	$do->();
	ok(!sipp_verdict($h, $dev), "sipp ($main) fails on $what");
}

$node->stop;
done_testing();
