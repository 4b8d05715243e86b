# GB/T 28181 cascade (issue 16): vms as a lower platform.
#
# 1. sipp plays the upper platform (test/sipp/upper_refuse.xml, upper_accept.xml):
#    a 401 to our digest answer is a refusal, backed off and retried; a
#    headerless 200 is dropped and a 503 backed off twice as long
#    (upper_hostile.xml); then a REGISTER whose MD5 digest with qop=auth sipp verifies against the password,
#    a 200 whose Date is in the far past, keepalives answered, two Catalog
#    queries answered in pages of 20 with the whole answer's SumNum, and
#    nothing about a code outside the share; an upper platform that stops
#    answering keepalives is failed and registered to again; a restart of
#    the lower platform registers again.  sipp then subscribes to alarms and
#    positions (upper_subscribe.xml): NOTIFYs in their dialogs, only the
#    alarms of the subscription's priorities and methods, positions of shared
#    channels under the codes the upper platform knows, on change (a change
#    NOTIFYed at once, at most one per channel every Interval, the newest at
#    its end, nothing for a position that did not change), a subscription
#    that runs out.  Then sipp as an upper platform (upper_relay.xml) whose
#    RecordInfo, PresetQuery and PTZ go to a hostile sipp device
#    (device_relay.xml): the answers it gets are compared byte for byte
#    (rebuilt from listed fields under its code, name and SN); its position
#    subscription with Interval 3600 gets a change at once, the next held back;
#    a burst of 100 reports makes at most one compare a second (counted in the
#    state).  Then an upper platform (upper_records.xml) whose RecordInfo a
#    device answers with 120 items in two MESSAGEs over 8,000 bytes each gets
#    them rebuilt in pages of at most 8,000 bytes adding up to SumNum.
# 2. two vms clusters: a district registers to a city vms (digest with qop,
#    SHA-256 as offered, which the city verifies), keeps alive, answers the city's own
#    Catalog and DeviceInfo queries (which land in the city's ledger), its Catalog
#    subscription (NOTIFY ADD, DEL, UPDATE, ON, OFF), and its INVITE, relayed to a
#    camera (gbsim) whose RTP reaches the city's address; BYE ends both legs; alarms
#    of shared channels are forwarded, others not.  The district compares its share
#    only on a change (reconcile_interval 3600), so every NOTIFY the city applies
#    was driven by the change itself.  The city's Alarm and MobilePosition
#    subscriptions, a status the city holds wrongly put right by the periodic full
#    push, the city's PTZ and RecordInfo relayed to the camera under the code it
#    knows and answered back under the code the city knows; then restarts of the
#    city and of the district, after which changes still reach the city.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);
use IO::Socket::INET;
use IO::Select;
use Encode;
use Time::Local;

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $sippdir = "$root/test/sipp";
my $tmp = PostgreSQL::Test::Utils::tempdir;

my $key = "$tmp/secret.key";
{
	open(my $fh, '>', $key) or die;
	print $fh 'k' x 32;
	close $fh;
	chmod 0600, $key;
}

sub sip_node
{
	my ($name, $id, $port) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'vms'
vms.database = 'postgres'
vms.viid_enabled = off
vms.sip_id = '$id'
vms.sip_listen = '127.0.0.1'
vms.sip_port = $port
vms.sip_flush_interval = 200
vms.secret_key_file = '$key'
log_min_messages = log
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION vms CASCADE');
	$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'vms sip'")
	  or die "$name: sip worker did not start";
	return $node;
}

# the district: one NVR, 45 channels in 340201 and 5 in 340202
my $lower_id = '34020100002000000001';
my $district_port = PostgreSQL::Test::Cluster::get_free_port();
my $district = sip_node('district', $lower_id, $district_port);
$district->safe_psql('postgres', q{
INSERT INTO vms.device (code, name, manufacturer, model, online) VALUES ('34020100001180000001', 'NVR 一', 'Hik', 'DS-9600', true);
INSERT INTO vms.channel (code, device_code, name, civil_code, online)
SELECT ('3402010000132' || lpad(i::text, 7, '0'))::vms.gbcode, '34020100001180000001', '通道 ' || i, '340201', true
  FROM generate_series(1, 45) i;
INSERT INTO vms.channel (code, device_code, name, civil_code, online)
SELECT ('3402020000132' || lpad(i::text, 7, '0'))::vms.gbcode, '34020100001180000001', '外区 ' || i, '340202', true
  FROM generate_series(1, 5) i;
});

###########################################################################
# 1. sipp as the upper platform
###########################################################################
my $upper_id = '34010000002000000001';
my $upper_port = PostgreSQL::Test::Cluster::get_free_port();
my @sipp_common = ('-i', '127.0.0.1', '-p', $upper_port, '-t', 'u1', '-nd', '-nostdin');

sub state_of
{
	my ($node, $up) = @_;
	return $node->safe_psql('postgres',
		"SELECT state || '|' || failures || '|' || coalesce(last_status::text, '') FROM vms.sip_upstream_state WHERE upstream = '$up'");
}

# a platform that refuses our credentials: 401 to the answer, with the same nonce
my ($rout, $rerr) = ('', '');
my $refuse = IPC::Run::start([ 'sipp', '-sf', "$sippdir/upper_refuse.xml", '-m', '1', @sipp_common ],
	'>', \$rout, '2>', \$rerr);
$district->safe_psql('postgres', qq{
SELECT vms.sip_add_upstream('city', '127.0.0.1', $upper_port, '$upper_id', 'upper-pass',
                            '{"keepalive_interval": 5, "keepalive_count": 2, "catalog_page_size": 20}');
SELECT vms.sip_share('city', '{"regions": ["340201"], "channels": ["34020200001320000001"]}');
SELECT vms.sip_share_map('city', '34020100001320000002', '34010000001320000099', '南门');
});
ok($district->poll_query_until('postgres',
		"SELECT state = 'failing' AND last_status = 401 AND failures = 1 FROM vms.sip_upstream_state WHERE upstream = 'city'"),
	'a 401 to our digest answer fails the registration (401, one failure)')
  or diag(state_of($district, 'city'));
ok($refuse->finish, 'sipp (refusing platform): REGISTER, challenge, REGISTER with credentials, 401 again')
  or diag("$rout $rerr");
is($district->safe_psql('postgres', q{SELECT string_agg(from_state || '>' || to_state, ',' ORDER BY id) FROM vms.sip_upstream_event}),
	'unregistered>registering,registering>failing', 'the transitions are recorded');
like($district->safe_psql('postgres', "SELECT next_attempt_at - since FROM vms.sip_upstream_state"),
	qr/^00:00:0[45]/, 'the next attempt is backed off (5 s)');

# a broken platform: a "200" without its headers is dropped, a 503 fails the registration again
my ($hout, $herr) = ('', '');
my $hostile = IPC::Run::start([ 'sipp', '-sf', "$sippdir/upper_hostile.xml", '-m', '1', @sipp_common ],
	'>', \$hout, '2>', \$herr);
ok($district->poll_query_until('postgres',
		"SELECT state = 'failing' AND last_status = 503 AND failures = 2 FROM vms.sip_upstream_state WHERE upstream = 'city'"),
	'a malformed 200 (no From, To, Call-ID, CSeq) is dropped, the 503 to the retransmission is a second failure')
  or diag(state_of($district, 'city'));
ok($hostile->finish, 'sipp (broken platform): REGISTER, headerless 200, REGISTER again, 503') or diag("$hout $herr");
like($district->safe_psql('postgres', "SELECT next_attempt_at - since FROM vms.sip_upstream_state"),
	qr/^00:00:(09|10)/, 'the backoff doubles (10 s)');
ok($district->poll_query_until('postgres',
		"SELECT (counters ->> 'parse_errors')::int >= 1 AND state LIKE 'running%' FROM vms.worker_status WHERE name = 'sip'"),
	'the broken answer is counted as a parse error; the worker runs on')
  or diag($district->safe_psql('postgres', "SELECT state, counters FROM vms.worker_status WHERE name = 'sip'"));

# a platform that checks the MD5 digest (qop=auth) and accepts it; it asks for the catalog twice
my $trace = "$tmp/upper_msg.log";
my @accept = ('sipp', '-sf', "$sippdir/upper_accept.xml", '-m', '100000', '-key', 'upper', $upper_id,
	'-key', 'lower', $lower_id, '-key', 'outside', '34020200001320000002', '-key', 'password', 'upper-pass',
	'-key', 'vms', "127.0.0.1:$district_port", @sipp_common, '-trace_msg', '-message_file', $trace);
my ($aout, $aerr) = ('', '');
my $accept = IPC::Run::start(\@accept, '>', \$aout, '2>', \$aerr);
ok($district->poll_query_until('postgres',
		"SELECT state = 'registered' AND last_status = 200 AND failures = 0 FROM vms.sip_upstream_state WHERE upstream = 'city'"),
	'after the backoff the worker registers again, and sipp verifies its MD5 digest with qop=auth (else 403)')
  or diag(state_of($district, 'city'));
is($district->safe_psql('postgres', q{SELECT string_agg(from_state || '>' || to_state, ',' ORDER BY id) FROM vms.sip_upstream_event}),
	'unregistered>registering,registering>failing,failing>registering,registering>failing,failing>registering,registering>registered',
	'failing > registering > failing > registering > registered');
ok($district->poll_query_until('postgres',
		"SELECT last_keepalive_at IS NOT NULL AND expires_at > now() + interval '50 min' FROM vms.sip_upstream_state WHERE upstream = 'city'"),
	'keepalives are answered; the registration holds for the granted hour (a Date in 1970 changes nothing)');
is($district->safe_psql('postgres', "SELECT state FROM vms.worker_status WHERE name = 'sip'"),
	'running; upstream city registered', 'vms.worker_status shows the upstream\'s state');

# the answers to the two queries, as sipp received them: each page MESSAGE once (a retransmission of a
# page, its Call-ID again, which sipp logs a second time when the 200 was late, is the same page)
sub answers
{
	my (%sn, %seen);
	open(my $fh, '<:raw', $trace) or return \%sn;
	local $/;
	my $log = <$fh>;
	close $fh;
	for my $m (split /\n-{20,}[^\n]*\n/, $log)
	{
		next unless $m =~ m{^MESSAGE sip:}m && $m =~ m{<Response>(.*?)</Response>}s;
		my $r = $1;
		next unless $r =~ m{<CmdType>Catalog</CmdType>} && $r =~ m{<SN>(\d+)</SN>};
		my $sn = $1;
		my ($cid) = $m =~ m{^Call-ID:\s*(\S+)}mi;
		next if defined $cid && $seen{$cid}++;
		push @{ $sn{$sn} }, $r;
	}
	return \%sn;
}

