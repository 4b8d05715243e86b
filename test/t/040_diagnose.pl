# vms.diagnose() on real clips: four tiny clips made with ffmpeg (clean,
# black, frozen, blurred) diagnosed as server files and over rtsp:// from
# test/peers/rtsp_server.py; a camera that stalls after PLAY and one that
# refuses the stream give an abnormal `stream` row within the timeouts; a
# statement_timeout and pg_cancel_backend stop a long diagnosis at once.
# Bad input (issue 14: zero length, sound only, an MP4 cut before its index,
# 8x8 pictures, 10-bit, 4:2:2, an odd size, a resolution change mid-sample)
# gives every row: an abnormal `stream` row with FFmpeg's reason, or the
# pictures diagnosed; no error, no backend crash.
# (The SQL API does not return the JPEG snapshot, so it is not tested here.)
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
my $clips = "$tmp/clips";
mkdir $clips or die;

# ---- clips: 2 s, 640x360, 25 fps, H.264 ----
my @ff = qw(ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i);
my @enc = qw(-c:v libx264 -preset veryfast -crf 21 -g 50 -pix_fmt yuv420p -an -t 2);
my %clip = (
	clean   => [ 'testsrc2=s=640x360:r=25' ],
	black   => [ 'color=c=black:s=640x360:r=25' ],
	frozen  => [ 'testsrc2=s=640x360:r=25', '-vf', 'trim=end_frame=1,loop=loop=-1:size=1,setpts=N/25/TB' ],
	blurred => [ 'testsrc2=s=640x360:r=25', '-vf', 'gblur=sigma=8' ],
);
for my $name (sort keys %clip)
{
	my ($src, @vf) = @{ $clip{$name} };
	system(@ff, $src, @vf, @enc, "$clips/$name.mp4") == 0 or die "ffmpeg failed for $name";
}

my $node = vms_node('diagnose');

# the abnormal checks of one diagnosis, sorted, and its stream verdict
sub abnormal
{
	my ($src, $opts) = @_;
	$opts //= '{}';
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(check_name, ',' ORDER BY check_name), '') FROM vms.diagnose('$src', '$opts') WHERE abnormal");
}

# ---- files ----
is(abnormal("$clips/clean.mp4"), '', 'file: clean clip has no alarm');
is(abnormal("$clips/black.mp4"), 'black_screen', 'file: black clip is black_screen');
is(abnormal("$clips/frozen.mp4"), 'freeze', 'file: frozen clip is freeze');
like(abnormal("$clips/blurred.mp4"), qr/(^|,)blur(,|$)/, 'file: blurred clip is blur');
is($node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE metric IS NOT NULL) || '/' || count(*) FROM vms.diagnose('$clips/clean.mp4')"),
	'12/12', 'file: every check evaluated, one row each');
is($node->safe_psql('postgres',
		"SELECT metric FROM vms.diagnose('$clips/clean.mp4', '{\"frames\": 10}') WHERE check_name = 'stream'"),
	'10', 'file: the frames option limits the sample');

