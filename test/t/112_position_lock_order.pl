# MobilePosition reports and the queue of devices for the cascade compare
# (vms.sip_position_change): each reporting statement locks its devices' rows
# until its transaction ends (vms._sip_position_touched), in code order.  So
# two transactions reporting the same devices in different orders wait for
# each other instead of deadlocking: one transaction holds the lowest code A;
# the other, reporting twenty devices (A last) in one statement, waits on A
# holding nothing; the first then reports the nineteen others without waiting
# and commits, and the second goes on.  In any other order (the DISTINCT's
# hash order, before) the second would hold some of the nineteen and the
# first's report would end in "deadlock detected".  No worker serves this
# database: nothing takes the queue meanwhile.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;

my $node = vms_node('lockorder', { extension => 0, secret_key => 1 });
$node->safe_psql('postgres', 'CREATE DATABASE positions');
sub sql { return $node->safe_psql('positions', $_[0]); }
sql('CREATE EXTENSION vms CASCADE');
sql(q{SELECT vms.sip_add_upstream('city', '10.0.0.1', 5060, '34010000002000000001', 'city-pass')});
# registered, subscribed to positions (as the SIP worker would record it)
sql(q{SET client_min_messages = warning;
      SELECT vms._sip_upstream_flush('[{"u": "city", "st": "registering", "at": 1700000000}]');
      SELECT vms._sip_upstream_flush('[{"u": "city", "st": "registered", "at": 1700000001, "ra": 1700000001,
                                        "ex": 1700003601, "sb": {"MobilePosition": {"expires_at": 1700000601, "interval": 5}}}]')});
is(sql(q{SELECT state || ' ' || (subscriptions ? 'MobilePosition') FROM vms.sip_upstream_state WHERE upstream = 'city'}),
	'registered true', 'the upstream is registered and subscribes to positions');

my @dev = map { sprintf('340201000013200000%02d', $_) } 1 .. 20;
my ($a, @others) = @dev;
sub report
{
	return 'INSERT INTO vms.mobile_position (device_code, at, geom) VALUES '
	  . join(', ', map { "('$_', now(), ST_SetSRID(ST_MakePoint(117.1, 31.1), 4326))" } @_);
}

# twice: the devices' rows new in the queue (an insert waits on the other's
# insert), then already queued (DO UPDATE ... WHERE false locks them)
for my $case ('new in the queue', 'already queued')
{
	my $s1 = $node->background_psql('positions', on_error_stop => 0);
	my $s2 = $node->background_psql('positions', on_error_stop => 0);
	my $pid2 = $s2->query_safe('SELECT pg_backend_pid()');
	$s1->query_safe('BEGIN');
	$s1->query_safe(report($a));
	$s2->query_safe('BEGIN');
	$s2->query_until(qr/reporting/, "\\echo reporting\n" . report(reverse @dev) . ";\n");
	ok($node->poll_query_until('positions',
			"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid2"),
		"$case: twenty devices, A last, in one statement: waits for the transaction holding A");
	my ($out, $err) = $s1->query(report(@others));
	is($err, 0, "$case: the transaction holding A reports the nineteen others without a deadlock")
	  or diag($s1->{stderr});
	($out, $err) = $s1->query('COMMIT');
	is($err, 0, "$case: and commits");
	($out, $err) = $s2->query('COMMIT');
	is($err, 0, "$case: the other goes on and commits") or diag($s2->{stderr});
	$s1->quit;
	$s2->quit;
	is(sql(qq{SELECT string_agg(device_code::text, ' ' ORDER BY device_code) FROM vms.sip_position_change WHERE upstream = 'city'}),
		join(' ', @dev), "$case: each device queued once");
	is(sql(qq{SELECT count(*) FROM vms.mobile_position}), $case eq 'new in the queue' ? 40 : 80, "$case: every report kept");
	# the first round leaves the codes queued for the second; after it, empty
	sql('DELETE FROM vms.sip_position_change') if $case eq 'already queued';
}

$node->stop;
done_testing();
