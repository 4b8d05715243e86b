# District <-> city ledger over PostgreSQL's logical replication (issue 16):
# a city and two districts.  A district's import (and its tags, catalogue,
# checkpoints) appears at the city; a code two districts claim stays with
# the first and the other's row is recorded as a conflict; a city correction
# reaches the district as an override that a device report does not
# overwrite, and its security level too; vms.search_points at the city
# answers across districts under the same permission policy as at the
# district, a district's own security levels (direct, catalogue, tag) acting
# at the city as a floor; a district killed (-m immediate) in the middle of a batched
# import, and the city killed in the middle of another, catch up with
# nothing missing or duplicated, row by row; a correction made while its
# district is down arrives when it is back; a stopped district is reported
# down while the other keeps streaming; vms.availability at the city gives
# a district's channels and devices the district's own figures (its
# platform-wide gaps scoped to it), after a restart and a re-copy too.
use strict;
use warnings;
use utf8;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Encode qw(decode);

# the city's SIP upstream (its share codes for a's channels) keeps its password encrypted
my $key = PostgreSQL::Test::Utils::tempdir . '/secret.key';
{
	open(my $fh, '>', $key) or die;
	print $fh 'k' x 32;
	close $fh;
	chmod 0600, $key;
}
my %node;
for my $n ('city', 'a', 'b')
{
	my $node = PostgreSQL::Test::Cluster->new("cs_$n");
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf',
		"max_logical_replication_workers = 8\nmax_worker_processes = 16\nmax_sync_workers_per_subscription = 2\n"
		  . "wal_retrieve_retry_interval = '500ms'\nwal_receiver_timeout = '20s'\nvms.secret_key_file = '$key'\n");
	$node->start;
	$node->safe_psql('postgres', 'SET client_min_messages = warning; CREATE EXTENSION vms CASCADE');
	$node{$n} = $node;
}
my ($city, $a, $b) = @node{ 'city', 'a', 'b' };
sub sq { my ($node, $sql, @o) = @_; return decode('UTF-8', $node->safe_psql('postgres', $sql, @o)); }
sub wait_for
{
	my ($node, $sql, $expected, $what) = @_;
	ok($node->poll_query_until('postgres', $sql, $expected), $what)
	  or diag("last: " . $node->safe_psql('postgres', $sql));
}

# a CSV import of n channels in the template's keys: district prefix, serial start
sub import_sql
{
	my ($centre, $civil, $from, $n, $label) = @_;
	return "SELECT (vms.ledger_import(convert_to('code,name,device_code,civil_code,longitude,latitude' || E'\\n' || "
	  . "string_agg(format('%s,%s,%s,%s,%s,%s', vms.gbcode_make('$centre', 0, 131, 0, i), '$label' || i, "
	  . "vms.gbcode_make('$centre', 0, 118, 0, 1 + i / 100), '$civil', 116.3 + (i % 1000) * 0.0001, 39.9 + (i / 1000) * 0.0001), E'\\n'), "
	  . "'UTF8'))).loaded_rows FROM generate_series($from, $from + $n - 1) i";
}

# District a has a ledger before the city subscribes: 50 channels, a
# catalogue node listing two, a hierarchical tag, a checkpoint with a lane.
$a->safe_psql('postgres', q{INSERT INTO vms.catalog_node (code, name) VALUES ('11010500002150000001', '朝阳业务分组')});
is(sq($a, import_sql('11010500', '110105', 1, 50, '朝阳点')), '50', 'district a: 50 channels imported');
$a->safe_psql('postgres', q{
	INSERT INTO vms.catalog_member SELECT '11010500002150000001', code FROM vms.channel ORDER BY code LIMIT 2;
	SELECT vms.tag_create('scenario', '校园');
	SELECT vms.tag_create('scenario', '学校门口', '校园');
	SELECT vms.tag_assign(code, 'scenario:学校门口') FROM vms.channel ORDER BY code LIMIT 3;
	INSERT INTO vms.checkpoint (code, name, civil_code) VALUES ('11010500001210000001', '朝阳卡口', '110105');
	INSERT INTO vms.lane (checkpoint_code, lane_no, direction) VALUES ('11010500001210000001', 1, 'up');
	INSERT INTO vms.lane_channel SELECT '11010500001210000001', 1, code FROM vms.channel ORDER BY code LIMIT 1;
});

# wiring: districts publish, the city subscribes, districts follow the city
is($a->safe_psql('postgres', "SELECT vms.cluster_publish('a')"), 'vms_ledger', 'district a publishes');
$b->safe_psql('postgres', "SELECT vms.cluster_publish('b')");
my ($rc, $out, $err) = $a->psql('postgres', "SELECT vms.cluster_publish('other')");
like($err, qr/already district "a"/, 'a district keeps its name');
for my $d ('a', 'b')
{
	my $stmt = $city->safe_psql('postgres',
		"SELECT vms.cluster_subscribe(\$\$" . $node{$d}->connstr('postgres') . "\$\$, '$d')");
	like($stmt, qr/^CREATE SUBSCRIPTION vms_district_$d CONNECTION/, "city: statement to subscribe to $d");
	$city->safe_psql('postgres', $stmt);
	my $follow = $node{$d}->safe_psql('postgres',
		"SELECT vms.cluster_follow(\$\$" . $city->connstr('postgres') . "\$\$)");
	$node{$d}->safe_psql('postgres', $follow);
}
wait_for($city, "SELECT count(*) FROM vms.cluster_status WHERE state = 'streaming'", '2', 'city streams from both districts');
wait_for($a, "SELECT state FROM vms.cluster_status", 'streaming', 'district a streams from the city');

# the initial copy of a's ledger
wait_for($city, "SELECT count(*) FROM vms.channel c JOIN vms.cluster_owner o ON o.kind = 'channel' AND o.code = c.code AND o.district = 'a'",
	'50', "a's 50 channels at the city, owned by a");
wait_for($city, "SELECT count(*) FROM vms.channel_tag ct JOIN vms.tag t ON t.id = ct.tag_id WHERE t.name = '学校门口'", '3', "a's channel tags at the city");
is(sq($city, "SELECT p.name FROM vms.tag t JOIN vms.tag p ON p.id = t.parent_id WHERE t.category = 'scenario' AND t.name = '学校门口'"),
	'校园', 'tag hierarchy kept by name');
wait_for($city, "SELECT count(*) FROM vms.catalog_member WHERE node_code = '11010500002150000001'", '2', 'catalogue members at the city');
wait_for($city, "SELECT count(*) FROM vms.lane_channel l JOIN vms.lane USING (checkpoint_code, lane_no) JOIN vms.checkpoint c ON c.code = l.checkpoint_code",
	'1', 'checkpoint, lane and lane channel at the city');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.ledger_history"), '0', "a's history stays at a");

# an import at b after the subscription streams to the city
is(sq($b, import_sql('11010800', '110108', 1, 30, '海淀点')), '30', 'district b: 30 channels imported');
wait_for($city, "SELECT count(*) FROM vms.cluster_owner WHERE kind = 'channel' AND district = 'b'", '30', "b's import appears at the city");
# online state flows up
$b->safe_psql('postgres', "UPDATE vms.channel SET online = true WHERE code = vms.gbcode_make('11010800', 0, 131, 0, 1)");
wait_for($city, "SELECT online FROM vms.channel WHERE code = vms.gbcode_make('11010800', 0, 131, 0, 1)", 't', 'online state reaches the city');

