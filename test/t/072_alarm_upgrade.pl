# The alarm data ALTER EXTENSION vms UPDATE (0.1.0 -> 0.2.0) carries over:
# a response deadline an operator tuned in 0.1.0 survives while the default
# levels get 0.2.0's values, and open alarms already past a deadline at the
# update are not escalated (and notified) all at once by the first
# vms.alarm_escalate() afterwards; a deadline passed after the update still
# escalates.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('alarm_upgrade');
$node->init;
# no workers: nothing but this test calls vms.alarm_escalate()
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]); }

sql("CREATE EXTENSION vms VERSION '0.1.0' CASCADE");
# 0.1.0 seeded level I with 30 minutes and II-IV with no response deadline;
# the operator tuned level III to 4 hours
sql("UPDATE vms.alarm_level SET respond_within = '4 hours' WHERE level = 3");
# open alarms: one past both deadlines, one acknowledged and past its repair
# deadline, one with both deadlines ahead; and a cleared one long overdue
sql(q{
INSERT INTO vms.alarm (code, fault_type, level, source, state, respond_by, fix_by, acknowledged_at, cleared_at)
VALUES ('11010500001180000001', 'offline', 2, 'sip', 'open', now() - interval '2 hours', now() - interval '1 hour', NULL, NULL),
       ('11010500001180000002', 'offline', 3, 'sip', 'acknowledged', now() - interval '2 hours', now() - interval '1 hour',
        now() - interval '3 hours', NULL),
       ('11010500001180000003', 'offline', 3, 'sip', 'open', now() + interval '1 hour', now() + interval '1 day', NULL, NULL),
       ('11010500001180000004', 'offline', 4, 'sip', 'cleared', now() - interval '2 days', now() - interval '1 day', NULL,
        now() - interval '1 hour');
});
sql("ALTER EXTENSION vms UPDATE TO '0.2.0'");
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'vms'"), '0.2.0', 'updated to 0.2.0');

is(sql("SELECT string_agg(level || ' ' || respond_within || ' ' || plan_within, ', ' ORDER BY level) FROM vms.alarm_level"),
	'1 00:30:00 02:00:00, 2 00:30:00 02:00:00, 3 04:00:00 02:00:00, 4 00:30:00 02:00:00',
	'levels: the tuned response deadline kept, the others 0.2.0\'s defaults');

is(sql("SELECT string_agg(right(code::text, 1) || ' {' || array_to_string(escalated, ',') || '}', ', ' ORDER BY code) FROM vms.alarm"),
	'1 {respond,fix}, 2 {fix}, 3 {}, 4 {}',
	'open alarms past a deadline at the update count as escalated for it');
is(sql('SELECT vms.alarm_escalate()'), '0', 'the first escalation after the update raises none of them');
is(sql("SELECT count(*) FROM vms.alarm_event WHERE kind = 'escalated'"), '0', 'and records no escalation');

# a deadline that passes after the update escalates as before
sql("UPDATE vms.alarm SET respond_by = now() - interval '1 second' WHERE code = '11010500001180000003'");
is(sql('SELECT vms.alarm_escalate()'), '1', 'a deadline passed after the update escalates');
is(sql("SELECT level || ' ' || array_to_string(escalated, ',') FROM vms.alarm WHERE code = '11010500001180000003'"),
	'2 respond', 'one level up, the deadline recorded');

$node->stop;
done_testing();
