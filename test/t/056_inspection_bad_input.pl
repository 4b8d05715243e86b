# The inspector worker under bad input (issue 14): cameras served over HTTP
# by Python's http.server (a server we did not write) that deliver a
# zero-length file, an audio-only stream, random bytes, a truncated MP4
# (index lost), a truncated MPEG-TS, a corrupted H.264 stream, 10-bit,
# 4:2:2 and odd-sized video and a resolution change mid-sample, beside a
# good clip.  Each channel ends with exactly one result (a `stream` verdict,
# with its reason when abnormal), no task stays claimed, the worker is the
# same process before and after (it did not crash and was not restarted),
# and a second round over the same cameras is done too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IPC::Run;
use IO::Socket::INET;
use Time::HiRes qw(usleep);

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $clips = "$tmp/clips";
mkdir $clips;

sub ff
{
	my @args = @_;
	system('ffmpeg', '-loglevel', 'error', '-y', '-nostdin', @args) == 0 or die "ffmpeg @args failed";
}
# (MP4 with its index first: Python's server does not serve byte ranges)
my @x264 = ('-c:v', 'libx264', '-preset', 'veryfast', '-x264-params', 'threads=1');
my @fast = ('-movflags', '+faststart');
ff('-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '3', @x264, '-pix_fmt', 'yuv420p', @fast, "$clips/good.mp4");
ff('-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '3', @x264, '-pix_fmt', 'yuv420p', "$clips/index_last.mp4");
ff('-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '3', @x264, '-pix_fmt', 'yuv420p10le', @fast, "$clips/tenbit.mp4");
ff('-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '3', @x264, '-pix_fmt', 'yuv422p', @fast, "$clips/yuv422.mp4");
# (testsrc2 rounds its size down to even numbers: the scale filter makes it odd)
ff('-f', 'lavfi', '-i', 'testsrc2=size=352x288:rate=25', '-t', '3', '-vf', 'scale=353:289', @x264, '-pix_fmt', 'yuv444p', @fast,
	"$clips/odd.mp4");
ff('-f', 'lavfi', '-i', 'sine=f=440:d=3', '-c:a', 'aac', "$clips/audio.m4a");
ff('-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '3', @x264, '-pix_fmt', 'yuv420p', '-bsf:v', 'noise=amount=2000',
	"$clips/corrupt.ts");
ff('-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '4', '-c:v', 'mpeg2video', '-b:v', '1M', "$clips/whole.ts");
ff('-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25', '-t', '1.5', @x264, '-pix_fmt', 'yuv420p', "$clips/res_a.ts");
ff('-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '1.5', @x264, '-pix_fmt', 'yuv420p', "$clips/res_b.ts");

sub slurp { my ($f) = @_; open my $h, '<:raw', $f or die "$f: $!"; local $/; my $d = <$h>; close $h; return $d; }
sub spew { my ($f, $d) = @_; open my $h, '>:raw', $f or die "$f: $!"; print $h $d; close $h; }
spew("$clips/zero.mp4", '');
my $whole = slurp("$clips/index_last.mp4");
spew("$clips/truncated.mp4", substr($whole, 0, int(length($whole) * 2 / 5)));    # its index (moov, at the end) is lost
my $ts = slurp("$clips/whole.ts");
spew("$clips/truncated.ts", substr($ts, 0, int(length($ts) / 2) + 77));       # ends mid-packet
spew("$clips/reschange.ts", slurp("$clips/res_a.ts") . slurp("$clips/res_b.ts"));
srand(14);
spew("$clips/random.ts", join('', map { chr(int(rand(256))) } 1 .. 200_000));
unlink "$clips/index_last.mp4", "$clips/whole.ts", "$clips/res_a.ts", "$clips/res_b.ts";
chmod 0755, $tmp, $clips;

# the cameras: an HTTP server over the clip folder
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
my $http = IPC::Run::start([ '/usr/bin/python3', '-m', 'http.server', '--bind', '127.0.0.1', '--directory', $clips, $http_port ],
	'>', "$tmp/http.out", '2>', "$tmp/http.err");
my $up = 0;
for (1 .. 1800)
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http_port, Proto => 'tcp');
	if ($s) { close $s; $up = 1; last; }
	usleep(100_000);
}
ok($up, 'the HTTP cameras are up');

my $node = vms_node('inspbad', 'vms.viid_enabled' => 'off', 'vms.sip_enabled' => 'off', 'vms.inspector_workers' => 1);
wait_ok($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'vms inspector'", 'the inspector worker runs');
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'vms inspector'");

my @files = qw(good.mp4 zero.mp4 audio.m4a random.ts truncated.mp4 truncated.ts corrupt.ts tenbit.mp4 yuv422.mp4 odd.mp4 reschange.ts);
my $n = scalar @files;
my $i = 0;
my $values = join(",\n", map { $i++; sprintf("('340200000013200%05d', '%s', 'http://127.0.0.1:%d/%s')", $i, $_, $http_port, $_) } @files);
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('34020000001180000001', 'NVR');
INSERT INTO vms.channel (code, device_code, name, stream_url)
SELECT code, '34020000001180000001', name, url FROM (VALUES $values) v(code, name, url);
SELECT vms.inspection_plan_add('bad input', jsonb_build_object('channels', (SELECT jsonb_agg(code::text) FROM vms.channel)),
       'every 1 h', '{"timeout_ms": 120000, "checks": ["stream", "black_screen", "freeze", "mosaic", "brightness"]}');
});
# (no camera here stalls: every sample ends on its data, so the generous
# timeout only keeps a loaded machine from turning a verdict into a timeout)

wait_ok($node, "SELECT count(*) = $n FROM vms.quality_result", "every one of the $n cameras has a result");
my %r = map { my ($name, @v) = split /\|/, $_, 7; ($name => \@v) } split /\n/,
  $node->safe_psql('postgres', qq{
SELECT c.name, q.stream_ok::text, q.sample ->> 'frames', q.sample ->> 'width', q.sample ->> 'height', q.sample ->> 'codec',
       coalesce(q.checks -> 'stream' ->> 'detail', '')
  FROM vms.quality_result q JOIN vms.channel c ON c.code = q.channel_code});
is(scalar(keys %r), $n, 'one result per camera');

# no picture: the stream is abnormal, with the reason FFmpeg gave
for my $case (
	[ 'zero.mp4',      qr/^could not open: Invalid data found when processing input$/, 'an empty file is not a container' ],
	[ 'random.ts',     qr/^could not open: Invalid data found when processing input$/, 'random bytes are no container' ],
	[ 'truncated.mp4', qr/^could not open: Invalid data found when processing input$/, 'an MP4 without its index cannot be opened' ],
	[ 'audio.m4a',     qr/^no video stream$/,                                        'a stream with sound only has no picture' ])
{
	my ($f, $reason, $what) = @$case;
	my ($ok, $frames, $w, $h, $codec, $detail) = @{ $r{$f} // [] };
	is(($ok // 'none') . ' ' . ($frames // '?'), 'false 0', "$f: stream abnormal, no frames");
	like($detail // '', $reason, "$f: $what (" . ($detail // 'no result') . ')');
}

# pictures: the stream is normal, at the clip's own size and codec.  The
# clips are encoded single-threaded (the same bytes each run) and nothing
# here depends on timing, so each verdict is what FFmpeg makes of the file;
# only where FFmpeg versions may differ (the end of a cut TS) is a check
# looser, as said there.
sub picture
{
	my ($f) = @_;
	my ($ok, $frames, $w, $h, $codec, $detail) = @{ $r{$f} // [] };
	return (join(' ', $ok // 'none', ($w // '?') . 'x' . ($h // '?'), $codec // '?'), $frames // 0, $detail // '');
}
for my $case (
	[ 'good.mp4',     '320x240 h264' ],
	[ 'tenbit.mp4',   '320x240 h264' ],
	[ 'yuv422.mp4',   '320x240 h264' ],
	[ 'odd.mp4',      '353x289 h264' ])
{
	my ($f, $size) = @$case;
	my ($v, $frames, $detail) = picture($f);
	is($v, "true $size", "$f: stream ok, $size");
	ok($frames >= 25 && $detail !~ /corrupt/, "$f: a clean sample of at least a second ($frames frames: $detail)");
}
{
	my ($v, $frames, $detail) = picture('corrupt.ts');
	is($v, 'true 320x240 h264', 'corrupt.ts: the stream still gives pictures');
	like($detail, qr/decoder reported corrupt frames$/, "corrupt.ts: the decoder's corruption is in the stream's detail ($detail)");
}
{
	# the frames before the cut are decoded; whether FFmpeg flags the last,
	# cut picture as corrupt or drops it depends on its version: not checked
	my ($v, $frames, $detail) = picture('truncated.ts');
	is($v, 'true 320x240 mpeg2video', 'truncated.ts: the pictures before the cut');
	ok($frames >= 25, "truncated.ts: at least a second of them ($frames frames)");
}
{
	# 1.5 s (37 or 38 frames) at 640x360, then 320x240: more frames than the
	# first part holds means the pictures after the change were decoded too
	my ($v, $frames, $detail) = picture('reschange.ts');
	is($v, 'true 640x360 h264', 'reschange.ts: the stream, at the size it starts with');
	ok($frames > 38, "reschange.ts: pictures after the change are taken too ($frames frames)");
}
is($node->safe_psql('postgres', qq{
SELECT jsonb_typeof(q.checks #> '{color_cast,grey,0}') || ' ' || jsonb_typeof(q.checks #> '{color_cast,grey,1}')
  FROM vms.quality_result q JOIN vms.channel c ON c.code = q.channel_code WHERE c.name = 'good.mp4'}),
	'number number', 'the good clip: the result carries the picture\'s median chroma for the channel\'s colour baseline');
is($node->safe_psql('postgres', qq{
SELECT 'mosaic' = ANY (q.abnormal) FROM vms.quality_result q JOIN vms.channel c ON c.code = q.channel_code WHERE c.name = 'corrupt.ts'}),
	't', 'corrupt.ts: the decoding corruption is reported as mosaic');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.inspection_task WHERE state NOT IN ('done', 'failed')"), '0',
	'no task left claimed or pending');
is($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'vms inspector'"), $pid,
	'the same inspector process (no crash, no restart)');

# a second round over the same cameras
$node->safe_psql('postgres', "SELECT vms.inspection_run_now('bad input')");
wait_ok($node, "SELECT count(*) = 2 * $n FROM vms.quality_result", 'a second round is done too');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.inspection_task WHERE state NOT IN ('done', 'failed')"), '0',
	'again no task left claimed');
is($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'vms inspector'"), $pid,
	'still the same inspector process');
my $log = slurp($node->logfile);
unlike($log, qr/vms inspector.*(terminated by signal|exited with exit code [1-9])/, 'the server log shows no inspector crash');

$node->stop;
$http->kill_kill;
done_testing();