# b claims a code a owns: a keeps it, b's row is a recorded conflict, b streams on
$b->safe_psql('postgres', q{
	INSERT INTO vms.device (code, name) VALUES ('11010500001180000001', 'b的设备');
	INSERT INTO vms.channel (code, device_code, name) VALUES (vms.gbcode_make('11010500', 0, 131, 0, 1), '11010500001180000001', 'b抢的编码');
	INSERT INTO vms.channel (code, device_code, name) VALUES (vms.gbcode_make('11010800', 0, 131, 0, 999), '11010500001180000001', 'b的后续');
});
wait_for($city, "SELECT count(*) FROM vms.channel WHERE code = vms.gbcode_make('11010800', 0, 131, 0, 999)", '1', 'b streams on after a conflict');
is(sq($city, "SELECT name FROM vms.channel WHERE code = vms.gbcode_make('11010500', 0, 131, 0, 1)"), '朝阳点1', "a's row kept");
is(sq($city, "SELECT string_agg(table_name || ':' || owner, ',' ORDER BY table_name) FROM vms.cluster_conflict WHERE district = 'b' AND op = 'INSERT'"),
	'channel:a,device:a', "b's claims recorded as conflicts with owner a");
# the device code was a's too (a's import made 11010500001180000001)
is($city->safe_psql('postgres', "SELECT district FROM vms.cluster_owner WHERE kind = 'device' AND code = '11010500001180000001'"), 'a', 'device stays with a');

# the city may not edit a district's row itself
($rc, $out, $err) = $city->psql('postgres', "UPDATE vms.channel SET name = 'x' WHERE code = vms.gbcode_make('11010500', 0, 131, 0, 2)");
like($err, qr/belongs to district a/, 'city edit of a district row refused');
# the refusal is a superuser's setting: a session may not switch it off, not
# even by setting the name before the library defines it
$city->safe_psql('postgres', 'CREATE ROLE regress_city_editor LOGIN IN ROLE vms_analyst');
($rc, $out, $err) = $city->psql('postgres', "SET vms.cluster_city = off; SELECT vms.cluster_is_city()",
	extra_params => ['-U', 'regress_city_editor']);
is($out, 't', 'a session setting vms.cluster_city = off still runs the guards');
like($err, qr/permission denied to set parameter "vms.cluster_city"/, 'and is told it may not set it');
($rc, $out, $err) = $city->psql('postgres', "SELECT vms.cluster_is_city(); SET vms.cluster_city = off",
	extra_params => ['-U', 'regress_city_editor']);
like($err, qr/permission denied to set parameter "vms.cluster_city"/, 'once the library is loaded the setting is refused outright');

# corrections flow down as overrides with the district's history
my $c1 = "vms.gbcode_make('11010500', 0, 131, 0, 1)";
my $c2 = "vms.gbcode_make('11010500', 0, 131, 0, 2)";
is($city->safe_psql('postgres', "SELECT vms.cluster_correct('channel', $c1, 'name', '\"朝阳区建国路001\"', '市命名规则')"), 'a', 'correction routed to a');
$city->safe_psql('postgres', "SELECT vms.cluster_correct('security_level', $c2, 'level', '3', '重点部位')");
wait_for($a, "SELECT name = '朝阳区建国路001' AND overridden @> '{name}' FROM vms.channel WHERE code = $c1", 't', 'correction applied at a as an override');
is(sq($a, "SELECT reason FROM vms.ledger_history WHERE code = $c1 AND op = 'UPDATE' ORDER BY id DESC LIMIT 1"),
	'city correction by ' . $city->safe_psql('postgres', 'SELECT session_user') . ': 市命名规则', "a's history records the city's correction");
wait_for($a, "SELECT vms.channel_security_level($c2)", '3', 'security level applied at a');
is($a->safe_psql('postgres', "SELECT applied FROM vms.cluster_correction WHERE code = $c2"), 'applied', 'outcome noted at a');
$a->safe_psql('postgres', "SELECT vms.channel_apply_report($c1, '11010500001180000001', '{\"name\": \"IPC报的名字\", \"azimuth\": 45}')");
is(sq($a, "SELECT name || ' ' || azimuth FROM vms.channel WHERE code = $c1"), '朝阳区建国路001 45', 'a device report does not overwrite the correction');
wait_for($city, "SELECT district_shows_it FROM vms.cluster_correction_state WHERE code = $c1", 't', 'the corrected row flows back to the city');
wait_for($city, "SELECT azimuth FROM vms.channel WHERE code = $c1", '45', 'and the report-driven change too');

# naming patterns flow down and win for their prefix
$a->safe_psql('postgres', "INSERT INTO vms.naming_pattern (civil_prefix, pattern) VALUES ('110105', '^a')");
$city->safe_psql('postgres', "INSERT INTO vms.naming_pattern (civil_prefix, pattern, example) VALUES ('110105', '^朝阳', '朝阳1')");
wait_for($a, "SELECT pattern = '^朝阳' FROM vms.naming_pattern WHERE civil_prefix = '110105'", 't', "the city's naming pattern replaces a's");

# city-wide search under the same permission policy as at the district: a
# role granted a's region at level 2 sees a's channels except the level-3
# one, and nothing of b's; the same grant at a gives the same rows
for my $n ($city, $a)
{
	$n->safe_psql('postgres', "CREATE ROLE ana LOGIN IN ROLE vms_analyst; CREATE ROLE gadmin LOGIN IN ROLE vms_grant_admin");
	$n->safe_psql('postgres', "SELECT vms.grant_access('ana', 'region', '110105', '{view_live}', 2::smallint)",
		extra_params => [ '-U', 'gadmin' ]);
}
my $search = "SELECT string_agg(code::text, ',' ORDER BY code) FROM vms.search_points('{}', 10000)";
my $at_city = $city->safe_psql('postgres', $search, extra_params => [ '-U', 'ana' ]);
my $at_a = $a->safe_psql('postgres', $search, extra_params => [ '-U', 'ana' ]);
my @seen = split /,/, $at_city;
is(scalar(@seen), 49, 'city search: 49 of a\'s 50 channels (the level-3 one hidden)');
is($at_city, $at_a, 'city search returns exactly what the same grant returns at a');
ok(!grep({ /^110108/ } @seen), "no channel of b's");
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.search_points('{}', 10000)"), '81', 'a superuser at the city sees both districts');