# ---- bad input (issue 14): a `stream` row with the reason, or pictures diagnosed; never an error or a crash ----
my @x264 = qw(-c:v libx264 -preset veryfast -x264-params threads=1 -an);
sub ffbad { my ($out, @args) = @_; system(@ff, @args, "$clips/$out") == 0 or die "ffmpeg failed for $out"; }
ffbad('tenbit.mp4', 'testsrc2=s=640x360:r=25', '-t', '2', @x264, '-pix_fmt', 'yuv420p10le');
ffbad('yuv422.mp4', 'testsrc2=s=640x360:r=25', '-t', '2', @x264, '-pix_fmt', 'yuv422p');
# (testsrc2 rounds its size down to even numbers: the scale filter makes it odd)
ffbad('odd.mp4', 'testsrc2=s=352x288:r=25', '-t', '2', '-vf', 'scale=353:289', @x264, '-pix_fmt', 'yuv444p');
ffbad('tiny.mp4', 'testsrc2=s=8x8:r=25', '-t', '1', @x264, '-pix_fmt', 'yuv444p');
ffbad('audio.m4a', 'sine=f=440:d=2', '-c:a', 'aac');
ffbad('index_last.mp4', 'testsrc2=s=640x360:r=25', '-t', '2', @x264, '-pix_fmt', 'yuv420p');
ffbad('res_a.ts', 'testsrc2=s=640x360:r=25', '-t', '1', @x264, '-pix_fmt', 'yuv420p');
ffbad('res_b.ts', 'testsrc2=s=320x240:r=25', '-t', '1.4', @x264, '-pix_fmt', 'yuv420p');
{
	my $whole = slurp_file("$clips/index_last.mp4");
	open my $f, '>:raw', "$clips/truncated.mp4" or die;
	print $f substr($whole, 0, int(length($whole) * 2 / 5));    # its index (moov, at the end) is lost
	close $f;
	open $f, '>:raw', "$clips/reschange.ts" or die;
	print $f slurp_file("$clips/res_a.ts") . slurp_file("$clips/res_b.ts");
	close $f;
	open $f, '>', "$clips/zero.mp4" or die;
	close $f;
}
my $bad_pid = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
for my $case (
	[ 'zero.mp4',      't', qr/^could not open: Invalid data found when processing input$/ ],
	[ 'audio.m4a',     't', qr/^no video stream$/ ],
	[ 'truncated.mp4', 't', qr/^could not open: / ],
	[ 'tiny.mp4',      't', qr/^frame size 8x8 not supported$/ ],
	[ 'tenbit.mp4',    'f', qr/^640x360 h264 25\.0 fps, 50 frames/ ],
	[ 'yuv422.mp4',    'f', qr/^640x360 h264 25\.0 fps, 50 frames/ ],
	[ 'odd.mp4',       'f', qr/^353x289 h264 25\.0 fps, 50 frames/ ],
	# 1 s at 640x360, then 320x240: more than 25 frames means the pictures after the change were taken too
	[ 'reschange.ts',  'f', qr/^640x360 h264 25\.0 fps, (2[6-9]|[3-5][0-9]) frames/ ])
{
	my ($f, $ab, $detail) = @$case;
	my ($rows, $stream) = split /\|/, $node->safe_psql('postgres', qq{
		SELECT count(*) || '|' || max(CASE WHEN check_name = 'stream' THEN CASE WHEN abnormal THEN 't ' ELSE 'f ' END || detail END)
		  FROM vms.diagnose('$clips/$f')}), 2;
	is($rows, '12', "bad input $f: every check has its row");
	like($stream // '', qr/^$ab /, "bad input $f: stream abnormal = $ab ($stream)");
	like(($stream // '') =~ s/^[tf] //r, $detail, "bad input $f: the stream's detail says what it is");
	if ($ab eq 'f')
	{
		is($node->safe_psql('postgres', "SELECT count(*) FROM vms.diagnose('$clips/$f') WHERE metric IS NULL"), '0',
			"bad input $f: every picture check evaluated");
	}
}
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $bad_pid, 'bad input: the server did not restart');
unlike(slurp_file($node->logfile), qr/terminated by signal/, 'bad input: no backend crashed');

# ---- rtsp ----
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $rtsp = IPC::Run::start(
	[ '/usr/bin/python3', "$root/test/peers/rtsp_server.py", '--dir', $clips, '--port', $port, '--loops', '3' ],
	'>', "$tmp/rtsp.out", '2>', "$tmp/rtsp.err");
my $ready = 0;
# (its GStreamer start can take long on a loaded machine: the usual generous bound)
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	if (open(my $fh, '<', "$tmp/rtsp.out")) { local $/; $ready = (<$fh> // '') =~ /ready/; close $fh; }
	last if $ready;
	usleep(100_000);
}
ok($ready, 'rtsp_server is ready') or BAIL_OUT('rtsp_server did not start: ' . slurp_file("$tmp/rtsp.err"));

my $to = '{"timeout_ms": 6000, "connect_timeout_ms": 3000, "read_timeout_ms": 2000}';
is(abnormal("rtsp://127.0.0.1:$port/clean", $to), '', 'rtsp: clean clip has no alarm');
is(abnormal("rtsp://127.0.0.1:$port/frozen", $to), 'freeze', 'rtsp: frozen clip is freeze');
is(abnormal("rtsp://127.0.0.1:$port/black", $to), 'black_screen', 'rtsp: black clip is black_screen');

# (how long these take is the machine's business; that they end for the
# right reason is the behaviour: the stall on the read timeout, the refusal
# on the server's answer)
my $stall = $node->safe_psql('postgres',
	"SELECT abnormal, detail FROM vms.diagnose('rtsp://127.0.0.1:$port/stall', '$to') WHERE check_name = 'stream'");
like($stall, qr/^t\|/, "rtsp: /stall gives an abnormal stream ($stall)");
like($stall, qr/timeout|timed out|no frames/i, 'rtsp: /stall ends on the timeout');

my $refuse = $node->safe_psql('postgres',
	"SELECT abnormal, detail FROM vms.diagnose('rtsp://127.0.0.1:$port/refuse', '$to') WHERE check_name = 'stream'");
like($refuse, qr/^t\|/, "rtsp: /refuse gives an abnormal stream ($refuse)");
like($refuse, qr/404|not found/i, 'rtsp: /refuse ends on the camera\'s refusal');
unlike($refuse, qr/timeout|timed out/i, 'rtsp: /refuse did not wait for a timeout');

# ---- http: only the containers cameras send ----
# Python's own HTTP server serves a clip as MPEG-TS, a concat playlist naming
# a clip, and a PNG picture.  The clip is diagnosed; the playlist and the picture
# would open through FFmpeg's concat and image demuxers (probed from their
# content), which a network source may not choose.
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
{
	open(my $fh, '>', "$clips/list.ffconcat") or die;
	print $fh "ffconcat version 1.0\nfile clean.mp4\n";
	close $fh;
	system(@ff, 'testsrc2=s=320x240:r=1', '-frames:v', '1', "$clips/picture.png") == 0 or die 'ffmpeg png';
	# what an HTTP camera sends: MPEG-TS (Python's server cannot seek, as an mp4 would need)
	system(qw(ffmpeg -hide_banner -loglevel error -nostdin -y -i), "$clips/clean.mp4", qw(-c copy -f mpegts), "$clips/clean.ts") == 0
	  or die 'ffmpeg ts';
}
my $http = IPC::Run::start(
	[ '/usr/bin/python3', '-m', 'http.server', '--bind', '127.0.0.1', '--directory', $clips, $http_port ],
	'>', "$tmp/http.out", '2>', "$tmp/http.err");
my $http_ready = 0;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	last if ($http_ready = system('curl', '-sf', '-o', '/dev/null', "http://127.0.0.1:$http_port/clean.mp4") == 0);
	usleep(100_000);
}
ok($http_ready, 'http server is ready');
my $ts = $node->safe_psql('postgres',
	"SELECT abnormal, detail FROM vms.diagnose('http://127.0.0.1:$http_port/clean.ts', '$to') WHERE check_name = 'stream'");
like($ts, qr/^f\|640x360 h264/, "http: an MPEG-TS clip is diagnosed ($ts)");
for my $path ('list.ffconcat', 'picture.png')
{
	my $r = $node->safe_psql('postgres',
		"SELECT abnormal, detail FROM vms.diagnose('http://127.0.0.1:$http_port/$path', '$to') WHERE check_name = 'stream'");
	like($r, qr/^t\|could not open/, "http: $path is not opened through a demuxer cameras do not use ($r)");
}
$http->kill_kill;
$http->finish;

# ---- interrupts: a diagnosis that would wait 600 s on a stalled camera ----
# An interrupt honoured only when the diagnosis gives up would take those
# 600 s; the clients below give up after 150 s (a hang detector far from
# both, not a speed target).
my $long = '{"timeout_ms": 600000, "connect_timeout_ms": 600000, "read_timeout_ms": 600000}';
my $timed_out = 0;
my ($ret, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '1s'; SELECT * FROM vms.diagnose('rtsp://127.0.0.1:$port/stall', '$long')",
	timeout => 150, timed_out => \$timed_out);
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout stops a diagnosis');
ok(!$timed_out, '... while the diagnosis waits, not when it gives up');

sub stall_clients { my $o = slurp_file("$tmp/rtsp.out"); return scalar(() = $o =~ /stall: prepared/g); }
my $stall_seen = stall_clients();
my ($in, $bout, $berr) = ('', '', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c',
	  "SELECT * FROM vms.diagnose('rtsp://127.0.0.1:$port/stall', '$long')" ],
	'<', \$in, '>', \$bout, '2>', \$berr, IPC::Run::timeout(150));
# the marker that it is in its network phase: the camera saw it describe /stall
my $in_network = 0;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	last if ($in_network = stall_clients() > $stall_seen);
	usleep(100_000);
}
ok($in_network, 'the long diagnosis is talking to the stalled camera');
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%vms.diagnose(''rtsp%/stall%' AND pid <> pg_backend_pid()");
my $finished = eval { $h->finish; 1 };
like($berr, qr/canceling statement due to user request/, 'pg_cancel_backend stops a diagnosis');
ok($finished, '... while the diagnosis waits, not when it gives up');

# the backend is still usable after the cancel
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server fine after the interrupts');

$rtsp->kill_kill;
$rtsp->finish;
$node->stop;
done_testing();
