# Inspection plans run by the "vms inspector N" workers against real RTSP
# cameras (GStreamer's RTSP server serving clips made with ffmpeg), one that
# stalls after PLAY and one that refuses: results and snapshots stored,
# alarms raised once per channel and fault with a count and cleared when
# the picture is back, tasks taken once each by two workers, scene change
# against the baseline, time-window profiles, 取流成功率/出图率, supervision.
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
mkdir $clips;

# clips: a scene, the same camera turned, a black picture
sub ffmpeg
{
	my ($out, $src, $vf) = @_;
	system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', $src, '-t', '4', ($vf ? ('-vf', $vf) : ()), '-c:v', 'libx264',
		'-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-g', '25', "$clips/$out") == 0
	  or die "ffmpeg $out failed";
}
ffmpeg('street.mp4', 'testsrc2=size=640x360:rate=25');
ffmpeg('hills.mp4', 'testsrc2=size=640x360:rate=25', 'crop=480:270:x=150:y=80,scale=640:360');
ffmpeg('black.mp4', 'color=black:size=640x360:rate=25');

my $rtsp_port = PostgreSQL::Test::Cluster::get_free_port();
my $rtsp_out = '';
my $rtsp = IPC::Run::start([ '/usr/bin/python3', "$root/test/peers/rtsp_server.py", '--dir', $clips, '--port', $rtsp_port ],
	'>', \$rtsp_out, '2>', "$tmp/rtsp.err");
# (its GStreamer start can take long on a loaded machine: the usual generous bound)
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default) { $rtsp->pump_nb; last if $rtsp_out =~ /ready/; usleep(100_000); }
like($rtsp_out, qr/ready/, 'RTSP cameras are up');
my $cam = "rtsp://127.0.0.1:$rtsp_port";

my $node = vms_node('inspect', 'vms.viid_enabled' => 'off', 'vms.sip_enabled' => 'off', 'vms.inspector_workers' => 2);
wait_ok($node, "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'vms inspector'",
	'two inspector workers run under the launcher');

$node->safe_psql('postgres', qq{
INSERT INTO vms.org_unit (name, civil_code) VALUES ('东区分局', '340201');
INSERT INTO vms.device (code, name) VALUES ('34020000001180000001', 'NVR');
INSERT INTO vms.channel (code, device_code, name, civil_code, unit_id, stream_url)
SELECT code, '34020000001180000001', name, '34020101', (SELECT id FROM vms.org_unit), url
  FROM (VALUES ('34020000001320000001', '街口', '$cam/street'),
               ('34020000001320000002', '黑屏', '$cam/black'),
               ('34020000001320000003', '卡住', '$cam/stall'),
               ('34020000001320000004', '拒绝', '$cam/refuse'),
               ('34020000001320000005', '山景', '$cam/hills'),
               ('34020000001320000006', '无地址', NULL)) v(code, name, url);
});

# bad plans are refused with the key named
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT vms.inspection_plan_add('x', '{\"region\": [\"34\"]}', 'every 10 min')");
like($err, qr/unknown inspection scope key "region"/, 'unknown scope key refused');
($rc, $out, $err) = $node->psql('postgres', "SELECT vms.inspection_plan_add('x', '{}', 'cron 61 * * * *')");
like($err, qr/cron field "61" is out of range/, 'bad cron refused');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT vms.inspection_plan_add('x', '{}', 'every 10 min', '{\"checks\": [\"sharpness\"]}')");
like($err, qr/unknown check "sharpness"/, 'unknown check refused');
is($node->safe_psql('postgres', "SELECT vms.cron_next('30 2 * * *', '2026-11-22 03:00')::timestamp"),
	'2026-11-23 02:30:00', 'cron_next: the next 02:30');

$node->safe_psql('postgres', qq{
SELECT vms.inspection_plan_add('东区巡检', '{"regions": ["340201"]}', 'every 1 h',
       '{"timeout_ms": 6000, "sample_seconds": 2, "concurrency": 2,
         "checks": ["stream", "signal_loss", "black_screen", "brightness", "blur", "noise", "freeze", "jitter", "scene_change"]}')});
# (colour cast, stripes, mosaic and occlusion are left out of this plan: on a
# zoomed test chart the core reports a cast, a known gap listed in
# extension/inspect/THRESHOLDS.md; test/inspect/run_checks.sh covers them)

sub wait_round
{
	my ($n) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) >= $n FROM vms.inspection_run WHERE finished_at IS NOT NULL");
}
ok(wait_round(1), 'the first round finishes');
my $log = $node->safe_psql('postgres',
	"SELECT channel || ':' || stream_ok || ':' || image_ok || ':' || array_to_string(abnormal, '+') FROM vms.inspection_log ORDER BY channel_code");
is($log, join("\n", '街口:true:true:', '黑屏:true:false:black_screen', '卡住:false:false:stream',
		'拒绝:false:false:stream', '山景:true:true:', '无地址:false:false:stream'),
	'verdicts: clean scenes pass, black screen, stalled / refused / missing streams fail');
like($node->safe_psql('postgres', "SELECT checks -> 'stream' ->> 'detail' FROM vms.quality_result WHERE channel_code = '34020000001320000003'"),
	qr/timeout|timed out|no frames/i, 'the stalled camera is reported within the timeout');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.quality_result"), '6', 'one result per channel');
# how the six tasks are shared depends on scheduling; what is guaranteed is
# that each was taken by one live inspector and answered once
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.inspection_task WHERE worker NOT IN ('inspector 1', 'inspector 2')"),
	'0', 'every task was taken by one of the two inspectors');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM vms.inspection_task t WHERE (SELECT count(*) FROM vms.quality_result r WHERE r.task_id = t.id) <> 1"),
	'0', 'no task was taken twice: one result per task');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM vms.worker_status WHERE name LIKE 'inspector %' AND pid IS NOT NULL AND state NOT IN ('stopped', 'starting')"),
	'2', 'both inspectors are alive after the round');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.inspection_task WHERE state <> 'done'"), '0', 'every task done once');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.snapshot WHERE is_baseline AND substr(jpeg, 1, 2) = '\\xffd8'::bytea"),
	'2', 'JPEG snapshots; the clean channels have a baseline');