# a district's own security levels act at the city as a floor: at a, channel
# 10 at level 4 directly, channel 11 through a catalogue subtree (level on
# the parent node, the channel listed under its child), channel 12 through a
# tag subtree (level on the parent tag, whose id differs at the city: tags
# travel by category and name).  b's levels for a's code and a's catalogue
# node do nothing at the city.  A level-1 grant over a's region at the city
# does not see them, a level-4 grant does, and each grant's search returns
# at the city exactly what it returns at a.
my ($l10, $l11, $l12, $l13) = map { "vms.gbcode_make('11010500', 0, 131, 0, $_)" } (10, 11, 12, 13);
$city->safe_psql('postgres', "SELECT vms.tag_create('scenario', '市局自有' || g) FROM generate_series(1, 3) g");
for my $n ($city, $a)
{
	$n->safe_psql('postgres', "CREATE ROLE low LOGIN IN ROLE vms_analyst; CREATE ROLE high LOGIN IN ROLE vms_analyst");
	$n->safe_psql('postgres', "SELECT vms.grant_access('low', 'region', '110105', '{view_live}', 1::smallint);
		SELECT vms.grant_access('high', 'region', '110105', '{view_live}', 4::smallint)", extra_params => [ '-U', 'gadmin' ]);
}
# a session at the city that stays open across the change: its compiled policy must be dropped
my $watch = $city->background_psql('postgres', extra_params => [ '-U', 'low' ]);
my $lvl = "SELECT count(*) FROM vms.search_points('{}', 10000) WHERE code IN ($l10, $l11, $l12)";
is($watch->query_safe($lvl), '3', 'before: a level-1 grant at the city sees channels 10, 11, 12');
$a->safe_psql('postgres', qq{
	INSERT INTO vms.catalog_node (code, name) VALUES ('11010500002150000002', '要害部位');
	INSERT INTO vms.catalog_node (code, name, parent_code) VALUES ('11010500002160000003', '机要室', '11010500002150000002');
	INSERT INTO vms.catalog_member VALUES ('11010500002160000003', $l11);
	SELECT vms.tag_create('scenario', '要害');
	SELECT vms.tag_create('scenario', '机要', '要害');
	SELECT vms.tag_assign($l12, 'scenario:机要');
	INSERT INTO vms.security_assignment (scope_kind, scope_ref, level) VALUES
		('channel', $l10, 4), ('catalog', '11010500002150000002', 4),
		('tag', (SELECT id FROM vms.tag WHERE category = 'scenario' AND name = '要害')::text, 4);
});
$b->safe_psql('postgres', qq{
	INSERT INTO vms.security_assignment (scope_kind, scope_ref, level) VALUES
		('channel', $l13, 4), ('catalog', '11010500002150000001', 4);
});
my $levels = "SELECT concat_ws(',', vms.channel_security_level($l10), vms.channel_security_level($l11), vms.channel_security_level($l12))";
is($a->safe_psql('postgres', $levels), '4,4,4', 'at a: channels 10, 11, 12 at level 4 (direct, catalogue, tag)');
wait_for($city, $levels, '4,4,4', "a's levels reach the city: 10, 11, 12 at level 4");
wait_for($city, "SELECT count(*) FROM vms.cluster_security_assignment WHERE district = 'b'", '2', "b's levels reached the city too");
isnt(sq($city, "SELECT id FROM vms.tag WHERE category = 'scenario' AND name = '要害'"),
	sq($a, "SELECT id FROM vms.tag WHERE category = 'scenario' AND name = '要害'"), 'the tag has another id at the city');
is($city->safe_psql('postgres', "SELECT vms.channel_security_level($l13) || ',' || count(*) FROM vms.catalog_member m
	WHERE m.node_code = '11010500002150000001' AND vms.channel_security_level(m.channel_code) = 4"),
	'1,0', "b's levels for a's channel code and a's catalogue node do nothing to a's channels at the city");
is($watch->query_safe($lvl), '0', 'an open session at the city with a level-1 grant no longer sees them');
$watch->quit;
my $mine = "SELECT string_agg(code::text, ',' ORDER BY code) FROM vms.search_points('{}', 10000) WHERE code IN ($l10, $l11, $l12, $l13)";
is($city->safe_psql('postgres', $mine, extra_params => [ '-U', 'low' ]), $city->safe_psql('postgres', "SELECT $l13"),
	'city, level-1 grant: of channels 10-13 only 13');
is($city->safe_psql('postgres', $mine, extra_params => [ '-U', 'high' ]),
	$city->safe_psql('postgres', "SELECT concat_ws(',', $l10, $l11, $l12, $l13)"), 'city, level-4 grant: all four');
for my $who ('low', 'ana', 'high')
{
	is($city->safe_psql('postgres', $search, extra_params => [ '-U', $who ]),
		$a->safe_psql('postgres', $search, extra_params => [ '-U', $who ]), "the same search as $who at the city and at a");
}
is($city->safe_psql('postgres', "SELECT vms.can('view_live', $l12)", extra_params => [ '-U', 'low' ]), 'f', 'vms.can at the city follows a\'s level too');
# lowered at a, lowered at the city
$a->safe_psql('postgres', qq{
	UPDATE vms.security_assignment SET level = 1 WHERE scope_kind = 'tag';
	DELETE FROM vms.security_assignment WHERE scope_kind = 'channel' AND scope_ref = (${l10})::text;
});
wait_for($city, $levels, '1,4,1', 'lowered at a, lowered at the city (10 and 12 back to level 1)');
is($city->safe_psql('postgres', $mine, extra_params => [ '-U', 'low' ]),
	$city->safe_psql('postgres', "SELECT concat_ws(',', $l10, $l12, $l13)"), 'city, level-1 grant: 10 and 12 seen again');
is($city->safe_psql('postgres', $search, extra_params => [ '-U', 'low' ]),
	$a->safe_psql('postgres', $search, extra_params => [ '-U', 'low' ]), 'and still the same search as at a');

# city-wide availability: a's and b's device events, catalog status events
# and unknown gaps stay at the districts; their kept runs and gaps go up, so
# vms.availability at the city gives, for a district's channels and devices,
# the figures the district gives itself.  a's platform-wide gap (device
# NULL) makes a's devices unknown at the city, never b's.
my ($dA, $dB) = ("vms.gbcode_make('11010500', 0, 118, 0, 1)", "vms.gbcode_make('11010800', 0, 118, 0, 1)");
my $c5 = "vms.gbcode_make('11010500', 0, 131, 0, 5)";
$a->safe_psql('postgres', qq{
	INSERT INTO vms.device_event (device_code, at, event) VALUES
		($dA, '2020-03-01 00:00+00', 'online'), ($dA, '2020-03-01 06:00+00', 'offline'), ($dA, '2020-03-01 08:00+00', 'online');
	INSERT INTO vms.channel_status_event (code, at, status) VALUES ($c5, '2020-03-01 10:00+00', 'OFF'), ($c5, '2020-03-01 11:00+00', 'ON');
	SELECT vms.availability_gap_add('2020-03-01 12:00+00', '2020-03-01 13:00+00', 'a的平台停机');
});
$b->safe_psql('postgres', "INSERT INTO vms.device_event (device_code, at, event) VALUES ($dB, '2020-02-29 00:00+00', 'online')");
my $day = "'2020-03-01 00:00+00', '2020-03-02 00:00+00'";
sub avail
{
	my ($node, $by, $prefix) = @_;
	return sq($node, "SELECT string_agg(concat_ws('|', group_key, online_ratio, offline_seconds, offline_events, online_seconds, unknown_seconds, members), E'\\n' ORDER BY group_key)
		FROM vms.availability($day, '$by') WHERE group_key LIKE '$prefix%'
		 AND group_key <> vms.gbcode_make('11010800', 0, 131, 0, 999)::text");   # b's channel under a's device code
}
sub avail_same
{
	my ($what) = @_;
	for my $d ([ $a, '110105' ], [ $b, '110108' ])
	{
		my ($node, $p) = @$d;
		for my $by ('channel', 'device')
		{
			my $there = avail($node, $by, $p);
			isnt($there, '', "$what: $p has availability by $by");
			is(avail($city, $by, $p), $there, "$what: availability by $by at the city equals $p\'s own");
		}
	}
}
wait_for($city, "SELECT count(*) FROM vms.cluster_availability_gap WHERE district = 'a'", '1', "a's gap reaches the city");
wait_for($city, "SELECT count(*) FROM vms.availability_run r JOIN vms.cluster_owner o ON o.code = r.code AND o.district = 'b'", '1', "b's runs reach the city");
wait_for($city, "SELECT count(*) FROM vms.availability_run", $a->safe_psql('postgres', "SELECT count(*) FROM vms.availability_run") + 1, "a's runs reach the city");
avail_same('streaming');
# by hand: device 1 of a online 00-06, offline 06-08, online 08-24 less a's
# gap 12-13; channel 5 also catalog OFF 10-11 (offline while its device is online)
is(sq($city, "SELECT concat_ws('|', offline_seconds, offline_events, online_seconds, unknown_seconds) FROM vms.availability($day, 'channel') WHERE group_key = ($c5)::text"),
	'10800|2|72000|3600', 'city, channel 5 of a: 3 h offline in 2 outages, 20 h online, 1 h unknown (hand-computed)');
is(sq($city, "SELECT concat_ws('|', offline_seconds, online_seconds, unknown_seconds) FROM vms.availability($day, 'device') WHERE group_key = ($dA)::text"),
	'7200|75600|3600', 'city, device 1 of a: 2 h offline, 21 h online, 1 h unknown');
is(sq($city, "SELECT concat_ws('|', online_ratio, offline_seconds, online_seconds, unknown_seconds) FROM vms.availability($day, 'device') WHERE group_key = ($dB)::text"),
	'1|0|86400|0', "city, b's device: online all day, a's platform-wide gap does not touch it");
$city->safe_psql('postgres', "SELECT vms.availability_gap_add('2020-03-01 18:00+00', '2020-03-01 19:00+00', '市平台停机')");
is(sq($city, "SELECT unknown_seconds FROM vms.availability($day, 'device') WHERE group_key = ($dB)::text"), '0',
	"nor does the city's own platform-wide gap (b's devices are kept alive by b)");
$city->safe_psql('postgres', "SELECT vms.availability_rebuild()");
avail_same('after a rebuild at the city');
# the city records events of its own for a's device and channel (it
# inspects a district's channels, a district cascades to it over SIP): a's
# replicated runs stay a's, and a's later changes to them still apply
my $arun = "SELECT string_agg(concat_ws('|', r.source, r.code, r.from_ts, r.to_ts, r.up), ',' ORDER BY r.source, r.code, r.from_ts) FROM vms.availability_run r";
$city->safe_psql('postgres', qq{
	INSERT INTO vms.device_event (device_code, at, event) VALUES ($dA, '2020-03-01 15:00+00', 'offline');
	INSERT INTO vms.channel_status_event (code, at, status) VALUES ($c5, '2020-03-01 16:00+00', 'OFF');
});
is(sq($city, "$arun WHERE r.code IN ($dA, $c5)"), sq($a, "$arun WHERE r.code IN ($dA, $c5)"),
	"city's own events for a's device and channel: a's runs at the city unchanged");
avail_same("after the city recorded events for a's device and channel");
# a run b publishes for a code no one owns yet is taken (tables are first
# copied in parallel), but once a claims the code only a's runs count there:
# b's go, and b's later changes to them are conflicts
my $dX = "vms.gbcode_make('11010500', 0, 118, 0, 77)";
my $xdev = "SELECT concat_ws('|', offline_seconds, offline_events, online_seconds) FROM vms.availability($day, 'device') WHERE group_key = ($dX)::text";
$b->safe_psql('postgres', "INSERT INTO vms.device_event (device_code, at, event) VALUES ($dX, '2020-02-29 12:00+00', 'offline')");
wait_for($city, "SELECT count(*) FROM vms.availability_run WHERE code = $dX AND district = 'b'", '1', "b's run for a code no one owns reaches the city");
$a->safe_psql('postgres', qq{
	INSERT INTO vms.device (code, name) VALUES ($dX, 'a的新设备');
	INSERT INTO vms.device_event (device_code, at, event) VALUES ($dX, '2020-03-01 06:00+00', 'online');
});
wait_for($city, "SELECT count(*) FROM vms.availability_run WHERE code = $dX AND district = 'a'", '1', "a's device and its run reach the city");
is($city->safe_psql('postgres', "SELECT district FROM vms.cluster_owner WHERE kind = 'device' AND code = $dX"), 'a', 'a claims the code');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.availability_run WHERE code = $dX AND district IS DISTINCT FROM 'a'"), '0',
	"b's run for it is gone at the city");
is(sq($city, $xdev), '0|0|61200', "city: a's device online 06-24 less a's gap 12-13 (17 h), b's offline run not counted");
is(sq($city, $xdev), sq($a, $xdev), "and that is a's own figure");
my $nconf = $city->safe_psql('postgres', "SELECT count(*) FROM vms.cluster_conflict WHERE district = 'b' AND table_name = 'availability_run'");
$b->safe_psql('postgres', "INSERT INTO vms.device_event (device_code, at, event) VALUES ($dX, '2020-03-01 03:00+00', 'online')");
wait_for($city, "SELECT count(*) > $nconf FROM vms.cluster_conflict WHERE district = 'b' AND table_name = 'availability_run'", 't',
	"b's later change to its run for a's code is a recorded conflict");
is(sq($city, $xdev), sq($a, $xdev), "a's device keeps a's figure at the city");
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.availability_run WHERE code = $dX AND district IS DISTINCT FROM 'a'"), '0',
	"and no run of b's for it");

# district a killed in the middle of a batched import (80 transactions of
# 250 rows); the city catches up; row by row nothing missing or duplicated.
# A correction made while a is down arrives after.
my $batches = "DO \$\$ BEGIN FOR b IN 0..79 LOOP PERFORM (" . import_sql('11010500', '110105', 'b * 250 + 1000', 250, '批量') . "); COMMIT; END LOOP; END \$\$";
$batches =~ s/FROM generate_series\(b \* 250 \+ 1000, b \* 250 \+ 1000 \+ 250 - 1\) i/FROM generate_series(b * 250 + 1000, b * 250 + 1249) i/;
my ($bo, $be) = ('', '');
my $h = IPC::Run::start([ 'psql', '-XAtq', '-d', $a->connstr('postgres'), '-c', 'SET client_min_messages = warning', '-c', $batches ], '>', \$bo, '2>', \$be);
wait_for($city, "SELECT count(*) >= 1500 FROM vms.cluster_owner WHERE district = 'a' AND kind = 'channel' AND code::text LIKE '110105%'",
	't', 'the import is streaming to the city');
$a->stop('immediate');
$h->finish;
my $c3 = "vms.gbcode_make('11010500', 0, 131, 0, 3)";
$city->safe_psql('postgres', "SELECT vms.cluster_correct('channel', $c3, 'address', '\"建国路3号\"', '地址核实')");
wait_for($city, "SELECT state <> 'streaming' FROM vms.cluster_status WHERE peer = 'a'", 't', 'the city reports a not streaming while it is down');
$a->start;
my $total = $a->safe_psql('postgres', "SELECT count(*) FROM vms.channel");
cmp_ok($total, '>', 1500, "a committed part of the import before the crash ($total channels)");
cmp_ok($total, '<', 20050, 'and not all of it');
my $rows = "SELECT string_agg(concat_ws('|', c.code, c.name, c.device_code, c.civil_code, ST_AsEWKT(c.geom), c.online, c.overridden, c.updated_at), E'\\n' ORDER BY c.code) FROM vms.channel c";
wait_for($city, "SELECT count(*) FROM vms.cluster_owner WHERE district = 'a' AND kind = 'channel'", $total, 'city caught up with a');
wait_for($a, "SELECT address = '建国路3号' FROM vms.channel WHERE code = $c3", 't', 'the correction made while a was down arrived');
wait_for($city, "SELECT district_shows_it FROM vms.cluster_correction_state WHERE code = $c3", 't', 'and came back up');
is(sq($city, "$rows JOIN vms.cluster_owner o ON o.kind = 'channel' AND o.code = c.code AND o.district = 'a'"), sq($a, $rows),
	"a's channels at the city equal a's, row by row");
is(sq($city, "SELECT string_agg(concat_ws('|', d.code, d.name, d.updated_at), ',' ORDER BY d.code) FROM vms.device d JOIN vms.cluster_owner o ON o.kind = 'device' AND o.code = d.code AND o.district = 'a'"),
	sq($a, "SELECT string_agg(concat_ws('|', d.code, d.name, d.updated_at), ',' ORDER BY d.code) FROM vms.device d"), "a's devices too");
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.cluster_conflict WHERE district = 'a'"), '0', 'no conflict recorded for a');
# after a's crash and restart: new events and a gap at a go up too
$a->safe_psql('postgres', qq{
	INSERT INTO vms.device_event (device_code, at, event) VALUES ($dA, '2020-03-01 20:00+00', 'offline');
	SELECT vms.availability_gap_add('2020-03-01 21:00+00', '2020-03-01 21:30+00', '重启后的停机', $dA);
});
wait_for($city, "SELECT count(*) FROM vms.cluster_availability_gap WHERE district = 'a'", '2', "a's gap after its restart reaches the city");
wait_for($city, "SELECT offline_seconds FROM vms.availability($day, 'device') WHERE group_key = ($dA)::text", 7200 + 4 * 3600 - 1800,
	"a's event after its restart reaches the city");
avail_same('after a restarted');

# re-seeding: the city's subscription to a dropped and made again; the first
# copy sends every row again and replaces the city's copies, nothing doubles
$city->safe_psql('postgres', 'DROP SUBSCRIPTION vms_district_a');
$city->safe_psql('postgres',
	$city->safe_psql('postgres', "SELECT vms.cluster_subscribe(\$\$" . $a->connstr('postgres') . "\$\$, 'a')"));
wait_for($city, "SELECT state FROM vms.cluster_status WHERE peer = 'a'", 'streaming', 'a subscribed again, first copy done');
is(sq($city, "$rows JOIN vms.cluster_owner o ON o.kind = 'channel' AND o.code = c.code AND o.district = 'a'"), sq($a, $rows),
	"after the second copy a's channels at the city still equal a's");
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel_tag ct JOIN vms.tag t ON t.id = ct.tag_id WHERE t.name = '学校门口'")
	  . '/' . $city->safe_psql('postgres', "SELECT count(*) FROM vms.catalog_member") . '/' . $city->safe_psql('postgres', "SELECT count(*) FROM vms.lane_channel"),
	'3/3/1', 'tags, catalogue members and lane channels not doubled');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.cluster_security_assignment WHERE district = 'a'"),
	$a->safe_psql('postgres', "SELECT count(*) FROM vms.security_assignment"), "nor a's security levels");
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.cluster_conflict WHERE district = 'a'"), '0', 'and no conflict recorded for a');
avail_same('after a second first copy of a');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.availability_run r JOIN vms.cluster_owner o ON o.code = r.code AND o.district = 'a'"),
	$a->safe_psql('postgres', "SELECT count(*) FROM vms.availability_run"), "a's runs not doubled");

