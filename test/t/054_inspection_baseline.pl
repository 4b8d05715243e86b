# Per-channel baselines (issue 14), on a clip series: a camera whose picture
# is dark every night at 02:30 and bright every afternoon at 14:30 (clips
# made with ffmpeg, each night and day drawn with its own sensor noise,
# diagnosed by vms.diagnose), judged result by result at pinned times in an
# explicit time zone (the test holds on any date, clock and server zone):
# - while a band is learning (fewer than 8 results) the picture's own verdict
#   stands: "too dark" at night;
# - once learnt, the usual night darkness is normal ("usual for this
#   channel"), while the same dark picture in the afternoon band stays an
#   alarm, and a dimmed afternoon picture that the picture check alone finds
#   normal is flagged as a departure ("darker than usual");
# - departures are not learnt; another channel has its own (no) baseline;
# - the inspector's own path (vms._inspection_record) applies it: no
#   brightness alarm for the usual night, one for the departure;
# - vms.inspection_baseline_reset forgets it (22023 for a check that has no
#   baseline).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;

my $tmp = PostgreSQL::Test::Utils::tempdir;

# the scene: a test pattern; nights: exposure x0.15 (too dark for the
# picture check); the dimmed afternoon: x0.45 (normal for the picture check)
sub clip
{
	my ($out, $vf) = @_;
	system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25', '-t', '3',
		'-vf', $vf, '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-g', '25', "$tmp/$out") == 0
	  or die "ffmpeg $out failed";
}
for my $i (1 .. 3)
{
	clip("day$i.mp4", "noise=alls=" . (2 * $i) . ":allf=t:all_seed=$i");
	clip("night$i.mp4", "lutyuv=y='16+(val-16)*0.15',noise=alls=" . (2 * $i) . ":allf=t:all_seed=" . (10 + $i));
}
clip('dim.mp4', "lutyuv=y='16+(val-16)*0.45'");

my $node = vms_node('baseline', 'vms.viid_enabled' => 'off', 'vms.sip_enabled' => 'off', 'vms.inspector_workers' => 0);
my $cam = '34020000001320000001';
my $other = '34020000001320000002';
my $night_cam = '34020000001320000003';    # for the inspector's path: a dark camera
my $day_cam = '34020000001320000004';      # and a bright one
$node->safe_psql('postgres', qq{
INSERT INTO vms.org_unit (name, civil_code) VALUES ('东区分局', '340201');
INSERT INTO vms.device (code, name) VALUES ('34020000001180000001', 'NVR');
INSERT INTO vms.channel (code, device_code, name, civil_code, unit_id)
SELECT code, '34020000001180000001', name, '34020101', (SELECT id FROM vms.org_unit)
  FROM (VALUES ('$cam', '广场'), ('$other', '路口'), ('$night_cam', '夜景'), ('$day_cam', '日景'),
               ('34020000001320000005', '楼'), ('34020000001320000006', '咖啡')) v(code, name);
-- each clip's diagnosis, as the inspector reports it (checks object)
CREATE TABLE clip_result (clip text PRIMARY KEY, checks jsonb NOT NULL);
});
for my $c ((map { ("day$_", "night$_") } 1 .. 3), 'dim')
{
	$node->safe_psql('postgres', qq{
INSERT INTO clip_result
SELECT '$c', jsonb_object_agg(check_name, jsonb_build_object('metric', metric, 'abnormal', abnormal, 'detail', detail))
  FROM vms.diagnose('$tmp/$c.mp4');
});
}
# the picture checks alone: nights too dark, days and the dimmed afternoon not
is($node->safe_psql('postgres',
		"SELECT string_agg(clip || '=' || (checks #>> '{brightness,abnormal}'), ' ' ORDER BY clip) FROM clip_result"),
	'day1=false day2=false day3=false dim=false night1=true night2=true night3=true',
	'picture checks alone: every night too dark, days and the dimmed afternoon normal');
my $day_mean = $node->safe_psql('postgres', "SELECT min((checks #>> '{brightness,metric}')::float8) FROM clip_result WHERE clip LIKE 'day%'");
my $dim_mean = $node->safe_psql('postgres', "SELECT (checks #>> '{brightness,metric}')::float8 FROM clip_result WHERE clip = 'dim'");
cmp_ok($day_mean - $dim_mean, '>=', 35, "the dimmed afternoon ($dim_mean) is far darker than the days (>= $day_mean)");