sub wait_for
{
	my ($cond) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}
ok(wait_for(sub { my $a = answers(); return @{ $a->{7} // [] } >= 3 && @{ $a->{8} // [] } >= 1 }),
	'the Catalog queries are answered: three pages for SN 7, one for SN 8')
  or diag(`tail -50 $trace`);
my $a = answers();
is(scalar(@{ $a->{7} }), 3, 'SN 7: exactly three pages (a retransmitted query is not answered twice)');
is(join(',', map { /<SumNum>(\d+)</ ? $1 : '?' } @{ $a->{7} }), '46,46,46', 'each page carries the whole answer\'s SumNum');
is(join(',', map { /<DeviceList Num="(\d+)"/ ? $1 : '?' } @{ $a->{7} }), '20,20,6', 'pages of the configured 20 items');
my @ids = map { /<DeviceID>(\d{20})<\/DeviceID>/g } map { /<DeviceList.*<\/DeviceList>/s ? $& : '' } @{ $a->{7} };
my %uniq = map { $_ => 1 } @ids;
is(scalar(keys %uniq) . '/' . scalar(@ids), '46/46', '46 distinct channels, each once');
ok($uniq{'34010000001320000099'} && !$uniq{'34020100001320000002'},
	'the mapped channel is known by its custom code only');
is(scalar(grep { /^340202/ } @ids), 1, 'of the other region only the channel shared by code');
ok((join('', @{ $a->{7} }) =~ /\x{cd}\x{a8}\x{b5}\x{c0}/) && (join('', @{ $a->{7} }) !~ /\x{e9}\x{80}\x{9a}/),
	'names are in GB2312 (通道 as GB bytes, not UTF-8)');
is(scalar(@{ $a->{8} }), 1, 'SN 8 (a code outside the share): one answer');
like($a->{8}[0], qr{<SumNum>0</SumNum><DeviceList Num="0"/>}, 'with SumNum 0 and no item');

# the upper platform goes away: keepalives go unanswered, the upstream fails and registers again
$accept->kill_kill;
ok($district->poll_query_until('postgres',
		"SELECT state = 'failing' AND last_error LIKE '%keepalives unanswered' FROM vms.sip_upstream_state WHERE upstream = 'city'"),
	'2 unanswered keepalives: failing')
  or diag(state_of($district, 'city'));
unlink $trace;
$accept = IPC::Run::start(\@accept, '>', \$aout, '2>', \$aerr);
ok($district->poll_query_until('postgres', "SELECT state = 'registered' FROM vms.sip_upstream_state WHERE upstream = 'city'"),
	'the platform is back: registered again')
  or diag(state_of($district, 'city'));

# a restart of the lower platform: it registers again at once
my $events = $district->safe_psql('postgres', 'SELECT max(id) FROM vms.sip_upstream_event');
$district->restart;
ok($district->poll_query_until('postgres',
		"SELECT state = 'registered' AND EXISTS (SELECT 1 FROM vms.sip_upstream_event WHERE id > $events AND cause LIKE 'worker start%')
		   FROM vms.sip_upstream_state WHERE upstream = 'city'"),
	'after a restart the worker registers again (a "worker start" transition)')
  or diag(state_of($district, 'city'));
$accept->kill_kill;

# Alarm and MobilePosition subscriptions of the upper platform (sipp): positions already known are sent at
# once, under the code the upper platform knows; then alarms, only of the subscription's priorities (1-2)
# and methods (5, video), as NOTIFYs in its dialog
$district->safe_psql('postgres', q{
INSERT INTO vms.mobile_position (device_code, at, geom, speed) VALUES
    ('34020100001320000002', now(), ST_SetSRID(ST_MakePoint(117.5, 31.25), 4326), 20),
    ('34020100001320000003', now(), ST_SetSRID(ST_MakePoint(117.25, 31.5), 4326), 0),
    ('34020200001320000004', now(), ST_SetSRID(ST_MakePoint(118.5, 32.5), 4326), 5);
});
my $strace = "$tmp/upper_sub.log";
my ($sout, $serr) = ('', '');
my $subscriber = IPC::Run::start([ 'sipp', '-sf', "$sippdir/upper_subscribe.xml", '-m', '100000', '-key', 'upper', $upper_id,
		'-key', 'lower', $lower_id, '-key', 'vms', "127.0.0.1:$district_port", @sipp_common, '-trace_msg',
		'-message_file', $strace ],
	'>', \$sout, '2>', \$serr);
# a changed setting registers again: the REGISTER that starts sipp's scenario
$district->safe_psql('postgres', q{SELECT vms.sip_alter_upstream('city', options => '{"expires": 3000}')});
ok($district->poll_query_until('postgres', q{
SELECT state = 'registered' AND subscriptions ?& ARRAY['Alarm', 'MobilePosition']
   AND subscriptions #>> '{Alarm,filter,EndAlarmPriority}' = '2' AND subscriptions #>> '{MobilePosition,interval}' = '4'
  FROM vms.sip_upstream_status WHERE upstream = 'city'}),
	'the upper platform\'s Alarm and MobilePosition subscriptions are served, with their conditions')
  or diag($district->safe_psql('postgres', "SELECT state, subscriptions FROM vms.sip_upstream_status") . " $sout $serr");

# the NOTIFYs sipp received for an event (request line to the end of the message)
sub notifies
{
	my ($event) = @_;
	open(my $fh, '<:raw', $strace) or return ();
	local $/;
	my $log = <$fh>;
	close $fh;
	my @n;
	while ($log =~ m{(NOTIFY sip:.*?)(?=\n-{20,}|\z)}gs)
	{
		my $m = $1;
		push @n, $m if $m =~ m{^Event: \Q$event\E}mi;
	}
	return @n;
}
ok(wait_for(sub { grep { m{<DeviceID>34010000001320000099</DeviceID>} } notifies('MobilePosition') }),
	'a NOTIFY MobilePosition for the shared channel, under the code the upper platform knows')
  or diag(`tail -40 $strace`);
my ($pos) = grep { m{<DeviceID>34010000001320000099</DeviceID>} } notifies('MobilePosition');
like($pos, qr{<Longitude>117\.500000</Longitude>.*<Latitude>31\.250000</Latitude>.*<Speed>20</Speed>}s,
	'with its longitude, latitude and speed');
ok(!(grep { m{34020200001320000004|34020100001320000002} } notifies('MobilePosition')),
	'nothing about a channel not shared, nor the mapped channel\'s ledger code');

# MobilePosition NOTIFYs go on change, at most one per channel every Interval (4 s here), the newest position
# winning and none lost at the end of an interval; a channel whose position did not change gets none. The
# times are sipp's (when it received each NOTIFY).
# a sipp message trace as [time sipp logged it (epoch), the segment]
sub trace_segments
{
	my ($file) = @_;
	open(my $fh, '<:raw', $file) or return ();
	local $/;
	my $log = <$fh>;
	close $fh;
	my @segs;
	for my $seg (split /\n(?=-{20,} \d{4}-)/, $log)
	{
		next unless $seg =~ m{^-{20,} (\d{4})-(\d\d)-(\d\d)\s+(\d\d):(\d\d):(\d\d(?:\.\d+)?)};
		push @segs, [ Time::Local::timelocal(0, $5, $4, $3, $2 - 1, $1) + $6, $seg ];
	}
	return @segs;
}

# the NOTIFYs of an event (of one DeviceID) a trace shows received: [time, message], each once
sub notify_times
{
	my ($event, $code, $file) = @_;
	my @n;
	for my $seg (trace_segments($file // $strace))
	{
		next unless $seg->[1] =~ m{received.*?(NOTIFY sip:.*)}s;
		my $m = $1;
		next unless $m =~ m{^Event: \Q$event\E}mi && (!defined $code || $m =~ m{<DeviceID>$code</DeviceID>});
		my ($cid, $cseq) = ($m =~ m{^Call-ID:\s*(\S+)}mi, $m =~ m{^CSeq:\s*(\d+)}mi);
		next if grep { $_->[2] eq "$cid $cseq" } @n;	# a retransmission
		push @n, [ $seg->[0], $m, "$cid $cseq" ];
	}
	return @n;
}

# how many keepalives a trace shows received after a time
sub keepalives_after
{
	my ($t, $file) = @_;
	return scalar(grep { $_->[0] > $t && $_->[1] =~ m{received.*<CmdType>Keepalive</CmdType>}s } trace_segments($file));
}
my $mapped = '34010000001320000099';
my $lon_of = sub { $_[0][1] =~ m{<Longitude>([\d.]+)</Longitude>} ? $1 : '?' };
ok(wait_for(sub { notify_times('MobilePosition', '34020100001320000003') }),
	'a second shared channel\'s known position is sent at once too');
# a change: sent when due (the channel was sent at the subscription, less than an Interval ago, maybe)
$district->safe_psql('postgres', q{INSERT INTO vms.mobile_position (device_code, at, geom, speed) VALUES
	('34020100001320000002', now(), ST_SetSRID(ST_MakePoint(117.6, 31.25), 4326), 20)});
ok(wait_for(sub { grep { $lon_of->($_) eq '117.600000' } notify_times('MobilePosition', $mapped) }),
	'a changed position of the mapped channel is NOTIFYed');
my ($p1) = grep { $lon_of->($_) eq '117.600000' } notify_times('MobilePosition', $mapped);
# two more changes at once: only the newest goes, an Interval after the last NOTIFY of the channel, unasked
my $committed = $district->safe_psql('postgres', q{
INSERT INTO vms.mobile_position (device_code, at, geom, speed) VALUES
	('34020100001320000002', now(), ST_SetSRID(ST_MakePoint(117.7, 31.25), 4326), 20);
INSERT INTO vms.mobile_position (device_code, at, geom, speed) VALUES
	('34020100001320000002', now(), ST_SetSRID(ST_MakePoint(117.8, 31.25), 4326), 20);
-- a newer report of the other channel's position, the same position: no change
INSERT INTO vms.mobile_position (device_code, at, geom)
SELECT device_code, now(), geom FROM vms.mobile_position WHERE device_code = '34020100001320000003';
SELECT extract(epoch FROM clock_timestamp());});
ok(wait_for(sub { grep { $lon_of->($_) eq '117.800000' } notify_times('MobilePosition', $mapped) }),
	'the newest of two changes made within the Interval arrives at its end without another change (none lost)')
  or diag(`tail -40 $strace`);
my ($p3) = grep { $lon_of->($_) eq '117.800000' } notify_times('MobilePosition', $mapped);
cmp_ok($p3->[0] - $p1->[0], '>=', 2, 'not before an Interval (4 s) after the channel\'s last NOTIFY (2 s allowed for sending)');
# (on a machine so loaded that the two changes were committed over 2 s after the NOTIFY, the first may be due)
my $late = $committed > $p1->[0] + 2;
SKIP:
{
	skip 'the two changes were committed too late in the Interval on this loaded machine', 1 if $late;
	ok(!(grep { $lon_of->($_) eq '117.700000' } notify_times('MobilePosition', $mapped)),
		'the change overtaken within the Interval is not sent (the newest wins)');
}
# quiet: three keepalives after the last NOTIFY (over 10 s, more than two Intervals) and nothing more
ok(wait_for(sub { keepalives_after($p3->[0], $strace) >= 3 }), 'three keepalives after the last position NOTIFY');
like(join(',', map { $lon_of->($_) } notify_times('MobilePosition', $mapped)),
	$late ? qr/^117\.500000,117\.600000,(117\.700000,)?117\.800000$/ : qr/^117\.500000,117\.600000,117\.800000$/,
	'the mapped channel: its known position, then each change sent, nothing while it did not change');
is(scalar(notify_times('MobilePosition', '34020100001320000003')), 1,
	'the other channel: one NOTIFY, none for a newer report of the same position');
$district->safe_psql('postgres', q{
BEGIN;
SELECT vms.alarm_raise('34020100001320000004', 'motion_detection', 1::smallint, 'manual');
SELECT vms.alarm_raise('34020100001320000005', 'video_loss', 1::smallint, 'manual');
SELECT vms.alarm_raise('34020100001320000006', 'tripwire', 3::smallint, 'manual');
SELECT vms.alarm_raise('34020100001320000002', 'intrusion', 2::smallint, 'manual');
COMMIT;
});
ok(wait_for(sub { my @a = notifies('Alarm'); (grep { m{<DeviceID>34020100001320000004</DeviceID>} } @a)
			&& (grep { m{<DeviceID>34010000001320000099</DeviceID>} } @a) }),
	'the alarms of the subscription\'s priorities and methods arrive as NOTIFY Alarm in its dialog')
  or diag(`tail -60 $strace`);
is(join(',', sort map { m{<DeviceID>(\d+)</DeviceID>} ? $1 : '?' } notifies('Alarm')), '34010000001320000099,34020100001320000004',
	'only those two: a device alarm (method 2) and a priority 3 alarm raised with them are not sent');
{
	open(my $fh, '<:raw', $strace) or die;
	local $/;
	my $log = <$fh>;
	ok($log !~ m{MESSAGE sip:[^\n]*\n(?:(?!\n-{20,}).)*<CmdType>Alarm</CmdType>}s, 'and no alarm as a MESSAGE beside the subscription');
}
ok($district->poll_query_until('postgres', q{
SELECT NOT subscriptions ? 'MobilePosition' AND subscriptions ? 'Alarm' FROM vms.sip_upstream_state WHERE upstream = 'city'}),
	'the MobilePosition subscription runs out (Expires 45); the Alarm one goes on');
$subscriber->kill_kill;
$district->safe_psql('postgres', "SELECT vms.sip_alter_upstream('city', enabled => false)");
ok($district->poll_query_until('postgres', "SELECT state = 'disabled' FROM vms.sip_upstream_state WHERE upstream = 'city'"),
	'a disabled upstream is left alone');

# A device's answers to what an upper platform relayed to it are rebuilt, never forwarded: sipp plays the
# upper platform (upper_relay.xml: RecordInfo SN 41, PresetQuery SN 42, PTZ SN 43 for a channel it knows as
# $hcode, named 西门) and a hostile device (device_relay.xml, device_relay_ooc.xml) that answers with elements
# not listed, over-long values, entities, its own codes and names. What sipp received is compared byte for
# byte with what is written here by hand (GB2312 bytes: the upstream's charset).
SKIP:
{
	skip 'sipp relay scenarios not present', 29 unless -f "$sippdir/device_relay_ooc.xml";
	my ($hdev, $hch, $hcode) = ('34020100001180000003', '34020300001320000001', '34010000001320000098');
	$district->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('$hdev', 'hostile NVR');
SELECT vms.device_set_password('$hdev', '12345678', '3402010000');
INSERT INTO vms.channel (code, device_code, name, civil_code, online) VALUES ('$hch', '$hdev', '真名', '340203', true);
SELECT vms.sip_share('city', '{"regions": ["340201"], "channels": ["34020200001320000001", "$hch"]}');
SELECT vms.sip_share_map('city', '$hch', '$hcode', '西门');
});
	my $dtrace = "$tmp/device_relay.log";
	my ($dout, $derr) = ('', '');
	my $hostile_dev = IPC::Run::start([ 'sipp', "127.0.0.1:$district_port", '-sf', "$sippdir/device_relay.xml",
			'-oocsf', "$sippdir/device_relay_ooc.xml", '-m', '1', '-s', $lower_id, '-key', 'domain', '3402010000',
			'-key', 'device', $hdev, '-key', 'channel', $hch, '-au', $hdev, '-ap', '12345678',
			'-auth_uri', "$lower_id\@3402010000", '-i', '127.0.0.1', '-p', PostgreSQL::Test::Cluster::get_free_port(),
			'-t', 'u1', '-nd', '-nostdin', '-trace_msg', '-message_file', $dtrace ],
		'>', \$dout, '2>', \$derr);
	ok($district->poll_query_until('postgres', "SELECT online FROM vms.device WHERE code = '$hdev'"),
		'the hostile device (sipp) registers to the district')
	  or diag("$dout $derr");
	my $rtrace = "$tmp/upper_relay.log";
	my ($uout, $uerr) = ('', '');
	my $relay_upper = IPC::Run::start([ 'sipp', '-sf', "$sippdir/upper_relay.xml", '-m', '100000', '-key', 'upper', $upper_id,
			'-key', 'lower', $lower_id, '-key', 'channel', $hcode, '-key', 'vms', "127.0.0.1:$district_port",
			@sipp_common, '-trace_msg', '-message_file', $rtrace ],
		'>', \$uout, '2>', \$uerr);
	$district->safe_psql('postgres', "SELECT vms.sip_alter_upstream('city', enabled => true)");

	# the MANSCDP bodies of the MESSAGEs a trace shows (sent or received), by "CmdType SN", each
	# transaction once (a retransmission has its Call-ID again)
	my $bodies = sub {
		my ($file, $root) = @_;
		my (%by, %seen);
		open(my $fh, '<:raw', $file) or return \%by;
		local $/;
		my $log = <$fh>;
		close $fh;
		for my $m (split /\n-{20,}[^\n]*\n/, $log)
		{
			next unless $m =~ s/\A.*?(?=^MESSAGE sip:)//ms;
			my ($cid) = $m =~ m{^Call-ID:\s*(\S+)}mi;
			my ($clen) = $m =~ m{^Content-Length:\s*(\d+)}mi;
			next unless defined $clen && $m =~ m{\r?\n\r?\n(.*)\z}s;
			my $body = substr($1, 0, $clen);
			next unless $body =~ m{<$root>.*<CmdType>(\w+)</CmdType>.*?<SN>(\d+)</SN>}s;
			my $k = "$1 $2";
			next if defined $cid && $seen{$cid}++;
			push @{ $by{$k} }, $body;
		}
		return \%by;
	};
	ok(wait_for(sub { my $b = $bodies->($rtrace, 'Response');
				@{ $b->{'RecordInfo 41'} // [] } >= 2 && $b->{'PresetQuery 42'} && $b->{'DeviceControl 43'} }),
		'the upper platform gets the answers: RecordInfo in two pages, PresetQuery, DeviceControl')
	  or diag(`tail -60 $rtrace` . "\n$uout $uerr");
	my $got = $bodies->($rtrace, 'Response');
	my $sent = $bodies->($dtrace, 'Response');
	my $gb = sub { Encode::encode('euc-cn', $_[0]) };
	my $head = qq{<?xml version="1.0" encoding="GB2312"?>\r\n};
	my $item = sub { "<Item><DeviceID>$hcode</DeviceID><Name>" . $gb->("\x{897f}\x{95e8}") . "</Name>$_[0]</Item>" };
	my $records = sub {
		my ($num, @items) = @_;
		return $head . "<Response>\r\n<CmdType>RecordInfo</CmdType>\r\n<SN>41</SN>\r\n<DeviceID>$hcode</DeviceID>\r\n<Name>"
		  . $gb->("\x{897f}\x{95e8}") . "</Name>\r\n<SumNum>3</SumNum>\r\n<RecordList Num=\"$num\">\r\n"
		  . join("\r\n", map { $item->($_) } @items) . "\r\n</RecordList>\r\n</Response>\r\n";
	};
	my %want = (
		'RecordInfo 41 page 1' => $records->(2,
			'<FilePath>/rec/a&lt;b&gt;&amp;c.ps</FilePath><Address>Gate ' . $gb->("\x{4e2d}") . '</Address>'
			  . '<StartTime>2026-01-10T00:00:00</StartTime><EndTime>2026-01-10T01:00:00</EndTime><Secrecy>0</Secrecy><Type>time</Type>',
			'<StartTime>2026-01-10T01:00:00</StartTime><EndTime>2026-01-10T02:00:00</EndTime><Secrecy>0</Secrecy><Type>time</Type>'
			  . "<RecorderID>$hcode</RecorderID><FileSize>1024</FileSize>"),
		'RecordInfo 41 page 2' => $records->(1,
			'<FilePath>/rec/2.ps</FilePath><StartTime>2026-01-10T03:00:00</StartTime><EndTime>2026-01-10T04:00:00</EndTime>'
			  . '<Secrecy>0</Secrecy><StreamNumber>0</StreamNumber>'),
		'PresetQuery 42' => $head . "<Response>\r\n<CmdType>PresetQuery</CmdType>\r\n<SN>42</SN>\r\n<DeviceID>$hcode</DeviceID>\r\n"
		  . "<SumNum>2</SumNum>\r\n<PresetList Num=\"2\">\r\n<Item><PresetID>1</PresetID><PresetName>Gate &lt;A&gt; &amp; "
		  . $gb->("\x{4e2d}") . "</PresetName></Item>\r\n<Item><PresetID>2</PresetID></Item>\r\n</PresetList>\r\n</Response>\r\n",
		'DeviceControl 43' => $head . "<Response>\r\n<CmdType>DeviceControl</CmdType>\r\n<SN>43</SN>\r\n<DeviceID>$hcode</DeviceID>\r\n"
		  . "<Result>OK</Result>\r\n</Response>\r\n");
	my %have = (
		'RecordInfo 41 page 1' => $got->{'RecordInfo 41'}[0], 'RecordInfo 41 page 2' => $got->{'RecordInfo 41'}[1],
		'PresetQuery 42' => $got->{'PresetQuery 42'}[0], 'DeviceControl 43' => $got->{'DeviceControl 43'}[0]);
	# what the device sent for each (found by the order of its pages), forwarded as before: SN and code swapped
	my %device_sent;
	for my $k (keys %$sent)
	{
		my ($cmd) = split / /, $k;
		my @pages = @{ $sent->{$k} };
		my %sn = (RecordInfo => 41, PresetQuery => 42, DeviceControl => 43);
		my @names = $cmd eq 'RecordInfo' ? ('RecordInfo 41 page 1', 'RecordInfo 41 page 2') : ("$cmd $sn{$cmd}");
		for my $i (0 .. $#names)
		{
			next unless defined $pages[$i];
			(my $fwd = $pages[$i]) =~ s{<SN>\d+</SN>}{<SN>$sn{$cmd}</SN>};
			$fwd =~ s{<DeviceID>$hch</DeviceID>}{<DeviceID>$hcode</DeviceID>}g;
			$device_sent{ $names[$i] } = $fwd;
		}
	}
	for my $k (sort keys %want)
	{
		my $same = defined $have{$k} && $have{$k} eq $want{$k};
		ok($same, "$k: the exact bytes rebuilt (listed fields only, bounded, escaped; the code and name the upper platform knows)")
		  or diag("got:\n" . ($have{$k} // '(none)') . "\nwanted:\n$want{$k}");
		# the same comparison on other bytes fails: the device's answer forwarded with SN and code swapped (as
		# before), or the wanted bytes with one byte changed
		ok(defined $device_sent{$k} && $device_sent{$k} ne $want{$k} && ($want{$k} =~ s/<SN>/<Sn>/r) ne $want{$k},
			"$k: the comparison fails on the device's answer forwarded with SN and code swapped");
	}
	my $all = join('', grep { defined } values %have);
	ok($all ne '' && $all !~ /<Evil|<Script|<Deep|<Extra|<Info>|firmware|rm -rf|NNNN|pppp|PPPP|own name|bogus|yesterday|no id|$hch|$hdev/,
		'nothing of the hostile fields goes up: no element not listed, no over-long value, no device code or name');

	# positions on change: this upper platform subscribes with Interval 3600 (upper_relay.xml). The channel's
	# first position goes at once, not an Interval (an hour) later; a change within the Interval is held back
	ok($district->poll_query_until('postgres', "SELECT subscriptions #>> '{MobilePosition,interval}' = '3600'
		FROM vms.sip_upstream_state WHERE upstream = 'city'"), 'the upper platform subscribes to positions, Interval 3600');
	$district->safe_psql('postgres', qq{INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
		('$hch', now(), ST_SetSRID(ST_MakePoint(117.9, 31.5), 4326))});
	ok(wait_for(sub { grep { $_->[1] =~ m{<Longitude>117\.900000</Longitude>} } notify_times('MobilePosition', $hcode, $rtrace) }),
		'a position reported for a shared channel is NOTIFYed at once (on the change, not at the Interval)')
	  or diag(`tail -40 $rtrace`);
	my ($first) = notify_times('MobilePosition', $hcode, $rtrace);
	$district->safe_psql('postgres', qq{INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
		('$hch', now(), ST_SetSRID(ST_MakePoint(118.1, 31.5), 4326))});
	ok(wait_for(sub { keepalives_after($first->[0], $rtrace) >= 2 }), 'two keepalives later (over 5 s)');
	is(join(',', map { $_->[1] =~ m{<Longitude>([\d.]+)</Longitude>} ? $1 : '?' } notify_times('MobilePosition', $hcode, $rtrace)),
		'117.900000', 'the change within the Interval is held back: at most one NOTIFY per channel an Interval');

	# a burst of reports, each a transaction of its own waking the worker: the worker compares at most once a
	# second however often it is woken (a compare then looks only at the devices reported since). The number of
	# compares is in the state's subscriptions with the time it was counted (written at each keepalive's state
	# record); between two counts at t0 and t1 there can be at most floor(t1 - t0) + 1 of them. Woken at every
	# report (every 200 ms at most, as before) the 5 s burst alone would make about 25.
	my $count = sub {
		split /\|/, $district->safe_psql('postgres', q{SELECT subscriptions #>> '{MobilePosition,checks}',
			subscriptions #>> '{MobilePosition,checks_at}' FROM vms.sip_upstream_state WHERE upstream = 'city'});
	};
	my ($c0, $t0) = $count->();
	$district->safe_psql('postgres', qq{DO \$\$ BEGIN
		FOR i IN 1 .. 100 LOOP
			INSERT INTO vms.mobile_position (device_code, at, geom)
			VALUES ('$hch', now(), ST_SetSRID(ST_MakePoint(118 + i / 1000.0, 31.5), 4326));
			COMMIT;
			PERFORM pg_sleep(0.05);
		END LOOP; END \$\$});
	my $burst_end = $district->safe_psql('postgres', 'SELECT extract(epoch FROM clock_timestamp())');
	ok(wait_for(sub { my (undef, $t) = $count->(); defined $t && $t > $burst_end }),
		'the compares are counted again after the burst of 100 reports');
	my ($c1, $t1) = $count->();
	cmp_ok($c1 - $c0, '<=', int($t1 - $t0) + 1,
		sprintf('at most one compare a second however often reports wake the worker (%d in %.1f s)', $c1 - $c0, $t1 - $t0));
	cmp_ok($c1 - $c0, '>=', 2, 'the reports did wake it (no periodic compare within an Interval of 3600 s)');
	$relay_upper->kill_kill;
	$hostile_dev->kill_kill;
	$district->safe_psql('postgres', "SELECT vms.sip_alter_upstream('city', enabled => false)");
	ok($district->poll_query_until('postgres', "SELECT state = 'disabled' FROM vms.sip_upstream_state WHERE upstream = 'city'"),
		'the upstream is disabled again');

	# a long answer: a device (device_relay.xml with an out-of-call half written here) answers a relayed
	# RecordInfo with SumNum 120 in two MESSAGEs of 60 small items, each over 8,000 bytes. Rebuilt, every item
	# grows (the code and name the upper platform knows), and the answer goes up (upper_records.xml, SN 51) in
	# pages of at most 8,000 bytes, as catalog answers are paged: each with SumNum 120, its Num its own items.
	my ($pdev, $pch, $pcode) = ('34020100001180000004', '34020300001320000002', '34010000001320000097');
	$district->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('$pdev', 'NVR with many records');
SELECT vms.device_set_password('$pdev', '12345678', '3402010000');
INSERT INTO vms.channel (code, device_code, name, civil_code, online) VALUES ('$pch', '$pdev', '北门', '340203', true);
SELECT vms.sip_share('city', '{"regions": ["340201"], "channels": ["34020200001320000001", "$hch", "$pch"]}');
SELECT vms.sip_share_map('city', '$pch', '$pcode', '北门');
});
	my $page = sub {
		my ($tag, @items) = @_;
		return qq{  <send retrans="500">
    <![CDATA[

      MESSAGE sip:[service]@[domain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      Max-Forwards: 70
      From: <sip:[device]@[domain]>;tag=[pid]SIPpTag$tag\[call_number]
      To: <sip:[service]@[domain]>
      Call-ID: p$tag///[call_id]
      CSeq: 1 MESSAGE
      Contact: <sip:[device]@[local_ip]:[local_port]>
      Content-Type: Application/MANSCDP+xml
      User-Agent: sipp-gb28181
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Response>
      <CmdType>RecordInfo</CmdType>
      <SN>[\$sn]</SN>
      <DeviceID>[channel]</DeviceID>
      <Name>NVR</Name>
      <SumNum>120</SumNum>
      <RecordList Num="} . scalar(@items) . qq{">
} . join('', map { "      $_\n" } @items) . qq{      </RecordList>
      </Response>
    ]]>
  </send>
  <recv response="200"/>
};
	};
	my @ritems = map {
		my $t = sprintf('2026-01-10T%02d:%02d:00', int($_ / 60), $_ % 60);
		(my $e = $t) =~ s/:00$/:59/;
		"<Item><DeviceID>[channel]</DeviceID><Name>NVR</Name><FilePath>/r/$_.ps</FilePath><StartTime>$t</StartTime>"
		  . "<EndTime>$e</EndTime><Type>time</Type></Item>"
	} 0 .. 119;
	my $ooc = "$tmp/device_records_ooc.xml";
	open(my $oh, '>', $ooc) or die;
	print $oh qq{<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="gb28181 device: a RecordInfo answer of 120 items in two MESSAGEs (out-of-call)">
  <recv request="MESSAGE">
    <action>
      <ereg regexp="&lt;SN&gt;[[:space:]]*([0-9]+)[[:space:]]*&lt;/SN&gt;" search_in="body" assign_to="sn_all,sn"/>
      <ereg regexp="&lt;CmdType&gt;RecordInfo&lt;/CmdType&gt;" search_in="body" check_it="false" assign_to="is_records"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag10[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      User-Agent: sipp-gb28181
      Content-Length: 0

    ]]>
  </send>
  <nop next="records" test="is_records"/>
  <nop next="end"/>
  <label id="records"/>
} . $page->('31', @ritems[0 .. 59]) . $page->('32', @ritems[60 .. 119]) . qq{  <label id="end"/>
  <Reference variables="sn_all"/>
</scenario>
};
	close $oh;
	my $ptrace = "$tmp/device_records.log";
	my ($pout, $perr) = ('', '');
	my $records_dev = IPC::Run::start([ 'sipp', "127.0.0.1:$district_port", '-sf', "$sippdir/device_relay.xml",
			'-oocsf', $ooc, '-m', '1', '-s', $lower_id, '-key', 'domain', '3402010000',
			'-key', 'device', $pdev, '-key', 'channel', $pch, '-au', $pdev, '-ap', '12345678',
			'-auth_uri', "$lower_id\@3402010000", '-i', '127.0.0.1', '-p', PostgreSQL::Test::Cluster::get_free_port(),
			'-t', 'u1', '-nd', '-nostdin', '-trace_msg', '-message_file', $ptrace ],
		'>', \$pout, '2>', \$perr);
	ok($district->poll_query_until('postgres', "SELECT online FROM vms.device WHERE code = '$pdev'"),
		'a device with many records (sipp) registers to the district')
	  or diag("$pout $perr");
	my $qtrace = "$tmp/upper_records.log";
	my ($qout, $qerr) = ('', '');
	my $records_upper = IPC::Run::start([ 'sipp', '-sf', "$sippdir/upper_records.xml", '-m', '100000', '-key', 'upper',
			$upper_id, '-key', 'lower', $lower_id, '-key', 'channel', $pcode, '-key', 'vms', "127.0.0.1:$district_port",
			@sipp_common, '-trace_msg', '-message_file', $qtrace ],
		'>', \$qout, '2>', \$qerr);
	$district->safe_psql('postgres', "SELECT vms.sip_alter_upstream('city', enabled => true)");
	my $nums = sub { my $n = 0; $n += $_ =~ m{<RecordList Num="(\d+)"} ? $1 : 0 for @{ $_[0] }; $n };
	ok(wait_for(sub { $nums->($bodies->($qtrace, 'Response')->{'RecordInfo 51'} // []) >= 120 }),
		'the upper platform gets the whole long answer')
	  or diag(`tail -40 $qtrace` . "\n$qout $qerr\n" . `tail -40 $ptrace`);
	my @up = @{ $bodies->($qtrace, 'Response')->{'RecordInfo 51'} // [] };
	my @down = map { @$_ } values %{ $bodies->($ptrace, 'Response') };
	cmp_ok(scalar(@up), '>=', 3, 'in more pages (' . scalar(@up) . ') than the device sent (2)');
	ok(@down == 2 && !(grep { length($_) <= 8000 } @down), 'the device\'s two MESSAGEs were each over 8,000 bytes')
	  or diag(join(',', map { length } @down));
	ok(@up && !(grep { length($_) > 8000 } @up), 'every page up is at most 8,000 bytes (' . join(',', map { length } @up) . ')');
	is(join(',', map { m{<SumNum>(\d+)</SumNum>} ? $1 : '?' } @up), join(',', ('120') x @up), 'every page with SumNum 120');
	ok(@up && !(grep { my $n = () = m{<Item>}g; !m{<RecordList Num="$n">} } @up), 'each page\'s Num is the items on it');
	my $starts = sub { join(',', map { m{<StartTime>([^<]+)</StartTime>}g } @_) };
	is($starts->(@up), join(',', map { sprintf('2026-01-10T%02d:%02d:00', int($_ / 60), $_ % 60) } 0 .. 119),
		'the items add up to SumNum: all 120, each once, in order');
	ok(!(grep { m{<DeviceID>$pch</DeviceID>|<Name>NVR</Name>} } @up) && (grep { m{<DeviceID>$pcode</DeviceID>} } @up) == @up,
		'under the code the upper platform knows (no page with the device\'s code or name)');
	$records_upper->kill_kill;
	$records_dev->kill_kill;
	$district->safe_psql('postgres', "SELECT vms.sip_alter_upstream('city', enabled => false)");
	ok($district->poll_query_until('postgres', "SELECT state = 'disabled' FROM vms.sip_upstream_state WHERE upstream = 'city'"),
		'the upstream is disabled once more');
}

###########################################################################
# 2. a city vms above the district
###########################################################################
my $city_id = '34010000002000000002';
my $city_port = PostgreSQL::Test::Cluster::get_free_port();
my $city = sip_node('city', $city_id, $city_port);
# the district is a lower platform of the city's domain in the city's ledger, with its password
my $as_lower = '34010000002000000201';
$city->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('$as_lower', 'district platform');
SELECT vms.device_set_password('$as_lower', 'district-pass', '3401000000');
});
$district->safe_psql('postgres', qq{
SELECT vms.sip_add_upstream('cityvms', '127.0.0.1', $city_port, '$city_id', 'district-pass',
                            '{"local_id": "$as_lower", "keepalive_interval": 5, "catalog_page_size": 7, "reconcile_interval": 3600}');
SELECT vms.sip_share('cityvms', '{"regions": ["340201"], "channels": ["34020200001320000001"]}');
SELECT vms.sip_share_map('cityvms', '34020100001320000002', '34010000001320000099', '南门');
});
ok($city->poll_query_until('postgres', "SELECT online FROM vms.device WHERE code = '$as_lower'"),
	'the district registers to the city (digest with qop, SHA-256 as the city offers it, checked by the city) and is online there')
  or diag(state_of($district, 'cityvms'));
ok($district->poll_query_until('postgres', "SELECT state = 'registered' FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
	'the district sees itself registered');
ok($city->poll_query_until('postgres',
		"SELECT last_keepalive_at IS NOT NULL FROM vms.device_session WHERE device_code = '$as_lower'"),
	'the city receives the district\'s keepalives');
my $rid = $city->safe_psql('postgres', "SELECT vms.sip_query_catalog('$as_lower')");
is($city->safe_psql('postgres',
		"SELECT state || '|' || (progress ->> 'received') || '|' || (progress ->> 'sum_num') || '|' || (progress ->> 'pages') FROM vms.sip_request_wait($rid, 60)"),
	'done|46|46|7', 'the city\'s Catalog query: 46 channels in 7 pages of at most 7, SumNum 46');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE device_code = '$as_lower'"), '46',
	'the 46 shared channels are in the city\'s ledger, under the district');
is($city->safe_psql('postgres', "SELECT name FROM vms.channel WHERE code = '34010000001320000099'"), '南门',
	'the mapped channel under its custom code and name');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE code::text LIKE '340202%' OR code = '34020100001320000002'"),
	'1', 'nothing the district did not share');
$rid = $city->safe_psql('postgres', "SELECT vms.sip_query_device_info('$as_lower')");
is($city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rid, 30)"), 'done', 'the city\'s DeviceInfo query is answered');
like($city->safe_psql('postgres', "SELECT result::text FROM vms.sip_request WHERE id = $rid"), qr/"Channel": "46"/,
	'DeviceInfo counts the shared channels');

# the city subscribes to the district's catalog: what changes in the share is NOTIFYed
$rid = $city->safe_psql('postgres', "SELECT vms.sip_subscribe('$as_lower', 'Catalog', 600)");
is($city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rid, 30)"), 'done', 'the city subscribes to the district\'s catalog');
ok($district->poll_query_until('postgres', "SELECT count(*) = 46 FROM vms.sip_share_told WHERE upstream = 'cityvms'"),
	'the district records what the city was told');
$district->safe_psql('postgres', q{
UPDATE vms.channel SET online = false WHERE code = '34020100001320000010';
UPDATE vms.channel SET name = '北门' WHERE code = '34020100001320000011';
INSERT INTO vms.channel (code, device_code, name, civil_code, online)
VALUES ('34020100001320000046', '34020100001180000001', '新增', '340201', true);
SELECT vms.sip_share('cityvms', '{"regions": ["340201"]}');
});
ok($city->poll_query_until('postgres', q{
SELECT (SELECT status FROM vms.channel_status WHERE code = '34020100001320000010') = 'OFF'
   AND (SELECT name FROM vms.channel WHERE code = '34020100001320000011') = '北门'
   AND EXISTS (SELECT 1 FROM vms.channel WHERE code = '34020100001320000046')
   AND (SELECT status FROM vms.channel_status WHERE code = '34020200001320000001') = 'DEL'}),
	'NOTIFY: OFF, UPDATE, ADD, and DEL for the channel that left the share, each applied by the city')
  or diag($city->safe_psql('postgres', q{SELECT code, status FROM vms.channel_status ORDER BY reported_at DESC LIMIT 5}));
$district->safe_psql('postgres', "UPDATE vms.channel SET online = true WHERE code = '34020100001320000010'");
ok($city->poll_query_until('postgres', "SELECT status = 'ON' FROM vms.channel_status WHERE code = '34020100001320000010'"),
	'NOTIFY: ON');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE code::text LIKE '340202%' AND code <> '34020200001320000001'"),
	'0', 'still nothing that was never shared');

# alarms of shared channels are forwarded (under the code the city knows), others not
ok($district->poll_query_until('postgres', "SELECT alarm_cursor IS NOT NULL FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
	'alarm forwarding has started (from the newest alarm: no history)');
$district->safe_psql('postgres', q{
SELECT vms.alarm_raise('34020100001320000002', 'motion_detection', 2::smallint, 'manual', '{"description": "南门 有人"}');
SELECT vms.alarm_raise('34020200001320000003', 'tamper', 1::smallint, 'manual');
SELECT vms.alarm_raise('34020100001320000005', 'blur', 3::smallint, 'inspection');
});
ok($city->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM vms.alarm WHERE source = 'sip' AND code IN ('34010000001320000099', '34020100001320000005')}),
	'two alarms of shared channels arrive at the city')
  or diag($city->safe_psql('postgres', 'SELECT code, fault_type, level, source FROM vms.alarm'));
is($city->safe_psql('postgres', qq{SELECT string_agg(code || ' ' || fault_type || ' ' || level, ', ' ORDER BY code) FROM vms.alarm
                                    WHERE source = 'sip' AND detail ->> 'reporter' = '$as_lower'}),
	'34010000001320000099 motion_detection 2, 34020100001320000005 device_fault 3',
	'under the codes the city knows, with their type (an inspection finding as a device fault) and level');
is($city->safe_psql('postgres', q{SELECT count(*) FROM vms.alarm WHERE code::text LIKE '340202%'}), '0',
	'the alarm of a channel not shared stays at the district');

# the city subscribes to the district's alarms and positions too
for my $ev ('Alarm', 'MobilePosition')
{
	my $s = $city->safe_psql('postgres', "SELECT vms.sip_subscribe('$as_lower', '$ev', 600)");
	is($city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($s, 30)"), 'done', "the city subscribes to the district's $ev");
}
ok($district->poll_query_until('postgres', q{
SELECT subscriptions ?& ARRAY['Catalog', 'Alarm', 'MobilePosition'] FROM vms.sip_upstream_state WHERE upstream = 'cityvms'}),
	'the district serves the city\'s three subscriptions');
$district->safe_psql('postgres', q{INSERT INTO vms.mobile_position (device_code, at, geom)
	VALUES ('34020100001320000007', now(), ST_SetSRID(ST_MakePoint(117.625, 31.375), 4326))});
ok($city->poll_query_until('postgres', qq{SELECT EXISTS (SELECT 1 FROM vms.mobile_position WHERE device_code = '$as_lower'
	AND abs(ST_X(geom) - 117.625) < 1e-6 AND abs(ST_Y(geom) - 31.375) < 1e-6)}),
	'a position of a shared channel reaches the city (NOTIFY MobilePosition)');
$district->safe_psql('postgres', q{SELECT vms.alarm_raise('34020100001320000008', 'intrusion', 1::smallint, 'manual')});
ok($city->poll_query_until('postgres', q{SELECT EXISTS (SELECT 1 FROM vms.alarm WHERE code = '34020100001320000008'
	AND fault_type = 'intrusion' AND source = 'sip')}), 'an alarm reaches the city in its Alarm subscription');
my $unsub = $city->safe_psql('postgres', "SELECT vms.sip_unsubscribe('$as_lower', 'Alarm')");
$city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($unsub, 30)");
ok($district->poll_query_until('postgres', q{
SELECT NOT subscriptions ? 'Alarm' AND subscriptions ? 'Catalog' FROM vms.sip_upstream_state WHERE upstream = 'cityvms'}),
	'the city\'s unsubscription (Expires: 0) ends it at the district');
$district->safe_psql('postgres', q{SELECT vms.alarm_raise('34020100001320000009', 'intrusion', 2::smallint, 'manual')});
ok($city->poll_query_until('postgres', q{SELECT EXISTS (SELECT 1 FROM vms.alarm WHERE code = '34020100001320000009' AND source = 'sip')}),
	'alarms still reach the city without the subscription (MESSAGE)');

# status never drifts: a status the city holds wrongly is put right by the periodic full push
$city->safe_psql('postgres', "UPDATE vms.channel_status SET status = 'OFF' WHERE code = '34020100001320000001'");
$district->safe_psql('postgres', q{SELECT vms.sip_alter_upstream('cityvms', options => '{"catalog_push_interval": 10}')});
ok($city->poll_query_until('postgres', "SELECT status = 'ON' FROM vms.channel_status WHERE code = '34020100001320000001'"),
	'the full push (every catalog_push_interval: the whole share, Event UPDATE with its Status) puts it right');
$district->safe_psql('postgres', q{SELECT vms.sip_alter_upstream('cityvms', options => '{"catalog_push_interval": 0}')});

# a virtual-organisation / business-group tree presented upward (catalog_tree): the city builds the same tree
$district->safe_psql('postgres', q{
INSERT INTO vms.catalog_node (code, name) VALUES ('34020100002150000001', '治安');
INSERT INTO vms.catalog_node (code, name, business_group) VALUES ('34020100002160000001', '东区', '34020100002150000001');
INSERT INTO vms.catalog_node (code, name, parent_code, business_group)
VALUES ('34020100002160000002', '东区一街', '34020100002160000001', '34020100002150000001');
INSERT INTO vms.catalog_member (node_code, channel_code) VALUES ('34020100002160000002', '34020100001320000030');
SELECT vms.sip_alter_upstream('cityvms', options => '{"catalog_tree": true}');
});
ok($city->poll_query_until('postgres', q{SELECT EXISTS (SELECT 1 FROM vms.catalog_member
	WHERE node_code = '34020100002160000002' AND channel_code = '34020100001320000030')}),
	'the city gets the district\'s catalogue tree: NOTIFY ADD of its nodes, the channel UPDATEd under its node');
is($city->safe_psql('postgres', q{SELECT string_agg(concat_ws(':', code, name, coalesce(parent_code::text, '-'),
	coalesce(business_group::text, '-')), ', ' ORDER BY code) FROM vms.catalog_node WHERE left(code::text, 10) = '3402010000'}),
	'34020100002150000001:治安:-:-, 34020100002160000001:东区:-:34020100002150000001, '
	  . '34020100002160000002:东区一街:34020100002160000001:34020100002150000001',
	'a business group and two virtual organisations, one under the other, as the district has them');

# INVITE relay: the city INVITEs a shared channel; the district relays it to the device that owns it,
# whose media goes straight to the city's address; BYE ends both legs
my $gbsim = "$root/test/sim/gbsim";
SKIP:
{
	skip 'gbsim or ffmpeg missing', 37 unless -x $gbsim && system('ffmpeg -version >/dev/null 2>&1') == 0;
	system('ffmpeg', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '2',
		'-c:v', 'libx264', '-preset', 'veryfast', '-x264-params', 'aud=1:keyint=25', '-bsf:v', 'h264_mp4toannexb',
		'-f', 'h264', "$tmp/cam.h264") == 0
	  or die 'ffmpeg failed';
	my $cam_dev = '34020100001180000002';
	$district->safe_psql('postgres', qq{
INSERT INTO vms.device (code, name) VALUES ('$cam_dev', 'gbsim NVR');
SELECT vms.device_set_password('$cam_dev', '12345678', '3402010000');
});
	my $sim = IPC::Run::start([ $gbsim, '--server', "127.0.0.1:$district_port", '--server-id', $lower_id,
			'--domain', '3402010000', '--first-code', $cam_dev, '--devices', '1', '--channels', '1', '--keepalive', '2',
			'--media', "$tmp/cam.h264", '--duration', '300', '--control-log', "$tmp/gbsim_ctl.log",
			'--answer-twice', 'PresetQuery' ],
		'>', "$tmp/gbsim.out", '2>', "$tmp/gbsim.err");
	ok($district->poll_query_until('postgres', "SELECT online FROM vms.device WHERE code = '$cam_dev'"),
		'a camera (gbsim) registers to the district');
	my $q = $district->safe_psql('postgres', "SELECT vms.sip_query_catalog('$cam_dev')");
	$district->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($q, 30)");
	my $cam = $district->safe_psql('postgres', "SELECT code FROM vms.channel WHERE device_code = '$cam_dev'");
	$district->safe_psql('postgres', qq{SELECT vms.sip_share('cityvms', '{"regions": ["340201"], "channels": ["$cam"]}')});
	ok($city->poll_query_until('postgres', "SELECT count(*) = 1 FROM vms.channel WHERE code = '$cam'"),
		"its channel $cam reaches the city (NOTIFY ADD)");

	my $mport = PostgreSQL::Test::Cluster::get_free_port();
	my $rtp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $mport, Proto => 'udp') or die "udp: $!";
	my $inv = $city->safe_psql('postgres', "SELECT vms.sip_invite('$cam', '127.0.0.1', $mport)");
	is($city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($inv, 30)"), 'done',
		'the city\'s INVITE is answered 200 through the district by the camera');
	my ($got, $from) = (0, '');
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	my $sel = IO::Select->new($rtp);
	while (!$got && time() < $deadline)
	{
		next unless $sel->can_read(0.5);
		my $buf;
		$rtp->recv($buf, 65536);
		$got = length($buf) >= 12 && (ord(substr($buf, 0, 1)) >> 6) == 2;
	}
	ok($got, 'RTP from the camera arrives at the city\'s media address directly');
	my $bye = $city->safe_psql('postgres', "SELECT vms.sip_bye($inv)");
	is($city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($bye, 30)"), 'done', 'BYE: the call ends');
	# the district audits the relayed INVITE and its end: which upstream, channel, media address, from where
	ok($district->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM vms.audit_log WHERE action = 'sip_upstream_bye'
		AND object = 'cityvms' AND detail ->> 'channel' = '$cam' AND detail ->> 'ended_by' = 'upstream'}),
		'the BYE of the relayed call is in the audit log');
	is($district->safe_psql('postgres', qq{SELECT string_agg(concat_ws(' ', object, detail ->> 'channel', detail ->> 'media',
		detail ->> 'source', detail ->> 'result'), ', ') FROM vms.audit_log WHERE action = 'sip_upstream_invite'}),
		qq{cityvms $cam ["127.0.0.1"] 127.0.0.1:$city_port relayed},
		'the relayed INVITE is in the audit log: upstream, channel, media address, source');

	# media only to media_nets (default: the upstream's own address): an INVITE naming another is refused
	$inv = $city->safe_psql('postgres', "SELECT vms.sip_invite('$cam', '127.0.0.2', $mport)");
	like($city->safe_psql('postgres', "SELECT state || ': ' || coalesce(error, '') FROM vms.sip_request_wait($inv, 30)"),
		qr/^failed: .*488/, 'an INVITE whose SDP names 127.0.0.2 (not the upstream\'s address) is refused: 488');
	is($district->safe_psql('postgres', q{SELECT detail ->> 'result' FROM vms.audit_log WHERE action = 'sip_upstream_invite'
		ORDER BY seq DESC LIMIT 1}), 'media address 127.0.0.2 is outside media_nets', 'and audited as refused');
	$district->safe_psql('postgres', q{SELECT vms.sip_alter_upstream('cityvms', options => '{"media_nets": ["127.0.0.0/8"]}')});
	$inv = $city->safe_psql('postgres', "SELECT vms.sip_invite('$cam', '127.0.0.2', $mport)");
	# (whether gbsim then streams to 127.0.0.2 is gbsim's affair: the call is ended either way)
	$city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($inv, 30)");
	is($district->safe_psql('postgres', q{SELECT concat_ws(' ', detail ->> 'media', detail ->> 'result') FROM vms.audit_log
		WHERE action = 'sip_upstream_invite' ORDER BY seq DESC LIMIT 1}), '["127.0.0.2"] relayed',
		'with media_nets 127.0.0.0/8 the same INVITE is relayed to the device (audited)');
	$bye = $city->safe_psql('postgres', "SELECT vms.sip_bye($inv) WHERE (SELECT state FROM vms.sip_request WHERE id = $inv) = 'done'");
	$city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($bye, 30)") if $bye ne '';

	# a forger: the city's id and IP address, another port (sipp): 403, nothing relayed or audited
	my $audited = $district->safe_psql('postgres', "SELECT count(*) FROM vms.audit_log WHERE action = 'sip_upstream_invite'");
	my $forger_port = PostgreSQL::Test::Cluster::get_free_port();
	my ($fout, $ferr) = ('', '');
	my $forged = IPC::Run::run([ 'sipp', "127.0.0.1:$district_port", '-sf', "$sippdir/upper_forged_invite.xml", '-m', '1',
			'-key', 'upper', $city_id, '-key', 'channel', $cam, '-key', 'vms', "127.0.0.1:$district_port",
			'-i', '127.0.0.1', '-p', $forger_port, '-t', 'u1', '-nd', '-nostdin' ],
		'>', \$fout, '2>', \$ferr);
	ok($forged, 'an INVITE with the upstream\'s id from its address but another port is refused: 403 (sipp)')
	  or diag("$fout $ferr");
	is($district->safe_psql('postgres', "SELECT count(*) FROM vms.audit_log WHERE action = 'sip_upstream_invite'"),
		$audited, 'the forged INVITE never reached the channel lookup (nothing audited, nothing relayed)');
	# a channel the district does not share (any more) is not reached
	$inv = $city->safe_psql('postgres', "SELECT vms.sip_invite('34020200001320000001', '127.0.0.1', $mport)");
	like($city->safe_psql('postgres', "SELECT state || ': ' || coalesce(error, '') FROM vms.sip_request_wait($inv, 30)"),
		qr/^failed: .*404/, 'an INVITE for a channel outside the share: 404');

	# PTZ and RecordInfo from the city, for the camera presented under another code: relayed to the camera
	# under its own code and an SN of the district's, the answers back under the city's code and SN
	$district->safe_psql('postgres', qq{SELECT vms.sip_share_map('cityvms', '$cam', '34010000001320000077', '南门摄像机')});
	ok($city->poll_query_until('postgres', qq{SELECT EXISTS (SELECT 1 FROM vms.channel WHERE code = '34010000001320000077'
		AND device_code = '$as_lower')}), 'the camera reaches the city under its presented code (NOTIFY)');
	sub control_lines
	{
		open(my $fh, '<', "$tmp/gbsim_ctl.log") or return ();
		my @l = map { chomp; [ split /\t/, $_, 4 ] } <$fh>;
		close $fh;
		return @l;
	}
	$city->safe_psql('postgres', q{
CREATE ROLE op LOGIN IN ROLE vms_analyst;
CREATE ROLE gadmin LOGIN IN ROLE vms_grant_admin;
SET SESSION AUTHORIZATION gadmin;
SELECT vms.grant_access('op', 'all', NULL, '{ptz}', 4::smallint);
});
	my $ptz = $city->safe_psql('postgres', "SET ROLE op; SELECT vms.ptz('34010000001320000077', 'left', 128)");
	is($city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($ptz, 30)"), 'done', 'the city\'s PTZ is answered 200');
	ok(wait_for(sub { grep { $_->[1] eq 'DeviceControl' } control_lines() }), 'the camera receives a DeviceControl')
	  or diag(`cat $tmp/gbsim_ctl.log`);
	my ($ctl) = grep { $_->[1] eq 'DeviceControl' } control_lines();
	is(($ctl->[2] // '') . ' ' . (($ctl->[3] // '') =~ m{<PTZCmd>([0-9A-F]{16})</PTZCmd>} ? $1 : ''), "$cam A50F010280000037",
		'for its own code, with the PTZCmd the city built (left at speed 128)');
	my $rec = $city->safe_psql('postgres',
		"SELECT vms.sip_query_records('34010000001320000077', '2026-01-10 00:00+00', '2026-01-10 06:00+00')");
	is($city->safe_psql('postgres', "SELECT state FROM vms.sip_request_wait($rec, 60)"), 'done', 'the city\'s RecordInfo query is answered');
	is($city->safe_psql('postgres', "SELECT concat_ws('|', progress ->> 'sum_num', progress ->> 'pages', result ->> 'records') FROM vms.sip_request WHERE id = $rec"),
		'5|3|5', 'the camera\'s 5 records in 3 pages (gbsim\'s default of 2 a page) reach the city through the district');
	is($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel_record WHERE channel_code = '34010000001320000077'"), '5',
		'stored under the code the city knows');
	ok((grep { $_->[1] eq 'RecordInfo' && $_->[2] eq $cam } control_lines()), 'the camera was asked under its own code');
	is($district->safe_psql('postgres', q{SELECT string_agg(concat_ws(' ', detail ->> 'code', detail #>> '{request,CmdType}',
		detail ->> 'result'), ', ' ORDER BY seq) FROM vms.audit_log WHERE action = 'sip_upstream_control' AND object = 'cityvms'}),
		'34010000001320000077 DeviceControl relayed, 34010000001320000077 RecordInfo relayed', 'both audited at the district');

	# crafted controls of the city (its own SIP address, its worker: vms._device_request wraps any elements
	# after its CmdType, SN and DeviceID): the district never relays a body as it came. A second CmdType, a
	# TeleBoot under an allowed element, a second DeviceID are refused with the refusal's answer (audited);
	# comments and CDATA never reach the camera, which gets only the allowed elements, rebuilt
	my @crafted = (
		[ 'device_control', 'Control', 'DeviceControl', '<TeleBoot>Boot</TeleBoot><CmdType>RecordInfo</CmdType>', 'true', 'failed',
		  '<CmdType> appears twice', 'DeviceControl with TeleBoot and a second CmdType RecordInfo' ],
		[ 'device_control', 'Control', 'DeviceControl',
		  '<PTZCmd>A50F0102800000B7</PTZCmd><Info><ControlPriority>5</ControlPriority><TeleBoot>Boot</TeleBoot></Info>',
		  'true', 'failed', 'TeleBoot in Info is not relayed', 'a TeleBoot nested in <Info>' ],
		[ 'record_info', 'Query', 'RecordInfo',
		  '<DeviceID>34020200001320000001</DeviceID><StartTime>2026-01-10T00:00:00</StartTime><EndTime>2026-01-10T06:00:00</EndTime>',
		  'true', 'done', '<DeviceID> appears twice', 'a RecordInfo with a second DeviceID naming a channel not shared' ],
		[ 'device_control', 'Control', 'DeviceControl',
		  '<!--<TeleBoot>Boot</TeleBoot>--><PTZCmd><![CDATA[A50F0102800000B7]]></PTZCmd>', 'false', 'done', 'relayed',
		  'a PTZCmd in CDATA after a commented-out TeleBoot' ]);
	my $lines_before = scalar(control_lines());
	for my $c (@crafted)
	{
		my ($kind, $root, $cmd, $xml, $answer, $state, $result, $what) = @$c;
		# a refusal is answered (Result ERROR, SumNum 0): the city waits for it; a PTZCmd has no answer but the 200
		my $id = $city->safe_psql('postgres', qq{SELECT vms._device_request('34010000001320000077', '$kind', '$root', '$cmd',
			'$xml'::xml, $answer, NULL, '{}')});
		like($city->safe_psql('postgres', "SELECT state || ' ' || coalesce(result ->> 'records', '') FROM vms.sip_request_wait($id, 30)"),
			$state eq 'done' && $kind eq 'record_info' ? qr/^done 0$/ : qr/^$state /, "$what: $state at the city");
		is($district->safe_psql('postgres', q{SELECT detail ->> 'result' FROM vms.audit_log WHERE action = 'sip_upstream_control'
			ORDER BY seq DESC LIMIT 1}), $result, "$what: audited at the district as $result");
	}
	ok(wait_for(sub { scalar(grep { $_->[1] eq 'DeviceControl' } (control_lines())[$lines_before .. scalar(control_lines()) - 1]) }),
		'the camera receives the relayed PTZCmd');
	my @new_lines = (control_lines())[$lines_before .. scalar(control_lines()) - 1];
	is(join("\n", map { "$_->[1] $_->[2] " . ($_->[3] =~ s{^<\?xml[^>]*\?>}{}r) } @new_lines),
		"DeviceControl $cam <Control><CmdType>DeviceControl</CmdType><SN>" . ($new_lines[0][3] =~ m{<SN>(\d+)</SN>} ? $1 : '?')
		  . "</SN><DeviceID>$cam</DeviceID><PTZCmd>A50F0102800000B7</PTZCmd></Control>",
		'of the four, the camera received only the PTZCmd, rebuilt: no TeleBoot, comment, CDATA or second DeviceID');

	# a camera's answer to a relayed query goes up only when it is a Response of the relayed CmdType that names
	# no element twice: else the district drops it (logged) and answers the city as for a failed relay (the
	# refusal's answer: no presets). gbsim names its PresetList (presets gate and road) twice, then (restarted
	# with --answer-other) answers the PresetQuery as a DeviceStatus
	my $presets_fail = sub {
		my ($what, $why) = @_;
		my $pq = $city->safe_psql('postgres', "SELECT vms.sip_query_presets('34010000001320000077')");
		my $got = $city->safe_psql('postgres', "SELECT state || ' ' || coalesce(result::text, '') || coalesce(error, '')
			FROM vms.sip_request_wait($pq, 30)");
		ok($got =~ /^(done|failed) / && $got !~ /gate|road/, "$what: the city gets no presets (the refusal's answer)")
		  or diag($got);
		ok(wait_for(sub { slurp_file($district->logfile) =~ /PresetQuery for 34010000001320000077: the answer was dropped: device $cam_dev answered with \Q$why\E/ }),
			"$what: the district drops the camera's answer and says why");
	};
	$presets_fail->('a Response naming its PresetList twice', 'Response PresetQuery, <PresetList> twice');
	my $reg0 = $district->safe_psql('postgres', "SELECT expires_at FROM vms.device_session WHERE device_code = '$cam_dev'");
	$sim->kill_kill;
	$sim = IPC::Run::start([ $gbsim, '--server', "127.0.0.1:$district_port", '--server-id', $lower_id,
			'--domain', '3402010000', '--first-code', $cam_dev, '--devices', '1', '--channels', '1', '--keepalive', '2',
			'--duration', '300', '--answer-other', 'PresetQuery' ],
		'>', "$tmp/gbsim2.out", '2>', "$tmp/gbsim2.err");
	ok($district->poll_query_until('postgres', "SELECT expires_at > '$reg0' FROM vms.device_session WHERE device_code = '$cam_dev'"),
		'the camera registers again (gbsim --answer-other PresetQuery)');
	$presets_fail->('a Response of another CmdType', 'Response DeviceStatus');
	$sim->kill_kill;
}

# an ambiguous query of the city for the district itself (not relayed: answered by the district): a second
# CmdType after the one the worker reads, or a DeviceID below the top level, is refused with 400 before
# anything is looked up or answered
for my $c ([ 'Catalog', '<CmdType>DeviceInfo</CmdType>', 'a Catalog query with a second CmdType' ],
	[ 'DeviceStatus', '<Info><DeviceID>34020200001320000001</DeviceID></Info>', 'a DeviceStatus query with a nested DeviceID' ])
{
	my ($cmd, $xml, $what) = @$c;
	my $id = $city->safe_psql('postgres', qq{SELECT vms._device_request('$as_lower', 'device_query', 'Query', '$cmd',
		'$xml'::xml, true, NULL, '{}')});
	like($city->safe_psql('postgres', "SELECT state || ': ' || coalesce(error, '') FROM vms.sip_request_wait($id, 30)"),
		qr/^failed: .*\b400\b/, "$what: the district answers 400");
}

# restarts: the city restarts (the district keeps or regains its registration, the city renews its
# subscription); then the district restarts (it registers again and serves the city's subscription on,
# in its dialog); after each, a change at the district reaches the city
$city->restart;
ok($city->poll_query_until('postgres', "SELECT online FROM vms.device WHERE code = '$as_lower'"), 'after the city restarts, the district is online there');
ok($district->poll_query_until('postgres', "SELECT state = 'registered' AND subscriptions ? 'Catalog' FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
	'and registered, its Catalog subscription served');
$district->safe_psql('postgres', "UPDATE vms.channel SET name = '城市重启后' WHERE code = '34020100001320000020'");
ok($city->poll_query_until('postgres', "SELECT name = '城市重启后' FROM vms.channel WHERE code = '34020100001320000020'"),
	'a change after the city\'s restart reaches it (NOTIFY UPDATE)')
  or diag($district->safe_psql('postgres', "SELECT state, subscriptions FROM vms.sip_upstream_status WHERE upstream = 'cityvms'"));
my $ev = $district->safe_psql('postgres', 'SELECT max(id) FROM vms.sip_upstream_event');
$district->restart;
ok($district->poll_query_until('postgres', "SELECT state = 'registered' AND EXISTS (SELECT 1 FROM vms.sip_upstream_event
	WHERE id > $ev AND upstream = 'cityvms' AND cause LIKE 'worker start%') FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
	'the district restarts and registers to the city again');
$district->safe_psql('postgres', "UPDATE vms.channel SET name = '区县重启后' WHERE code = '34020100001320000021'");
ok($city->poll_query_until('postgres', "SELECT name = '区县重启后' FROM vms.channel WHERE code = '34020100001320000021'"),
	'a change after the district\'s restart reaches the city: the subscription is served on in its dialog');
is($city->safe_psql('postgres', "SELECT count(*) FROM vms.channel WHERE device_code = '$as_lower' AND code::text LIKE '340202%'"), '1',
	'nothing stale: of the other region only the channel once shared (now DEL) is known');

# TCP to the upper platform: the district registers again over a connection it opens to the city, and the
# city's query, the district's answers and NOTIFYs all go over it
$ev = $district->safe_psql('postgres', 'SELECT max(id) FROM vms.sip_upstream_event');
$district->safe_psql('postgres', q{SELECT vms.sip_alter_upstream('cityvms', options => '{"transport": "tcp"}')});
ok($district->poll_query_until('postgres', "SELECT state = 'registered' AND EXISTS (SELECT 1 FROM vms.sip_upstream_event
	WHERE id > $ev AND upstream = 'cityvms' AND to_state = 'registered') FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
	'with "transport": "tcp" the district registers to the city again')
  or diag($district->safe_psql('postgres', "SELECT state, last_error FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"));
ok($city->poll_query_until('postgres', "SELECT transport = 'TCP' FROM vms.device_session WHERE device_code = '$as_lower'"),
	'the city has the district registered over TCP');
$rid = $city->safe_psql('postgres', "SELECT vms.sip_query_catalog('$as_lower')");
is($city->safe_psql('postgres', "SELECT state || '|' || (progress ->> 'sum_num') FROM vms.sip_request_wait($rid, 60)"),
	'done|' . $district->safe_psql('postgres', "SELECT count(*) FROM vms._sip_upstream_items('cityvms', NULL)"),
	'the city\'s Catalog query is answered over TCP, every item of the share (nodes and channels)');
$district->safe_psql('postgres', "UPDATE vms.channel SET name = '经由TCP' WHERE code = '34020100001320000022'");
ok($city->poll_query_until('postgres', "SELECT name = '经由TCP' FROM vms.channel WHERE code = '34020100001320000022'"),
	'and a change reaches the city as a NOTIFY over TCP');

# An upper platform over TCP that goes away must not stall the worker: the city stops (its connection
# closes) and a socket that never accepts, its backlog full, takes its port, so that the district's SYNs are
# dropped (a powered-off platform); then the port is closed (refused). The district's connects do not block:
# a device's REGISTER and keepalives are answered within 0.5 s each while a connect is pending and after it
# failed, and each failed connect is a failure of the upstream (failing, backed off), in its transitions.
SKIP:
{
	skip 'sipp keepalive scenario not present', 9 unless -f "$sippdir/keepalive.xml";
	my $dev = '34020100001180000901';
	$district->safe_psql('postgres', qq{INSERT INTO vms.device (code, name) VALUES ('$dev', 'sipp NVR');
		SELECT vms.device_set_password('$dev', '12345678', '3402010000')});
	my $dev_port = PostgreSQL::Test::Cluster::get_free_port();
	# REGISTER (401, 200) and three keepalives (200): sipp fails the call when any answer takes over 500 ms
	my $prompt = sub {
		my ($what) = @_;
		my ($out, $err) = ('', '');
		my $ok = IPC::Run::run([ 'sipp', "127.0.0.1:$district_port", '-sf', "$sippdir/keepalive.xml", '-m', '1',
			'-s', $lower_id, '-key', 'domain', '3402010000', '-key', 'device', $dev, '-au', $dev, '-ap', '12345678',
			'-auth_uri', "$lower_id\@3402010000", '-i', '127.0.0.1', '-p', $dev_port, '-t', 'u1', '-nd', '-nostdin',
			'-timeout', '20s', '-timeout_error', '-recv_timeout', '500', '-max_retrans', '0' ],
			'>', \$out, '2>', \$err, IPC::Run::timeout(60));
		ok($ok, "$what: a device's REGISTER and keepalives are each answered within 0.5 s") or diag("$out $err");
	};
	$prompt->('with the city up');
	my $ev0 = $district->safe_psql('postgres', 'SELECT max(id) FROM vms.sip_upstream_event');
	$city->stop;
	my $hole = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $city_port, Proto => 'tcp',
		Listen => 1, ReuseAddr => 1) or die "blackhole on $city_port: $!";
	# backlog 0: one connection (never accepted) fills the accept queue; later SYNs are dropped
	listen($hole, 0) or die "listen: $!";
	my @fill = (IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $city_port, Proto => 'tcp') // die "fill: $!",
		IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $city_port, Proto => 'tcp', Blocking => 0));
	# a change queues a NOTIFY: the district connects again (the keepalive every 5 s would too)
	$district->safe_psql('postgres', "UPDATE vms.channel SET name = '城市无应答' WHERE code = '34020100001320000023'");
	$prompt->('while the connect to an address that drops SYNs is pending');
	ok($district->poll_query_until('postgres', "SELECT state = 'failing' AND last_error = 'could not connect over TCP: timed out'
		FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
		'the connect times out: the upstream is failing (not registered until its expiry)')
	  or diag($district->safe_psql('postgres', "SELECT state, failures, last_error FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"));
	is($district->safe_psql('postgres', "SELECT string_agg(from_state || '>' || to_state || ' ' || cause, ',' ORDER BY id)
		FROM vms.sip_upstream_event WHERE id > $ev0 AND upstream = 'cityvms' AND to_state = 'failing'"),
		'registered>failing could not connect over TCP: timed out', 'the failed connect is in the transitions');
	$prompt->('after the failed connect');
	my $f = $district->safe_psql('postgres', "SELECT failures FROM vms.sip_upstream_state WHERE upstream = 'cityvms'");
	like($district->safe_psql('postgres', "SELECT next_attempt_at - since FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
		qr/^00:00:0[45]/, 'the next attempt is backed off (5 s: the first failure since the registration)');
	close $_ for grep { defined } @fill;
	close $hole;
	ok($district->poll_query_until('postgres', "SELECT state = 'failing' AND failures > $f AND last_error LIKE 'could not connect over TCP: %refused%'
		FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
		'with the port closed, the retry after the backoff is refused: one more failure')
	  or diag($district->safe_psql('postgres', "SELECT state, failures, last_error FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"));
	# (one query: the events and the state are written together; a retry may be under way)
	is($district->safe_psql('postgres', "SELECT (SELECT count(*) FROM vms.sip_upstream_event WHERE id > $ev0 AND upstream = 'cityvms'
		AND to_state = 'registering') - (failures - $f) BETWEEN 0 AND 1 FROM vms.sip_upstream_state WHERE upstream = 'cityvms'"),
		't', 'one connect attempt a backoff: each retry (registering) is one failure');
	$prompt->('with the city\'s port closed');
}

$district->stop;
done_testing();