# the city killed in the middle of b's batched import; b's rows arrive once
my $bbatches = $batches;
$bbatches =~ s/11010500/11010800/g;
$bbatches =~ s/110105/110108/g;
$h = IPC::Run::start([ 'psql', '-XAtq', '-d', $b->connstr('postgres'), '-c', 'SET client_min_messages = warning', '-c', $bbatches ], '>', \$bo, '2>', \$be);
wait_for($city, "SELECT count(*) >= 1000 FROM vms.cluster_owner WHERE district = 'b' AND kind = 'channel'", 't', "b's import is streaming to the city");
$city->stop('immediate');
$city->start;
ok($h->finish, "b's import finished while the city restarted") or diag($be);
$total = $b->safe_psql('postgres', "SELECT count(*) FROM vms.channel");
wait_for($city, "SELECT count(*) FROM vms.cluster_owner WHERE district = 'b' AND kind = 'channel'", $total - 1, 'city caught up with b after its crash (all but the code a owns)');
is(sq($city, "$rows JOIN vms.cluster_owner o ON o.kind = 'channel' AND o.code = c.code AND o.district = 'b'"),
	sq($b, "$rows WHERE c.code <> vms.gbcode_make('11010500', 0, 131, 0, 1)"), "b's channels at the city equal b's (less the code a owns), row by row");

