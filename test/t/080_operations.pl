# The operations centre against the real SIP worker and the GB/T 28181
# simulator (test/sim/gbsim) as the devices: NVRs with channels and IPCs
# register, go silent and come back.  An NVR going down is one notified
# alarm at level II, its channels' faults are suppressed under it and cleared
# with it when it comes back; an IPC going silent is a level III alarm; a
# masked device's alarm is recorded, not notified; a device found offline at
# the end of the restart grace after pg_ctl restart -m immediate has the
# grace as unknown time, not offline, in its availability intervals.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IPC::Run;

gbsim_path();
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $sip_port = PostgreSQL::Test::Cluster::get_free_port();
my ($server_id, $realm) = ($SIP_SERVER_ID, $SIP_REALM);

my $node = vms_node('ops',
	'vms.viid_enabled' => 'off',
	'vms.sip_id' => $server_id,
	'vms.sip_listen' => '127.0.0.1',
	'vms.sip_port' => $sip_port,
	'vms.sip_keepalive_interval' => 5,
	'vms.sip_keepalive_count' => 1,
	'vms.sip_restart_grace' => 10,
	'vms.sip_flush_interval' => 200);

# two NVRs (type 118) with 4 channels each, three IPCs (type 132)
my @nvr = ('34020000001180000001', '34020000001180000002');
my @ipc = ('34020000001320000101', '34020000001320000102', '34020000001320000103');
$node->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) SELECT c::vms.gbcode, 'dev ' || c FROM unnest(ARRAY['$nvr[0]', '$nvr[1]', '$ipc[0]', '$ipc[1]', '$ipc[2]']) c;
SELECT count(vms.device_set_password(code, '12345678', '$realm')) FROM vms.device;
});
sip_running($node);

sub gbsim_start
{
	my ($name, @args) = @_;
	return IPC::Run::start(gbsim_cmd($sip_port, '--duration', '600', '--keepalive', '1', @args),
		'>', "$tmp/$name.out", '2>', "$tmp/$name.err");
}
# a device that dies: no unregister, it just stops talking
sub stop_sim { my ($h) = @_; $h->signal('KILL'); $h->finish; }
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $nvrs = gbsim_start('nvr', '--devices', '2', '--first-code', $nvr[0], '--channels', '4');
my $ipcs = gbsim_start('ipc', '--devices', '3', '--first-code', $ipc[0], '--channels', '1');
wait_ok($node, 'SELECT count(*) = 5 FROM vms.device WHERE online', 'two NVRs and three IPCs online');
my $rid = sql("SELECT vms.sip_query_catalog('$nvr[0]')");
is(sql("SELECT state, result ->> 'channels' FROM vms.sip_request_wait($rid, 30)"), 'done|4', "NVR $nvr[0]'s catalog: four channels");
my @ch = split /\n/, sql("SELECT code FROM vms.channel WHERE device_code = '$nvr[0]' ORDER BY code");
is(scalar(@ch), 4, 'four channels in the ledger');
is(sql('SELECT count(*) FROM vms.alarm'), '0', 'no alarm while everything is online');

# a channel's own stream fault before the outage (as an inspection raises it): notified
sql("SELECT vms.alarm_raise('$ch[0]', 'stream', 2::smallint, 'inspection')");

###########################################################################
# the NVRs go down: one notified alarm each, level II, source sip
###########################################################################
stop_sim($nvrs);
wait_ok($node, qq{
SELECT count(*) = 2 FROM vms.alarm WHERE fault_type = 'offline' AND state = 'open' AND code IN ('$nvr[0]', '$nvr[1]')},
	'each silent NVR raises an offline alarm');
is(sql("SELECT string_agg(DISTINCT source || ' ' || level, ',') FROM vms.alarm WHERE fault_type = 'offline' AND code IN ('$nvr[0]', '$nvr[1]')"),
	'sip 2', 'source sip, level II for an NVR');
is(sql("SELECT detail ->> 'cause' FROM vms.alarm WHERE code = '$nvr[0]' AND fault_type = 'offline'"), 'keepalive timeout',
	'the alarm carries the cause of the transition');
is(sql("SELECT count(*) FROM vms.channel WHERE device_code = '$nvr[0]' AND online"), '0', 'its channels are offline with it');
# the inspection's stream faults on its channels while it is down
sql("SELECT vms.alarm_raise(code, 'stream', 2::smallint, 'inspection') FROM vms.channel WHERE device_code = '$nvr[0]'");
is(sql(qq{
SELECT count(*) FROM vms.alarm a JOIN vms.alarm r ON r.id = a.root_alarm_id
 WHERE a.code IN (SELECT code FROM vms.channel WHERE device_code = '$nvr[0]') AND r.code = '$nvr[0]'}),
	'4', "the four channels' stream alarms (the earlier one too) are linked to the NVR's alarm");
is(sql(qq{
SELECT count(*) FROM vms.alarm_event e JOIN vms.alarm a ON a.id = e.alarm_id
 WHERE e.notify AND e.kind = 'raised' AND (a.code = '$nvr[0]' OR a.code IN (SELECT code FROM vms.channel WHERE device_code = '$nvr[0]'))
   AND e.id >= (SELECT min(x.id) FROM vms.alarm_event x JOIN vms.alarm y ON y.id = x.alarm_id WHERE y.code = '$nvr[0]')}),
	'1', 'the outage is one notified alarm, not five');