# judge one result of a channel at a pinned time (Asia/Shanghai wall clock),
# learn from it, and return the brightness verdict: abnormal|verdict|detail
my $tz = "SET TimeZone = 'Asia/Shanghai';";
sub judge
{
	my ($chan, $clip, $at) = @_;
	return $node->safe_psql('postgres', qq{$tz
CREATE TEMP TABLE j AS SELECT vms._inspection_baseline_apply('$chan', '$at', checks) AS c FROM clip_result WHERE clip = '$clip';
CREATE TEMP TABLE l AS SELECT count(*) FROM (SELECT vms._inspection_baseline_learn('$chan', '$at', c) FROM j) x;
SELECT (c #>> '{brightness,abnormal}') || '|' || coalesce(c #>> '{brightness,baseline,verdict}', 'learning') || '|' ||
       (c #>> '{brightness,detail}')
  FROM j;
});
}

# ten nights and ten afternoons; the hour band is the local hour / 3:
# 02:30 -> band 0, 12:00-14:59 -> band 4
my @learning;
for my $d (1 .. 10)
{
	my $n = 1 + $d % 3;
	my $dd = sprintf('2026-11-%02d', $d);
	my $night = judge($cam, "night$n", "$dd 02:30:00+08");
	my $day = judge($cam, "day$n", "$dd 14:30:00+08");
	push @learning, [ $d, $night, $day ];
}
# nights 1-8: learning, the picture's own verdict stands
like($learning[0][1], qr/^true\|learning\|too dark/, 'first night: too dark (nothing learnt yet)');
like($learning[7][1], qr/^true\|learning\|too dark/, 'eighth night: still learning, too dark');
# nights 9 and 10: the band has 8 results, the usual darkness is normal
like($learning[8][1], qr/^false\|usual\|usual for this channel at this hour \(median [0-9.]+ over 8 results\): too dark/,
	'ninth night: usual for this channel at 02:30, normal');
like($learning[9][1], qr/^false\|usual\|/, 'tenth night: normal');
like($learning[9][2], qr/^false\|within\|/, 'tenth afternoon: normal, within its band');
is($node->safe_psql('postgres', "SELECT string_agg(hour_band || ':' || cardinality(recent), ',' ORDER BY hour_band) FROM vms.inspection_baseline WHERE channel_code = '$cam' AND check_name = 'brightness'"),
	'0:10,4:10', 'two bands learnt, ten results each');

# the same dark picture in the afternoon: an alarm (the channel is bright then)
like(judge($cam, 'night1', '2026-11-11 14:30:00+08'), qr/^true\|outside\|too dark/,
	'a normally bright camera gone dark at 14:30: too dark, outside its band');
# a dimmed afternoon the picture check finds normal: a departure
like(judge($cam, 'dim', '2026-11-11 14:10:00+08'),
	qr/^true\|departure\|darker than usual for this channel at this hour \([0-9.]+ against a median of [0-9.]+ over 10 results\): mean luma/,
	'a dimmed afternoon: darker than usual, flagged');
like(judge($cam, 'dim', '2026-11-12 12:40:00+08'), qr/^true\|departure\|/, 'and again the next day: departures are not learnt');
is($node->safe_psql('postgres', "SELECT cardinality(recent) FROM vms.inspection_baseline WHERE channel_code = '$cam' AND check_name = 'brightness' AND hour_band = 4"),
	'10', 'band 4 learnt none of what it found abnormal (the dark afternoon, the departures)');
# another channel has no baseline
like(judge($other, 'night1', '2026-11-12 02:30:00+08'), qr/^true\|learning\|too dark/, 'another channel: its own (empty) history');

# colour, in the inspector's result format ("grey": the picture's median
# chroma); the figures are vqd's on the real corpus (test/corpus/
# make_real_clips.sh, VQD_DEBUG=1 vqd_cli): the building camera, clean:
# offset 1.2-1.4, grey (-4, 2); the same view with a medium blue cast:
# offset 3.1 (the picture check alone finds it normal), grey (14, -21); the
# coffee scene under warm light: offset 13.7 ("grey cast" alone), grey (-30, 42)
my $building = '34020000001320000005';
my $coffee = '34020000001320000006';
sub colour
{
	my ($chan, $at, $metric, $ab, $cb, $cr) = @_;
	my $detail = $ab eq 'true' ? 'grey cast: least coloured pixels' : 'least coloured pixels';
	return $node->safe_psql('postgres', qq{$tz
CREATE TEMP TABLE j AS SELECT vms._inspection_baseline_apply('$chan', '$at',
    jsonb_build_object('stream', jsonb_build_object('metric', 50, 'abnormal', false, 'detail', 'ok'),
                       'color_cast', jsonb_build_object('metric', $metric, 'abnormal', $ab, 'detail', '$detail',
                                                        'grey', jsonb_build_array($cb, $cr)))) AS c;
CREATE TEMP TABLE l AS SELECT count(*) FROM (SELECT vms._inspection_baseline_learn('$chan', '$at', c) FROM j) x;
SELECT (c #>> '{color_cast,abnormal}') || '|' || coalesce(c #>> '{color_cast,baseline,verdict}', 'learning') || '|' ||
       (c #>> '{color_cast,detail}')
  FROM j;
});
}
for my $d (1 .. 8)
{
	my $at = sprintf('2026-11-%02d 10:%02d:00+08', $d, 5 * $d);
	colour($building, $at, 1.2 + ($d % 3) / 10, 'false', -4 - $d % 2, 2 - $d % 2 * 0.5);
	like(colour($coffee, $at, 13.7 - ($d % 3) / 10, 'true', -30 + $d % 2, 42), qr/^true\|learning\|grey cast/,
		"coffee camera, day $d: a cast for the picture check alone (learning)");
}
like(colour($coffee, '2026-11-09 11:20:00+08', 13.6, 'true', -30, 41), qr/^false\|usual\|usual for this channel at this hour/,
	'the warm coffee camera: its usual colour, normal');
like(colour($building, '2026-11-09 11:20:00+08', 1.3, 'false', -4, 2), qr/^false\|within\|/, 'the building camera, clean: normal');
# the band's median by hand: Cb -5, -4 four times each and -4 (the ninth) -> -4; Cr 1.5, 2 four times each and 2 -> 2
like(colour($building, '2026-11-10 09:40:00+08', 3.1, 'false', 14, -21),
	qr/^true\|departure\|colour moved from this channel's usual at this hour \(picture median Cb 14\.0, Cr -21\.0 against -4\.0, 2\.0 over 9 results\): least coloured/,
	'the building camera with a medium blue cast the picture check misses: colour moved, flagged');
like(colour($coffee, '2026-11-10 09:40:00+08', 2.0, 'false', -8, 15), qr/^true\|departure\|colour moved/,
	'the coffee camera gone bluish (less cast by size): colour moved, flagged');

# the inspector's path: _inspection_record applies the baseline of now()'s
# band (whatever the hour; one transaction, so one now()): a dark camera
# and a bright one, learnt there, then one result each
$node->safe_psql('postgres',
	qq{SELECT vms.inspection_plan_add('baseline', '{"channels": ["$night_cam", "$day_cam"]}', 'every 1 h', '{"checks": ["brightness", "color_cast", "noise"]}');
UPDATE vms.inspection_plan SET enabled = false;
INSERT INTO vms.inspection_run (plan_id) SELECT id FROM vms.inspection_plan;
INSERT INTO vms.inspection_task (run_id, plan_id, channel_code, source, state)
SELECT r.id, r.plan_id, c, 'rtsp://camera.invalid/x', 'running' FROM vms.inspection_run r, unnest(ARRAY['$night_cam', '$day_cam']) c;
});
my @rec = split /\n/, $node->safe_psql('postgres', qq{$tz
BEGIN;
DO \$\$ BEGIN
    PERFORM vms._inspection_baseline_learn('$night_cam', now(), checks) FROM clip_result, generate_series(1, 8) WHERE clip = 'night1';
    PERFORM vms._inspection_baseline_learn('$day_cam', now(), checks) FROM clip_result, generate_series(1, 8) WHERE clip = 'day1';
END \$\$;
CREATE TEMP TABLE rec AS
SELECT t.channel_code, vms._inspection_record(t.id, jsonb_build_object('checks', r.checks), NULL) AS id
  FROM vms.inspection_task t JOIN clip_result r ON r.clip = CASE WHEN t.channel_code = '$night_cam' THEN 'night2' ELSE 'dim' END;
COMMIT;
SELECT array_to_string(q.abnormal, ',') || '|' || (q.checks #>> '{brightness,raw_abnormal}')
  FROM vms.quality_result q JOIN rec USING (id) ORDER BY rec.channel_code = '$day_cam';
});
is($rec[0], '|true', 'recorded: the usual dark picture is no alarm (its own verdict kept as raw_abnormal)');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.alarm WHERE code = '$night_cam' AND fault_type = 'brightness'"), '0',
	'no brightness alarm raised');
like($rec[1], qr/^brightness(,[a-z_]+)*\|false$/, 'recorded: the bright camera dimmed, a departure, is an alarm');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.alarm WHERE code = '$day_cam' AND fault_type = 'brightness' AND state = 'open'"), '1',
	'a brightness alarm raised for it');

# reset
my ($rc, $out, $err) = $node->psql('postgres', "SELECT vms.inspection_baseline_reset('$cam', 'blur')");
like($err, qr/check "blur" has no baseline/, 'reset of a check without a baseline: refused');
is($node->safe_psql('postgres', "SELECT vms.inspection_baseline_reset('$cam', 'brightness') > 0"), 't', 'reset one check');
like(judge($cam, 'night1', '2026-11-13 02:30:00+08'), qr/^true\|learning\|too dark/, 'after a reset: learning again, too dark');
is($node->safe_psql('postgres', "SELECT vms.inspection_baseline_reset('$cam') >= 0"), 't', 'reset the channel');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.inspection_baseline WHERE channel_code = '$cam'"), '0', 'nothing left');

$node->stop;
done_testing();