# a district's mass delete: a deletes the channels of its batched import
# that have serials 1000-5999 (those its batches committed before it was
# killed, 100 of them online) in one statement.  The city lets go of exactly those (rows and
# claims), its map cells count them out once at every level 6-18 (buffered
# by the apply worker and folded at commit: fewer rows appended than
# channels deleted, not 13 a channel), a's remaining channels still equal
# a's row by row; b deleting its own row under a code a owns is a recorded
# conflict and a's row stays.
my $del = "code BETWEEN vms.gbcode_make('11010500', 0, 131, 0, 1000) AND vms.gbcode_make('11010500', 0, 131, 0, 5999)";
$a->safe_psql('postgres', "UPDATE vms.channel SET online = true WHERE $del AND code < vms.gbcode_make('11010500', 0, 131, 0, 1100)");
wait_for($city, "SELECT count(*) FROM vms.channel WHERE $del AND online", '100', "100 of a's channels to delete are online at the city");
my $ndel = $a->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE $del");
cmp_ok($ndel, '>=', 1000, "a has $ndel channels to delete");
# The city's own rows under a's channels, two to be deleted (d1, d2) and
# one kept ($c2): a share code to an upper platform, a city tag, a status,
# a member of a city catalogue node, a governance task, a recording plan;
# and two tables of the city's own with other actions: a note whose channel
# is SET NULL, a hold that RESTRICTs.  The apply worker's replica mode fires
# none of these foreign keys' actions; the city must end up with what an
# ordinary DELETE would leave.
my ($d1, $d2) = split /\n/, $city->safe_psql('postgres', "SELECT code FROM vms.channel WHERE $del ORDER BY code LIMIT 2");
my $k1 = $city->safe_psql('postgres', "SELECT code FROM vms.channel WHERE code = $c2");
my $ours = "'$d1', '$d2', '$k1'";
$city->safe_psql('postgres', qq{
	SELECT vms.sip_add_upstream('prov', '10.0.0.9', 5060, '11000000002000000001', 'pw');
	INSERT INTO vms.sip_share_code (upstream, channel_code, custom_name) SELECT 'prov', c, '市共享' FROM unnest(ARRAY[$ours]::vms.gbcode[]) c;
	SELECT vms.tag_create('scenario', '市重点');
	SELECT vms.tag_assign(c, 'scenario:市重点') FROM unnest(ARRAY[$ours]::vms.gbcode[]) c;
	INSERT INTO vms.channel_status (code, status) SELECT c, 'ON' FROM unnest(ARRAY[$ours]::vms.gbcode[]) c;
	INSERT INTO vms.catalog_node (code, name) VALUES ('11000000002150000001', '市级分组');
	INSERT INTO vms.catalog_member SELECT '11000000002150000001', c FROM unnest(ARRAY[$ours]::vms.gbcode[]) c;
	INSERT INTO vms.governance_task (channel_code, rule_code, severity) SELECT c, 'required_fields', 2 FROM unnest(ARRAY[$ours]::vms.gbcode[]) c;
	INSERT INTO vms.recording_plan (channel_code, weekday, start_time, end_time) SELECT c, 1, '08:00', '18:00' FROM unnest(ARRAY[$ours]::vms.gbcode[]) c;
	CREATE TABLE public.city_note (id int PRIMARY KEY, channel_code vms.gbcode REFERENCES vms.channel (code) ON DELETE SET NULL);
	INSERT INTO public.city_note VALUES (1, '$d1'), (2, '$k1');
	CREATE TABLE public.city_hold (channel_code vms.gbcode REFERENCES vms.channel (code) ON DELETE RESTRICT);
	INSERT INTO public.city_hold VALUES ('$d2');
});
my $city_children = "SELECT concat_ws(',', (SELECT count(*) FROM vms.sip_share_code WHERE channel_code = x.c),
	(SELECT count(*) FROM vms.channel_tag ct JOIN vms.tag t ON t.id = ct.tag_id WHERE ct.channel_code = x.c AND t.name = '市重点'),
	(SELECT count(*) FROM vms.channel_status WHERE code = x.c),
	(SELECT count(*) FROM vms.catalog_member WHERE channel_code = x.c AND node_code = '11000000002150000001'),
	(SELECT count(*) FROM vms.governance_task WHERE channel_code = x.c),
	(SELECT count(*) FROM vms.recording_plan WHERE channel_code = x.c),
	(SELECT count(*) FROM public.city_note WHERE channel_code = x.c),
	(SELECT count(*) FROM public.city_hold WHERE channel_code = x.c)) FROM (SELECT 'CODE'::vms.gbcode) x (c)";
sub city_children { my $c = shift; (my $q = $city_children) =~ s/CODE/$c/; return $city->safe_psql('postgres', $q); }
is(city_children($d1) . ' ' . city_children($d2) . ' ' . city_children($k1), '1,1,1,1,1,1,1,0 1,1,1,1,1,1,0,1 1,1,1,1,1,1,1,0',
	"the city's own rows under two of a's channels to delete and one to keep");
