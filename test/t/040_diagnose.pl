# vms.diagnose() on real clips: four tiny clips made with ffmpeg (clean,
# black, frozen, blurred) diagnosed as server files and over rtsp:// from
# test/peers/rtsp_server.py; a camera that stalls after PLAY and one that
# refuses the stream give an abnormal `stream` row within the timeouts; a
# statement_timeout and pg_cancel_backend stop a long diagnosis at once.
# (The SQL API does not return the JPEG snapshot, so it is not tested here.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

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

my $node = PostgreSQL::Test::Cluster->new('diagnose');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'vms'
vms.database = 'postgres'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION vms CASCADE');

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

# ---- rtsp ----
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $rtsp = IPC::Run::start(
	[ '/usr/bin/python3', "$root/test/peers/rtsp_server.py", '--dir', $clips, '--port', $port, '--loops', '3' ],
	'>', "$tmp/rtsp.out", '2>', "$tmp/rtsp.err");
my $ready = 0;
for (1 .. 300)
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

my $t0 = time;
my $stall = $node->safe_psql('postgres',
	"SELECT abnormal, detail FROM vms.diagnose('rtsp://127.0.0.1:$port/stall', '$to') WHERE check_name = 'stream'");
my $el = time - $t0;
like($stall, qr/^t\|/, "rtsp: /stall gives an abnormal stream ($stall)");
cmp_ok($el, '<', 7.5, sprintf('rtsp: /stall answered within the timeout (%.1f s)', $el));

$t0 = time;
my $refuse = $node->safe_psql('postgres',
	"SELECT abnormal, detail FROM vms.diagnose('rtsp://127.0.0.1:$port/refuse', '$to') WHERE check_name = 'stream'");
$el = time - $t0;
like($refuse, qr/^t\|/, "rtsp: /refuse gives an abnormal stream ($refuse)");
cmp_ok($el, '<', 3, sprintf('rtsp: /refuse answered at once (%.1f s)', $el));

# ---- interrupts: a diagnosis that would wait 60 s on a stalled camera ----
my $long = '{"timeout_ms": 60000, "connect_timeout_ms": 60000, "read_timeout_ms": 60000}';
$t0 = time;
my ($ret, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '1s'; SELECT * FROM vms.diagnose('rtsp://127.0.0.1:$port/stall', '$long')");
$el = time - $t0;
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout stops a diagnosis');
cmp_ok($el, '<', 3, sprintf('... promptly (%.1f s)', $el));

my ($in, $bout, $berr) = ('', '', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c',
	  "SELECT * FROM vms.diagnose('rtsp://127.0.0.1:$port/stall', '$long')" ],
	'<', \$in, '>', \$bout, '2>', \$berr);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%vms.diagnose(''rtsp%/stall%' AND state = 'active' AND pid <> pg_backend_pid()")
  or die 'the long diagnosis did not start';
usleep(500_000);    # let it reach the network wait
$t0 = time;
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%vms.diagnose(''rtsp%/stall%' AND pid <> pg_backend_pid()");
$h->finish;
$el = time - $t0;
like($berr, qr/canceling statement due to user request/, 'pg_cancel_backend stops a diagnosis');
cmp_ok($el, '<', 2, sprintf('... promptly (%.1f s)', $el));

# the backend is still usable after the cancel
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server fine after the interrupts');

$rtsp->kill_kill;
$rtsp->finish;
$node->stop;
done_testing();