# the NVRs come back: the alarm clears with the reason, the channels' with it
$nvrs = gbsim_start('nvr2', '--devices', '2', '--first-code', $nvr[0], '--channels', '4');
wait_ok($node, "SELECT state = 'cleared' FROM vms.alarm WHERE code = '$nvr[0]' AND fault_type = 'offline'",
	'the NVR back online clears its alarm');
is(sql("SELECT clear_reason FROM vms.alarm WHERE code = '$nvr[0]' AND fault_type = 'offline'"), 'back online: registered',
	'cleared with the reason');
is(sql(qq{
SELECT string_agg(DISTINCT state || ': ' || clear_reason, ',') FROM vms.alarm
 WHERE fault_type = 'stream' AND code IN (SELECT code FROM vms.channel WHERE device_code = '$nvr[0]')}),
	'cleared: root cause cleared: back online: registered', "the channels' alarms cleared with their root cause");

###########################################################################
# an IPC goes silent: level III; a masked one: recorded, not notified
###########################################################################
sql(qq{SELECT vms.alarm_mask_add('planned work', '{"codes": ["$ipc[1]"]}', '{offline}', now() - interval '1 minute',
                               now() + interval '1 hour', 'switch replacement')});
stop_sim($ipcs);
$ipcs = gbsim_start('ipc2', '--devices', '1', '--first-code', $ipc[2], '--channels', '1');
wait_ok($node, qq{
SELECT count(*) = 2 FROM vms.alarm WHERE fault_type = 'offline' AND state = 'open' AND code IN ('$ipc[0]', '$ipc[1]')},
	'the two silent IPCs raise offline alarms');
is(sql("SELECT level FROM vms.alarm WHERE code = '$ipc[0]' AND fault_type = 'offline'"), '3', 'level III for an IPC');
is(sql(qq{
SELECT a.mask_id IS NOT NULL, e.notify FROM vms.alarm a JOIN vms.alarm_event e ON e.alarm_id = a.id AND e.kind = 'raised'
 WHERE a.code = '$ipc[1]' AND a.fault_type = 'offline'}), 't|f', 'the masked IPC\'s alarm is recorded, not notified');
is(sql(qq{
SELECT e.notify FROM vms.alarm a JOIN vms.alarm_event e ON e.alarm_id = a.id AND e.kind = 'raised'
 WHERE a.code = '$ipc[0]' AND a.fault_type = 'offline'}), 't', 'the unmasked one is notified');

###########################################################################
# restart grace: unknown, not offline
###########################################################################
# IPC 3 is online and keeping alive when the server stops at once; it falls
# silent while the server is down: the restarted worker gives it the grace,
# then finds it offline.  (The camera is silenced only after the stop: had
# it fallen silent first, a stop slower than the 5 s keepalive window would
# let the running worker take it offline by keepalive timeout, and there
# would be no grace to test.)
wait_ok($node, "SELECT online FROM vms.device WHERE code = '$ipc[2]'", 'IPC 3 online');
$node->stop('immediate');
stop_sim($ipcs);
$node->start;
wait_ok($node, qq{
SELECT count(*) = 1 FROM vms.device_event
 WHERE device_code = '$ipc[2]' AND event = 'offline' AND cause = 'no keepalive within the restart grace'},
	'after the restart grace the silent IPC goes offline');
my $flip = "(SELECT at FROM vms.device_event WHERE device_code = '$ipc[2]' AND event = 'offline' ORDER BY id DESC LIMIT 1)";
# the period measured below ends a second after the flip: wait until that is past
$node->poll_query_until('postgres', "SELECT now() > $flip + interval '1 second'") or die 'clock';
is(sql("SELECT extract(epoch FROM to_ts - from_ts), to_ts = $flip FROM vms.availability_gap WHERE device_code = '$ipc[2]'"),
	'10.000000|t', 'the grace (10 s) before the flip is recorded as unknown');
is(sql(qq{
SELECT string_agg(state || ' ' || extract(epoch FROM least(to_ts, $flip + interval '1 second') - from_ts)::int, ', ' ORDER BY from_ts)
  FROM vms.availability_intervals($flip - interval '10 seconds', $flip + interval '1 second')
 WHERE code = '$ipc[2]'}),
	'unknown 10, offline 1', 'its intervals: the grace unknown, offline from the flip');
is(sql("SELECT level, source FROM vms.alarm WHERE code = '$ipc[2]' AND fault_type = 'offline' AND state = 'open'"), '3|sip',
	'and it raises its offline alarm');
my $r = sql(qq{
SELECT online_seconds = 0 AND offline_seconds = 1 AND unknown_seconds = 10
  FROM vms.availability($flip - interval '10 seconds', $flip + interval '1 second', 'device') WHERE group_key = '$ipc[2]'});
is($r, 't', 'vms.availability counts the grace as unknown, outside the ratio');

stop_sim($nvrs);
$node->stop;
done_testing();