my $cell_totals = "SELECT string_agg(DISTINCT concat_ws('/', n, n_online), ',') FROM (SELECT level, sum(n) n, sum(n_online) n_online FROM
	(SELECT level, n, n_online FROM vms.channel_cluster UNION ALL SELECT level, n, n_online FROM vms.channel_cluster_delta) x GROUP BY level) l";
my $located = "SELECT concat_ws('/', count(*), count(*) FILTER (WHERE online)) FROM vms.channel WHERE geom_3857 IS NOT NULL";
my ($cells_n, $cells_on) = split m{/}, $city->safe_psql('postgres', $cell_totals);
# No fold of the cells may consume delta rows while they are counted (the
# 'map clusters' schedule runs vms.channel_clusters_refresh every five
# minutes, which would make the count below pass without the buffering):
# every fold takes this lock first, and a session holds it until the count.
my $nofold = $city->background_psql('postgres');
$nofold->query_safe("SELECT pg_advisory_lock(hashtext('vms.channel_clusters_refresh'))");
is($city->safe_psql('postgres', "SELECT pg_try_advisory_xact_lock(hashtext('vms.channel_clusters_refresh'))"), 'f',
	'no fold of the map cells can run until the delete is counted');
my $delta_before = $city->safe_psql('postgres', "SELECT count(*) FROM vms.channel_cluster_delta");
is($a->safe_psql('postgres', "WITH d AS (DELETE FROM vms.channel WHERE $del RETURNING 1) SELECT count(*) FROM d"), $ndel, "a deletes them at once");
$b->safe_psql('postgres', "DELETE FROM vms.channel WHERE code = $c1");
wait_for($city, "SELECT count(*) FROM vms.channel WHERE $del", '0', "a's mass delete reaches the city");
wait_for($city, "SELECT count(*) FROM vms.cluster_conflict WHERE district = 'b' AND op = 'DELETE' AND table_name = 'channel' AND owner = 'a' AND code = ($c1)::text",
	'1', "b's delete of a's code recorded as a conflict");
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.cluster_owner WHERE kind = 'channel' AND $del"), '0', 'their claims are gone');
is(sq($city, "SELECT name FROM vms.channel WHERE code = $c1"), '朝阳区建国路001', "a's row under the code b deleted stays");
is(sq($city, "$rows JOIN vms.cluster_owner o ON o.kind = 'channel' AND o.code = c.code AND o.district = 'a'"), sq($a, $rows),
	"a's remaining channels at the city equal a's, row by row");
is($city->safe_psql('postgres', $cell_totals), ($cells_n - $ndel) . '/' . ($cells_on - 100), 'the map cells count them out once at every level, 100 of them online');
is($city->safe_psql('postgres', $cell_totals), $city->safe_psql('postgres', $located), 'and count what the city has');
cmp_ok($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel_cluster_delta") - $delta_before, '<', $ndel,
	'folded per cell at commit, not appended a channel at a time');
$nofold->quit;
# the city's own rows under the deleted channels went as the foreign keys
# say (cascade, set null), the restricting one is kept and recorded, and
# those of the channel a kept are untouched
$a->wait_for_catchup('vms_district_a');
is(city_children($d1) . ' ' . city_children($d2) . ' ' . city_children($k1), '0,0,0,0,0,0,0,0 0,0,0,0,0,0,0,1 1,1,1,1,1,1,1,0',
	"the city's own rows under a's deleted channels are gone as their foreign keys say; the kept channel's stay");
is($city->safe_psql('postgres', "SELECT count(*) FROM public.city_note WHERE id = 1 AND channel_code IS NULL"), '1', 'ON DELETE SET NULL: the note stays, without its channel');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.cluster_conflict WHERE district = 'a' AND op = 'DELETE' AND table_name LIKE '%city_hold' AND code = '$d2'"),
	'1', 'ON DELETE RESTRICT: the hold is kept and recorded as a conflict (the district\'s delete cannot be refused)');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.cluster_conflict WHERE district = 'a' AND NOT table_name LIKE '%city_hold'"), '0',
	'nothing else recorded for a');

# a deletes a device: its channels go by a's own cascade (replicated); at
# the city a channel of the city's own under that device goes too (cascade),
# with the rows under it (a second level: its share code), and the city's
# rows under a's channel
my $dv = "vms.gbcode_make('11010500', 0, 118, 0, 5000)";
my $cv = "vms.gbcode_make('11010500', 0, 131, 0, 800001)";
my $cc = "'11000000001310000099'";
$a->safe_psql('postgres', "INSERT INTO vms.device (code, name) VALUES ($dv, '待拆设备'); INSERT INTO vms.channel (code, device_code, name) VALUES ($cv, $dv, '待拆通道')");
wait_for($city, "SELECT count(*) FROM vms.channel WHERE code = $cv", '1', "a's new device and channel at the city");
$city->safe_psql('postgres', qq{
	INSERT INTO vms.channel (code, device_code, name) VALUES ($cc, $dv, '市自建通道');
	INSERT INTO vms.sip_share_code (upstream, channel_code, custom_name) VALUES ('prov', $cc, '市自建'), ('prov', $cv, '待拆');
	SELECT vms.tag_assign($cv, 'scenario:市重点');
});
$a->safe_psql('postgres', "DELETE FROM vms.device WHERE code = $dv");
$a->wait_for_catchup('vms_district_a');
is($city->safe_psql('postgres', "SELECT concat_ws(',', (SELECT count(*) FROM vms.device WHERE code = $dv), (SELECT count(*) FROM vms.channel WHERE code IN ($cv, $cc)),
	(SELECT count(*) FROM vms.sip_share_code WHERE channel_code IN ($cv, $cc)), (SELECT count(*) FROM vms.channel_tag WHERE channel_code = $cv),
	(SELECT count(*) FROM vms.cluster_owner WHERE code IN ($dv, $cv)))"),
	'0,0,0,0,0', "a's device delete: its channel, the city's own channel under it, their share codes and tag, and the claims are gone at the city");

# a deletes two devices in one statement.  The city has a channel of its
# own under each, a RESTRICT hold on the first only: the first is kept and
# recorded (under its device's code), the second goes all the same (the
# refusal is retried code by code).  The history says why the second went
# (the district's delete, not a person at the city).  A table of a role that
# is neither the extension's owner nor a superuser, referencing a deleted
# device ON DELETE CASCADE, is not acted on (its triggers would run as the
# subscription's owner): its row stays, recorded as a conflict.  b has a
# channel under the second device's code (b's own device of that code is a
# conflict at the city): b's channel stays, recorded with its owner.  A
# partitioned table of the city's that RESTRICTs: one conflict a row.  A
# table whose trigger fails once with a serialization failure (transient):
# the apply worker retries the transaction, the row goes, nothing recorded.
# A two-column key to (code, name): not acted on, its row recorded.
my ($dv3, $dv4) = ("vms.gbcode_make('11010500', 0, 118, 0, 5003)", "vms.gbcode_make('11010500', 0, 118, 0, 5004)");
my ($cc3, $cc4) = ("'11000000001310000097'", "'11000000001310000096'");
my $xb = "vms.gbcode_make('11010800', 0, 131, 0, 990001)";
$a->safe_psql('postgres', "INSERT INTO vms.device (code, name) VALUES ($dv3, '待拆设备3'), ($dv4, '待拆设备4')");
wait_for($city, "SELECT count(*) FROM vms.device WHERE code IN ($dv3, $dv4)", '2', "a's devices 3 and 4 at the city");
$b->safe_psql('postgres', "INSERT INTO vms.device (code, name) VALUES ($dv4, 'b同码设备'); INSERT INTO vms.channel (code, device_code, name) VALUES ($xb, $dv4, 'b的通道')");
wait_for($city, "SELECT count(*) FROM vms.channel c JOIN vms.cluster_owner o ON o.kind = 'channel' AND o.code = c.code AND o.district = 'b' WHERE c.code = $xb",
	'1', "b's channel under a's device code at the city");