is($node->safe_psql('postgres', "SELECT stream_success_rate || ' ' || image_rate FROM vms.inspection_run_rates"),
	'0.5000 0.3333', '取流成功率 and 出图率 of the round');
is($node->safe_psql('postgres', "SELECT image_rate FROM vms.governance_metrics_by_unit() WHERE unit = '东区分局'"),
	'0.3333', '出图率 in the governance metrics per unit');
is($node->safe_psql('postgres',
		"SELECT string_agg(code || ':' || fault_type || ':' || level, ',' ORDER BY code) FROM vms.alarm WHERE source = 'inspection' AND state = 'open'"),
	'34020000001320000002:black_screen:2,34020000001320000003:stream:2,34020000001320000004:stream:2,34020000001320000006:stream:2',
	'alarms raised, graded by fault type');

# second round: the black camera is fixed, the street camera was turned to the hills
$node->safe_psql('postgres', qq{
UPDATE vms.channel SET stream_url = '$cam/street' WHERE code = '34020000001320000002';
UPDATE vms.channel SET stream_url = '$cam/hills' WHERE code = '34020000001320000001';
SELECT vms.inspection_run_now('东区巡检');
});
ok(wait_round(2), 'the second round finishes');
is($node->safe_psql('postgres', "SELECT state FROM vms.alarm WHERE code = '34020000001320000002' AND fault_type = 'black_screen'"),
	'cleared', 'the black-screen alarm is cleared when the picture is back');
is($node->safe_psql('postgres', "SELECT occurrences FROM vms.alarm WHERE code = '34020000001320000004' AND state = 'open'"),
	'2', 'a fault seen again counts on the same open alarm');
like($node->safe_psql('postgres', "SELECT array_to_string(abnormal, ',') FROM vms.channel_latest_quality WHERE channel_code = '34020000001320000001'"),
	qr/scene_change/, 'a camera turned away from its baseline: scene_change');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.alarm WHERE code = '34020000001320000001' AND fault_type = 'scene_change' AND state = 'open'"),
	'1', 'and its alarm');

# time windows are [from, to) in the server's time zone, wrapping midnight
# when to < from; from = to is the whole day.  Checked at fixed times:
$node->safe_psql('postgres', q{
UPDATE vms.inspection_plan SET windows = '[{"from": "22:00", "to": "06:00", "profile": "loose"}, {"from": "08:00", "to": "20:00", "profile": "strict"}]'
 WHERE name = '东区巡检'});
is($node->safe_psql('postgres', q{
SELECT string_agg(to_char(t, 'HH24:MI:SS') || '=' || (vms._inspection_settings(p, timezone(current_setting('TimeZone'), t))).profile, ' ' ORDER BY t)
  FROM vms.inspection_plan p,
       unnest('{2026-11-22 05:59:59, 2026-11-22 06:00:00, 2026-11-22 08:00:00, 2026-11-22 19:59:59, 2026-11-22 20:00:00, 2026-11-22 23:59:59}'::timestamp[]) t
 WHERE p.name = '东区巡检'}),
	'05:59:59=loose 06:00:00=normal 08:00:00=strict 19:59:59=strict 20:00:00=normal 23:59:59=loose',
	'windows: ends excluded, a window across midnight, the plan\'s profile between windows');
# a window all day long with its own thresholds: blur_min so low that every
# picture is "blurred"; 00:00-00:00 holds in the last minute of the day too
$node->safe_psql('postgres', qq{
UPDATE vms.inspection_plan SET windows = '[{"from": "00:00", "to": "00:00", "profile": "loose", "thresholds": {"blur_min": 0.01}}]',
       checks = '{stream,blur}' WHERE name = '东区巡检';
});
is($node->safe_psql('postgres', q{
SELECT string_agg((vms._inspection_settings(p, timezone(current_setting('TimeZone'), t))).profile, ' ' ORDER BY t)
  FROM vms.inspection_plan p, unnest('{2026-11-22 00:00:00, 2026-11-22 12:00:00, 2026-11-22 23:59:59.999}'::timestamp[]) t
 WHERE p.name = '东区巡检'}),
	'loose loose loose', 'a window from 00:00 to 00:00 is the whole day, 23:59 included');
$node->safe_psql('postgres', "SELECT vms.inspection_run_now('东区巡检')");
ok(wait_round(3), 'the third round finishes');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT profile, ',') FROM vms.quality_result WHERE run_id = (SELECT max(id) FROM vms.inspection_run)"),
	'loose', 'the window profile applies');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.quality_result WHERE run_id = (SELECT max(id) FROM vms.inspection_run) AND 'blur' = ANY (abnormal)"),
	'3', 'and its thresholds (every picture fails blur_min = 0.01)');

# supervision
my $pid = $node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'inspector 1'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
wait_ok($node, "SELECT pid IS NOT NULL AND pid <> $pid FROM vms.worker_status WHERE name = 'inspector 1'",
	'a killed inspector comes back');
$node->append_conf('postgresql.conf', "vms.inspect_enabled = off\n");
$node->reload;
wait_ok($node, "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'vms inspector'",
	'vms.inspect_enabled = off + reload stops them');

$node->stop;
$rtsp->kill_kill;
done_testing();