$city->safe_psql('postgres', qq{
	INSERT INTO vms.channel (code, device_code, name) VALUES ($cc3, $dv3, '市自建通道3'), ($cc4, $dv4, '市自建通道4');
	INSERT INTO public.city_hold VALUES ($cc3);
	CREATE TABLE public.city_part (k int, device_code vms.gbcode REFERENCES vms.device (code) ON DELETE RESTRICT) PARTITION BY LIST (k);
	CREATE TABLE public.city_part1 PARTITION OF public.city_part FOR VALUES IN (1);
	CREATE TABLE public.city_part2 PARTITION OF public.city_part FOR VALUES IN (2);
	INSERT INTO public.city_part VALUES (1, $dv4), (2, $dv4);
	CREATE SEQUENCE public.flaky_calls;
	CREATE TABLE public.city_flaky (device_code vms.gbcode REFERENCES vms.device (code) ON DELETE CASCADE);
	CREATE FUNCTION public.flaky() RETURNS trigger LANGUAGE plpgsql AS \$\$
	BEGIN
		IF nextval('public.flaky_calls') = 1 THEN
			RAISE EXCEPTION 'could not serialize (test)' USING ERRCODE = '40001';
		END IF;
		RETURN OLD;
	END \$\$;
	CREATE TRIGGER flaky BEFORE DELETE ON public.city_flaky FOR EACH ROW EXECUTE FUNCTION public.flaky();
	INSERT INTO public.city_flaky VALUES ($dv4);
	ALTER TABLE vms.device ADD CONSTRAINT device_code_name UNIQUE (code, name);
	CREATE TABLE public.city_pair (device_code vms.gbcode, device_name text,
		FOREIGN KEY (device_code, device_name) REFERENCES vms.device (code, name) ON DELETE CASCADE);
	INSERT INTO public.city_pair VALUES ($dv4, '待拆设备4');
	CREATE ROLE vms_tenant;
	GRANT USAGE ON SCHEMA vms TO vms_tenant;
	GRANT REFERENCES ON vms.device TO vms_tenant;
	GRANT CREATE ON SCHEMA public TO vms_tenant;
	SET ROLE vms_tenant;
	CREATE TABLE public.tenant_note (device_code vms.gbcode REFERENCES vms.device (code) ON DELETE CASCADE);
	INSERT INTO public.tenant_note VALUES ($dv4);
	RESET ROLE;
});
$a->safe_psql('postgres', "DELETE FROM vms.device WHERE code IN ($dv3, $dv4)");
$a->wait_for_catchup('vms_district_a');
is($city->safe_psql('postgres', "SELECT concat_ws(',', (SELECT count(*) FROM vms.device WHERE code IN ($dv3, $dv4)),
	(SELECT count(*) FROM vms.channel WHERE code = $cc3), (SELECT count(*) FROM vms.channel WHERE code = $cc4))"),
	'0,1,0', "two devices deleted, a RESTRICT hold under one: that one's channel is kept, the other's goes");
is($city->safe_psql('postgres', "SELECT string_agg(x, ',' ORDER BY x COLLATE \"C\") FROM (SELECT concat_ws('|', regexp_replace(table_name, '^vms[.]', ''), coalesce(owner, '-'),
	CASE code WHEN ($dv3)::text THEN 'dv3' ELSE 'dv4' END, row_data->>'sqlstate') x
	FROM vms.cluster_conflict WHERE district = 'a' AND op = 'DELETE' AND code IN (($dv3)::text, ($dv4)::text)) s"),
	'channel|-|dv3|23503,channel|b|dv4,city_pair|-|dv4,city_part|-|dv4,city_part|-|dv4,tenant_note|-|dv4',
	"recorded: the held code only, b's channel (owner b), the row of a two-column key (not acted on), each row of the partitioned RESTRICT table once, the non-superuser's table; not the transient failure");
is($city->safe_psql('postgres', "SELECT concat_ws(',', (SELECT count(*) FROM vms.channel WHERE code = $xb), (SELECT count(*) FROM public.city_part),
	(SELECT count(*) FROM public.city_flaky), (SELECT last_value >= 2 FROM public.flaky_calls))"),
	'1,2,0,t', "b's channel and the RESTRICT table's rows stay; the transiently failing row went on the apply worker's retry");
is($city->safe_psql('postgres', "SELECT string_agg(reason, ',') FROM vms.ledger_history
	WHERE table_name LIKE '%channel' AND op = 'DELETE' AND code = $cc4"), "cascade of district a's delete of 2 device codes",
	"the city channel's delete is in the history as the district's");
is($city->safe_psql('postgres', "SELECT concat_ws('|', (SELECT count(*) FROM public.tenant_note),
	(SELECT string_agg(row_data->>'kept', ',') FROM vms.cluster_conflict WHERE district = 'a' AND table_name LIKE '%tenant_note' AND code = ($dv4)::text))"),
	"1|not acted on: the table's owner is neither the extension's owner nor a superuser",
	"a non-superuser's table under a deleted device: not acted on, recorded");

# a catalogue node of the city's under a's node, with b's node below it (b
# uses the city node's code too: b's copy of it is a conflict at the city):
# a deletes its node; the city's node is kept and recorded, so that b's
# node below it is not taken along
my ($na, $nm, $nb) = ("'11010500002150000009'", "'11000000002160000009'", "'11010800002160000009'");
$a->safe_psql('postgres', "INSERT INTO vms.catalog_node (code, name) VALUES ($na, 'a待删分组')");
wait_for($city, "SELECT count(*) FROM vms.catalog_node WHERE code = $na", '1', "a's node at the city");
$city->safe_psql('postgres', "INSERT INTO vms.catalog_node (code, name, parent_code) VALUES ($nm, '市子分组', $na)");
$b->safe_psql('postgres', "INSERT INTO vms.catalog_node (code, name) VALUES ($nm, 'b同码分组'); INSERT INTO vms.catalog_node (code, name, parent_code) VALUES ($nb, 'b的分组', $nm)");
wait_for($city, "SELECT count(*) FROM vms.cluster_owner WHERE kind = 'catalog_node' AND code = $nb AND district = 'b'", '1', "b's node below the city's at the city");
$a->safe_psql('postgres', "DELETE FROM vms.catalog_node WHERE code = $na");
$a->wait_for_catchup('vms_district_a');
is(sq($city, "SELECT concat_ws(',', (SELECT count(*) FROM vms.catalog_node WHERE code = $na), (SELECT count(*) FROM vms.catalog_node WHERE code = $nm),
	(SELECT count(*) FROM vms.catalog_node WHERE code = $nb),
	(SELECT string_agg(concat_ws('|', regexp_replace(table_name, '^vms[.]', ''), coalesce(owner, '-'), row_data->>'kept'), ';')
	   FROM vms.cluster_conflict WHERE district = 'a' AND code = $na))"),
	"0,1,1,catalog_node|-|a district's catalogue node below it",
	"a's node deleted: the city's node below it is kept and recorded, b's node below that is not taken along");

# deletes mixed with other changes in one of a's transactions stay
# set-based: the apply worker hands the deleted codes over once, at commit.
# The city holds each of the 10 channels a deletes (RESTRICT: recorded), and
# counts the statements that record conflicts: one for the 10, not one each
is($a->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE code IN (SELECT vms.gbcode_make('11010500', 0, 131, 0, i) FROM generate_series(30, 49) i)"),
	'20', 'a has channels 30-49');
$city->safe_psql('postgres', q{
	INSERT INTO public.city_hold SELECT vms.gbcode_make('11010500', 0, 131, 0, i) FROM generate_series(30, 39) i;
	CREATE SEQUENCE public.conflict_statements;
	CREATE FUNCTION public.count_conflict_statements() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM nextval('public.conflict_statements');
		RETURN NULL;
	END $$;
	CREATE TRIGGER count_statements AFTER INSERT ON vms.cluster_conflict FOR EACH STATEMENT EXECUTE FUNCTION public.count_conflict_statements();
});
$a->safe_psql('postgres', q{DO $$ BEGIN FOR i IN 30..39 LOOP
	DELETE FROM vms.channel WHERE code = vms.gbcode_make('11010500', 0, 131, 0, i);
	UPDATE vms.channel SET name = name || '改' WHERE code = vms.gbcode_make('11010500', 0, 131, 0, i + 10);
END LOOP; END $$});
$a->wait_for_catchup('vms_district_a');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE code IN (SELECT vms.gbcode_make('11010500', 0, 131, 0, i) FROM generate_series(30, 39) i)")
	. '/' . $city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE name LIKE '%改' AND code IN (SELECT vms.gbcode_make('11010500', 0, 131, 0, i) FROM generate_series(40, 49) i)")
	. '/' . $city->safe_psql('postgres', "SELECT count(*) FROM vms.cluster_conflict WHERE district = 'a' AND table_name LIKE '%city_hold' AND code::vms.gbcode IN (SELECT vms.gbcode_make('11010500', 0, 131, 0, i) FROM generate_series(30, 39) i)"),
	'0/10/10', "10 deletes alternating with 10 updates in one transaction: all applied, the 10 holds recorded");
is($city->safe_psql('postgres', "SELECT last_value || '/' || is_called FROM public.conflict_statements"), '1/true',
	'in one statement: the deleted codes were handed over once, at commit');

# a deletes a channel and sends it again in one transaction, with a status:
# the city's share code of the old row goes (as an ordinary DELETE then
# INSERT would leave it), the new row and its status are a's, and its claim
my $r = "vms.gbcode_make('11010500', 0, 131, 0, 20)";
$city->safe_psql('postgres', "INSERT INTO vms.sip_share_code (upstream, channel_code, custom_name) VALUES ('prov', $r, '重建前')");
$a->safe_psql('postgres', qq{
	BEGIN;
	DELETE FROM vms.channel WHERE code = $r;
	INSERT INTO vms.channel (code, device_code, name) VALUES ($r, vms.gbcode_make('11010500', 0, 118, 0, 1), '重建通道');
	INSERT INTO vms.channel_status (code, status) VALUES ($r, 'OFF');
	COMMIT;
});
$a->wait_for_catchup('vms_district_a');
is(sq($city, "SELECT concat_ws(',', c.name, (SELECT o.district FROM vms.cluster_owner o WHERE o.kind = 'channel' AND o.code = c.code),
	(SELECT s.status FROM vms.channel_status s WHERE s.code = c.code), (SELECT count(*) FROM vms.sip_share_code s WHERE s.channel_code = c.code))
	FROM vms.channel c WHERE c.code = $r"), '重建通道,a,OFF,0', "a channel deleted and sent again in one transaction: a's new row, claim and status, without the city's old share code");
# a deletes a device and, in the same transaction, sends a channel (under
# another device) with the code of the city's own channel under the deleted
# device: the city's channel is gone first, as an ordinary DELETE would have
# taken it, and a's channel claims the free code (no conflict)
my $dv2 = "vms.gbcode_make('11010500', 0, 118, 0, 5001)";
my $cc2 = "'11000000001310000098'";
$a->safe_psql('postgres', "INSERT INTO vms.device (code, name) VALUES ($dv2, '待拆设备2')");
wait_for($city, "SELECT count(*) FROM vms.device WHERE code = $dv2", '1', "a's second new device at the city");
$city->safe_psql('postgres', "INSERT INTO vms.channel (code, device_code, name) VALUES ($cc2, $dv2, '市自建通道2')");
$a->safe_psql('postgres', qq{
	BEGIN;
	DELETE FROM vms.device WHERE code = $dv2;
	INSERT INTO vms.channel (code, device_code, name) VALUES ($cc2, vms.gbcode_make('11010500', 0, 118, 0, 1), 'a的新通道');
	COMMIT;
});
$a->wait_for_catchup('vms_district_a');
is(sq($city, "SELECT concat_ws(',', c.name, (SELECT o.district FROM vms.cluster_owner o WHERE o.kind = 'channel' AND o.code = c.code),
	(SELECT count(*) FROM vms.cluster_conflict x WHERE x.code = c.code::text)) FROM vms.channel c WHERE c.code = $cc2"),
	'a的新通道,a,0', "a's channel under the code of the city's own channel under a's deleted device: the city's went first, a's claims it");
# a district that cannot be reached is reported down and does not block the other
$b->stop('fast');
wait_for($city, "SELECT state IN ('down', 'connecting') FROM vms.cluster_status WHERE peer = 'b'", 't', 'unreachable district b reported');
$a->safe_psql('postgres', "UPDATE vms.channel SET online = true WHERE code = $c3");
wait_for($city, "SELECT online FROM vms.channel WHERE code = $c3", 't', 'a streams on while b is down');
is($city->safe_psql('postgres', "SELECT state FROM vms.cluster_status WHERE peer = 'a'"), 'streaming', 'a reported streaming');

# the map's cluster cells at the city count the districts' channels: the
# cells folded from what the apply worker appended equal a recount from the
# ledger (the statement triggers that keep them never fire for the apply worker)
$city->safe_psql('postgres', "SELECT vms.channel_clusters_refresh()");
my $cells = "SELECT string_agg(concat_ws(':', level, cx, cy, n, n_online), ',' ORDER BY level, cx, cy) FROM vms.channel_cluster";
my $folded = $city->safe_psql('postgres', $cells);
is($city->safe_psql('postgres', "SELECT sum(n) FROM vms.channel_cluster WHERE level = 18"),
	$city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE geom IS NOT NULL"), "city cells count every district's located channel");
$city->safe_psql('postgres', "SELECT vms.channel_clusters_refresh(true)");
is($folded, $city->safe_psql('postgres', $cells), 'and equal the cells counted again from the ledger');

# an UPDATE that changes a code: the sending district must own the old and
# the new code.  A district cannot send one through its own ledger, so the
# apply worker's path is simulated at the city (replica mode, the sender as
# the apply worker's session caches it).  a moves b's device run under a's
# device (the apply trigger of child rows checked the new code only), and
# renames its own channel to a code it does not own (the C trigger checked
# the old code only): both refused and recorded, nothing moved.
my $c9 = "vms.gbcode_make('11010500', 0, 131, 0, 900001)";
my $bruns = $city->safe_psql('postgres', "SELECT count(*) FROM vms.availability_run WHERE source = 'device' AND code = $dB");
cmp_ok($bruns, '>', 0, "b's device has runs at the city");
$city->safe_psql('postgres', qq{
	SET session_replication_role = replica;
	SET vms.cluster_applying = 'district:a';
	UPDATE vms.availability_run SET code = $dA WHERE source = 'device' AND code = $dB;
	UPDATE vms.channel SET code = $c9 WHERE code = $c3;
});
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.availability_run WHERE source = 'device' AND code = $dB AND district = 'b'"),
	$bruns, "a's UPDATE moving b's runs under a's device code is refused");
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE code = $c3") . '/'
	  . $city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE code = $c9"),
	'1/0', "a's UPDATE renaming its channel to a code it does not own is refused");
is($city->safe_psql('postgres', "SELECT string_agg(concat_ws('|', table_name, op, coalesce(owner, '-'), code IN (($dB)::text, ($c9)::text)), ',' ORDER BY table_name)
	FROM vms.cluster_conflict WHERE district = 'a' AND op = 'UPDATE'"),
	"availability_run|UPDATE|b|t,channel|UPDATE|-|t", 'both recorded as conflicts (owner b, and no owner)');

$a->stop;
$city->stop;
done_testing();
