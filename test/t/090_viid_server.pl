# The GA/T 1400 server (issue 18) against a 1400 client of our own
# (test/peers/viid_client.py, its own digest implementation): register with
# digest, keepalive, time; batches of every kind with inline images answered
# per item, bad items in a good batch refused with their reason; bad input
# (malformed JSON, wrong Content-Type, oversize body, missing/forged digest,
# a replayed nonce count, unknown resources, path traversal, non-images,
# request rate, slow clients, thousands of connections) answered with the
# right status and counted while the worker keeps running; PostgreSQL
# stopped with -m immediate during an ingest: every acknowledged record is
# stored, every unacknowledged one is sent again and stored once; and one
# acknowledged with synchronous_commit = off on the server is stored too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep);

my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $client_id = '34020000002000000001';
my $password = 'Sec-ret 1400';
my $json = JSON::PP->new->utf8;
my $at;	# capture time of the records: an hour ago in China Standard Time

my $node = vms_node('viid_server', { secret_key => 1 },
	'vms.viid_enabled' => 'on',
	'vms.sip_enabled' => 'off',
	'vms.inspect_enabled' => 'off',
	'vms.viid_server_listen' => '127.0.0.1',
	'vms.viid_server_timeout' => 2,
	'vms.viid_server_max_connections' => 200,
	'vms.viid_server_max_body' => '4MB',
	'vms.viid_server_rate' => 10000);
$at = $node->safe_psql('postgres', "SELECT to_char(now() AT TIME ZONE 'Asia/Shanghai' - interval '1 hour', 'YYYYMMDDHH24MISS')");

# off by default: a slot, no process
is($node->safe_psql('postgres', "SELECT pid IS NULL FROM vms.worker_status WHERE name = 'viid-server'"), 't',
	'the server does not run while vms.viid_server_port = 0');
$node->append_conf('postgresql.conf', "vms.viid_server_port = $port\n");
$node->reload;
wait_ok($node, "SELECT state = 'listening' FROM vms.worker_status WHERE name = 'viid-server'",
	'a port and a reload start the viid-server worker');
my $pid = $node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'viid-server'");

$node->safe_psql('postgres', qq{SELECT vms.viid_client_add('$client_id', '$password')});
is($node->safe_psql('postgres', qq{SELECT count(*) FROM vms.viid_client WHERE row_to_json(viid_client)::text LIKE '%Sec-ret%'}),
	'0', 'the password is not stored, only its HA1');
is($node->safe_psql('postgres', qq{SELECT ha1_md5 = md5('$client_id:vms:$password') FROM vms.viid_client}), 't',
	'HA1 = MD5(id:realm:password)');

# run the client; its answers, one JSON object a line
sub client
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	my @user = ('--user', $client_id, '--password', $password);
	if ($args[0] eq '--as')
	{
		shift @args;
		@user = ('--user', shift @args, '--password', shift @args);
	}
	IPC::Run::run([ '/usr/bin/python3', "$root/test/peers/viid_client.py", '--port', $port, '--at', $at, @user, @args ],
		'>', \$out, '2>', \$err)
	  or diag("viid_client @args: $err");
	return map { $json->decode($_) } grep { /^\{/ } split /\n/, $out;
}

sub counter
{
	my ($name) = @_;
	return $node->safe_psql('postgres', "SELECT (counters ->> '$name')::bigint FROM vms.worker_status WHERE name = 'viid-server'");
}

sub codes
{
	my ($answer) = @_;
	return join ',', map { $_->{StatusCode} } @{ $answer->{body}{ResponseStatusListObject}{ResponseStatusObject} };
}

sub reasons
{
	my ($answer) = @_;
	return join ' | ', map { $_->{StatusString} } @{ $answer->{body}{ResponseStatusListObject}{ResponseStatusObject} };
}

# the server reads vms.viid_client every second (and soon after an unknown
# client): wait until it knows a new one
sub wait_known
{
	my (@as) = @_;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		my ($t) = client(@as, 'time');
		return 1 if $t && $t->{status} == 200;
		usleep(100_000);
	}
	return 0;
}

# ---------------------------------------------------------------- system
ok(wait_known(), 'a new client is known to the server');
my ($a) = client('keepalive');
is($a->{status}, 401, 'keepalive before registering: 401');
($a) = client('register');
is($a->{status}, 200, 'register with digest: 200');
is($a->{body}{ResponseStatusObject}{StatusCode}, '0', 'register: StatusCode 0');
is($node->safe_psql('postgres', "SELECT state || ' ' || online FROM vms.viid_client_status"), 'registered true',
	'the client is shown registered and online');
($a) = client('keepalive');
is($a->{body}{ResponseStatusObject}{StatusCode}, '0', 'keepalive: StatusCode 0');
($a) = client('time');
like($a->{body}{SystemTimeObject}{LocalTime}, qr/^\d{14}$/, 'time: SystemTimeObject with LocalTime');
is(counter('registrations'), 1, 'registration counted');

# ---------------------------------------------------------------- records
($a) = client('post', 'MotorVehicles', '--count', '5', '--images', '2', '--image-bytes', '20480',
	'--bad', '1:traversal,3:notimage');
is($a->{status}, 200, 'a batch with bad items: 200');
is(codes($a), '0,8,0,8,0', 'answered per item: good items 0, bad items 8');
like(reasons($a), qr/"\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd" is not valid.*is not an image/, 'the reasons name the fault');
my @good = @{ $a->{ids} }[ 0, 2, 4 ];
is($node->safe_psql('postgres', "SELECT string_agg(object_id, ',' ORDER BY object_id) FROM vms.viid_record WHERE kind = 'MotorVehicle'"),
	join(',', sort @good), 'exactly the good records are stored');
is($node->safe_psql('postgres', "SELECT count(*) || ' ' || min(bytes) || ' ' || max(bytes) || ' ' || min(format) FROM vms.viid_image"),
	'6 20480 20480 jpeg', 'their images are stored whole, outside the documents');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_record WHERE doc::text LIKE '%Data%'"), '0',
	'no image data inside the stored documents');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_image WHERE substr(data, 1, 3) = '\\xffd8ff' AND substr(data, 20479, 2) = '\\xffd9'"),
	'6', 'each image from its first to its last byte');
is($node->safe_psql('postgres', "SELECT bool_and(device_id = '34020000001320000001' AND abs(extract(epoch FROM received_at - captured_at)) < 86400) FROM vms.viid_record"),
	't', 'device and capture time taken from the records');

($a) = client('post', 'MotorVehicles', '--count', '5', '--images', '2', '--image-bytes', '20480');
is(codes($a), '0,0,0,0,0', 'the same batch again (all good this time): all 0');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_record WHERE kind = 'MotorVehicle'"), '5',
	'records sent twice are stored once');

for my $kind (qw(NonMotorVehicles Persons Faces Images))
{
	($a) = client('post', $kind, '--count', '3', '--serial', '100', '--bad', '2:id');
	is(codes($a), '0,0,8', "$kind: answered per item");
}
is($node->safe_psql('postgres', "SELECT string_agg(kind || '=' || n, ' ' ORDER BY kind) FROM (SELECT kind, count(*) n FROM vms.viid_record GROUP BY kind) s"),
	'Face=2 Image=2 MotorVehicle=5 NonMotorVehicle=2 Person=2', 'every kind stored');

($a) = client('post', 'Faces', '--count', '4', '--serial', '200', '--bad', '0:device,1:time,2:future,3:notbase64');
is(codes($a), '8,8,8,8', 'bad device, time, future time, non-base64 image: each refused');
like(reasons($a), qr/not a device code.*not a valid time.*in the future.*not base64/, 'with their reasons');
is(counter('rejected'), 10, 'refused records counted');

# the C split of image data (vms._viid_split_images) against PostgreSQL's
# own jsonb and decode(), on 400 random bodies (escaped and bad base64, a
# number or "" as Data, duplicate keys, single objects, whitespace, Data
# elsewhere, cut-off bodies): every image it takes out is the decode() of
# the Data string jsonb sees at that place, the rest of the document is
# unchanged, and a body it gives up on comes back as it was
my $fuzz = $node->safe_psql('postgres', <<'SQL');
CREATE FUNCTION pg_temp.vms_fz_img(seed integer) RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT '{"ImageID": "x", "Data"' || CASE WHEN random() < 0.2 THEN E' \n' ELSE '' END || ':' ||
           CASE (random() * 10)::int
             WHEN 0 THEN '"!!"'
             WHEN 1 THEN '"' || replace(translate(encode(decode('ffff' || md5(seed || random()::text), 'hex'), 'base64'), E'\n', ''), '/', '\/') || '"'
             WHEN 2 THEN '7'
             WHEN 3 THEN '"QU JD"'
             WHEN 4 THEN '""'
             -- long enough for the parser to see it condensed (CONDENSE_MIN): with an
             -- escape, a control character, bad base64, or none of these
             WHEN 5 THEN '"' || repeat('QUJD', 20) || (ARRAY['\/', E'\t', '\"', '!', 'QUJD'])[1 + (random() * 4)::int] || '"'
             WHEN 6 THEN '"' || translate(encode(decode('ffd8ff' || repeat(md5(seed || random()::text), 1 + (random() * 4)::int), 'hex'), 'base64'), E'\n', '') || '"'
             ELSE '"' || translate(encode(decode(CASE WHEN random() < 0.5 THEN 'ffd8ff' ELSE '' END || md5(seed || random()::text)
                                                 || left(md5(random()::text), (random() * 6)::int * 2), 'hex'), 'base64'), E'\n', '') || '"' END
           || '}'
$$;
CREATE FUNCTION pg_temp.vms_fz_check() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r record;
    j jsonb;
    src jsonb;
    p text[];
    bad integer := 0;
    took integer := 0;
    whole integer := 0;
BEGIN
    FOR r IN SELECT f.k, f.src, s.* FROM fz f, vms._viid_split_images(f.src, 'L', 'I', false) s ORDER BY f.k LOOP
        IF cardinality(r.items) = 0 THEN
            whole := whole + 1;
            IF r.body IS DISTINCT FROM r.src THEN
                bad := bad + 1;
                RAISE NOTICE 'body % changed with no image taken', r.k;
            END IF;
            CONTINUE;
        END IF;
        src := r.src::jsonb;
        j := r.body::jsonb;
        FOR n IN 1 .. cardinality(r.items) LOOP
            p := CASE WHEN jsonb_typeof(src -> 'L' -> 'I' -> (r.items[n] - 1) -> 'SubImageList' -> 'SubImageInfoObject') = 'array'
                      THEN ARRAY['L', 'I', (r.items[n] - 1)::text, 'SubImageList', 'SubImageInfoObject', (r.subs[n] - 1)::text, 'Data']
                      ELSE ARRAY['L', 'I', (r.items[n] - 1)::text, 'SubImageList', 'SubImageInfoObject', 'Data'] END;
            -- a place the jsonb does not have (a later duplicate key won) is
            -- not used: the SQL finds no "" there
            CONTINUE WHEN j #> p IS DISTINCT FROM '""'::jsonb;
            IF decode(src #>> p, 'base64') IS DISTINCT FROM r.data[n]
               OR vms._viid_image_format(r.data[n]) IS DISTINCT FROM r.formats[n] THEN
                bad := bad + 1;
                RAISE NOTICE 'body % image % differs', r.k, n;
            END IF;
            j := jsonb_set(j, p, src #> p);
            took := took + 1;
        END LOOP;
        IF j IS DISTINCT FROM src THEN
            bad := bad + 1;
            RAISE NOTICE 'body % differs once its images are put back', r.k;
        END IF;
    END LOOP;
    RETURN format('bodies=%s unchanged=%s images=%s mismatches=%s', (SELECT count(*) FROM fz), whole, took, bad);
END $$;
SELECT setseed(0.18);
CREATE TEMP TABLE fz AS
SELECT k, CASE WHEN random() < 0.05 THEN left(src, (random() * length(src))::int) ELSE src END AS src
  FROM (SELECT k, (
    SELECT '{"L" : {"I": [' || coalesce(string_agg(item, E',\n' ORDER BY k2), '') || ']}' ||
           CASE WHEN random() < 0.05 THEN ', "L": {"I": []}' ELSE '' END || '}'
      FROM (SELECT k2, w.ws,
                   '{"Id": ' || k2 || ',' || w.ws || CASE WHEN random() < 0.1 THEN '"Data": "QUJD", ' ELSE '' END ||
                   -- long strings elsewhere, as names and values (one with an escaped quote)
                   CASE WHEN random() < 0.1 THEN '"' || repeat('N', 70) || '": "' || repeat('v', 80) || '\" ' || repeat('w', 70) || '", ' ELSE '' END ||
                   CASE (random() * 5)::int
                     WHEN 0 THEN '"X": 1'
                     WHEN 1 THEN '"SubImageList": {"SubImageInfoObject": ' || i.img || '}'
                     WHEN 2 THEN '"SubImageList": {"SubImageInfoObject": [' || i.img || ',' || w.ws || i.img2 || ']}'
                     WHEN 3 THEN '"SubImageList": {"SubImageInfoObject": [' || i.img || ']}, "SubImageList": {"SubImageInfoObject": [' || i.img2 || ']}'
                     ELSE '"SubImageList": {"SubImageInfoObject": []}' END || '}' AS item
              FROM generate_series(1, (random() * 3 + k * 0)::int) k2,
                   LATERAL (SELECT CASE WHEN random() + k2 * 0 < 0.2 THEN E' \n\t' ELSE '' END AS ws) w,
                   LATERAL (SELECT pg_temp.vms_fz_img(k2) AS img, pg_temp.vms_fz_img(k2 + 1) AS img2) i) items) AS src
          FROM generate_series(1, 400) k) b;
SELECT pg_temp.vms_fz_check();
SQL
($fuzz) = $fuzz =~ /^(bodies=.*)$/m;
like($fuzz // '', qr/^bodies=400 unchanged=\d+ images=\d+ mismatches=0$/, 'image split against jsonb and decode(): ' . ($fuzz // 'no answer'));
my ($fz_images) = $fuzz =~ /images=(\d+)/;
cmp_ok($fz_images, '>=', 100, 'the random bodies had images to take out');

# an error the checks do not foresee (here a trigger of this test) fails
# the statement storing the list together: the records are then stored one
# by one, and only the one that fails is refused, with the reason
$node->safe_psql('postgres', q{
CREATE FUNCTION public.test_refuse_plate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.doc ->> 'PlateNo' = '京A00901' THEN
        RAISE EXCEPTION 'plate refused by the test';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_plate BEFORE INSERT ON vms.viid_record FOR EACH ROW EXECUTE FUNCTION public.test_refuse_plate();});
($a) = client('post', 'MotorVehicles', '--count', '3', '--serial', '900', '--images', '1');
is(codes($a), '0,8,0', 'an unforeseen error: the records are stored one by one, the failing one refused');
like(reasons($a), qr/plate refused by the test/, '... with its reason');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_record WHERE object_id IN ('$a->{ids}[0]', '$a->{ids}[2]')"), '2',
	'... and the others stored');
$node->safe_psql('postgres', 'DROP TRIGGER test_refuse_plate ON vms.viid_record; DROP FUNCTION public.test_refuse_plate()');

# an inbound template maps a vendor's fields (the push's template mapping, applied on the way in)
$node->safe_psql('postgres', q{
INSERT INTO vms.viid_template VALUES ('vendor-x', 'MotorVehicle', '{"rename": {"CarTag": "Remark"}, "values": {"VendorColor": {"red": "R"}}}');
SELECT vms.viid_client_add('34020000002000000002', 'pw2', '{"templates": {"MotorVehicle": "vendor-x"}}');});
wait_known('--as', '34020000002000000002', 'pw2');
client('--as', '34020000002000000002', 'pw2', 'register');
($a) = client('--as', '34020000002000000002', 'pw2', 'post', 'MotorVehicles', '--count', '2', '--serial', '300',
	'--extra', '{"CarTag": "tagged", "VendorColor": "red"}');
is(codes($a), '0,0', 'vendor records accepted through their template');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT (doc ->> 'Remark') || '/' || (doc ->> 'VendorColor') || '/' || (doc ? 'CarTag')::text, ',') FROM vms.viid_record WHERE client_id = '34020000002000000002'"),
	'tagged/R/false', 'stored as mapped');
($a) = client('--as', '34020000002000000002', 'pw2', 'post', 'MotorVehicles', '--count', '1', '--serial', '310',
	'--extra', '{"VendorColor": "mauve"}');
like(reasons($a), qr/cannot map/, 'a value the template cannot map refuses that record');

# ---------------------------------------------------------------- directory
$node->safe_psql('postgres', slurp_file("$root/sql/fixtures/nanyuan.sql"));
$node->safe_psql('postgres', q{
INSERT INTO vms.checkpoint (code, name, direction_mode) VALUES ('44030402001210000009', '南园卡口', 'updown');
INSERT INTO vms.lane (checkpoint_code, lane_no, direction) VALUES ('44030402001210000009', 1, 'up'), ('44030402001210000009', 2, 'down');
INSERT INTO vms.lane_channel VALUES ('44030402001210000009', 1, '44030402001320000001');
UPDATE vms.viid_client SET options = options || '{"share_scope": {"channels": ["44030402001320000001", "44030402001320000002"]}}'
 WHERE client_id = '34020000002000000001';});
($a) = (client('raw', '--method', 'GET', '--ctype', '', '--path', '/VIID/APEs'))[-1];
is(join(',', map { $_->{ApeID} } @{ $a->{body}{APEListObject}{APEObject} }), '44030402001320000001,44030402001320000002',
	'GET /VIID/APEs: the channels of the client\'s share scope');
($a) = (client('raw', '--method', 'GET', '--ctype', '', '--path', '/VIID/Tollgates'))[-1];
is(join(',', map { $_->{TollgateID} } @{ $a->{body}{TollgateListObject}{TollgateObject} }), '44030402001210000009',
	'GET /VIID/Tollgates: the checkpoint a shared channel watches');
($a) = (client('raw', '--method', 'GET', '--ctype', '', '--path', '/VIID/Lanes'))[-1];
is(join(',', map { $_->{LaneID} } @{ $a->{body}{LaneListObject}{LaneObject} }), '4403040200121000000901',
	'GET /VIID/Lanes: only the lane a shared channel watches');
($a) = (client('--as', '34020000002000000002', 'pw2', 'raw', '--method', 'GET', '--ctype', '', '--path', '/VIID/APEs'))[-1];
is(scalar @{ $a->{body}{APEListObject}{APEObject} }, 0, 'a client without a share scope sees no APE');
($a) = client('raw', '--path', '/VIID/APEs', '--body', '{}');
is($a->{status}, 405, 'POST /VIID/APEs: 405 (the server takes no ledger)');

# ---------------------------------------------------------------- forwarding
# the upper library is down while records arrive: they wait in the outbox
my $up_port = PostgreSQL::Test::Cluster::get_free_port();
my $up_log = "$tmp/upper.log";
$node->safe_psql('postgres', qq{
SELECT vms.viid_add_upstream('city', 'http://127.0.0.1:$up_port', '34020000002000000002', 'admin', 'admin',
                             '{"keepalive_s": 10, "batch_size": 20, "timeout_ms": 3000, "max_attempts": 100}');
INSERT INTO vms.viid_forward (name, upstream, kinds) VALUES ('to-city', 'city', '{MotorVehicle}');});
($a) = client('post', 'MotorVehicles', '--count', '3', '--serial', '500', '--images', '1');
is(codes($a), '0,0,0', 'records to forward stored');
my @fwd = @{ $a->{ids} };
client('post', 'MotorVehicles', '--count', '3', '--serial', '500', '--images', '1');
client('post', 'Faces', '--count', '1', '--serial', '500');
client('--as', '34020000002000000002', 'pw2', 'post', 'MotorVehicles', '--count', '1', '--serial', '520');
is($node->safe_psql('postgres', "SELECT string_agg(object_id, ',' ORDER BY object_id) FROM vms.viid_outbox WHERE upstream = 'city'"),
	join(',', sort @fwd), 'queued for the upstream once each: not the resend, not other kinds, not what came from the upstream itself');
is($node->safe_psql('postgres', "SELECT bool_and(doc -> 'SubImageList' -> 'SubImageInfoObject' -> 0 ? 'Data') FROM vms.viid_outbox WHERE upstream = 'city'"),
	't', 'forwarded with their image data');
my $upper = IPC::Run::start(
	[ '/usr/bin/python3', "$root/test/peers/viid_receiver.py", '--port', $up_port, '--log', $up_log ],
	'>', "$tmp/upper.out", '2>', "$tmp/upper.err");
wait_ok($node, "SELECT count(*) = 3 FROM vms.viid_outbox WHERE upstream = 'city' AND state = 'delivered'",
	'the upper library comes up: the records reach it');
my %got;
open(my $ul, '<', $up_log) or die;
while (<$ul>) { chomp; my ($k, $id) = split / /; $got{$id}++; }
close $ul;
is(join(',', map { "$_=" . ($got{$_} // 0) } sort @fwd), join(',', map { "$_=1" } sort @fwd),
	'each forwarded record delivered exactly once');
$upper->kill_kill;
$upper->finish;
$node->safe_psql('postgres', "UPDATE vms.viid_forward SET enabled = false");

# ---------------------------------------------------------------- subscriptions
# an upper library (the receiver, subscribing) is a client of this server
# and an upstream of the push; it subscribes to motor vehicles and faces,
# receives notifications through the push's outbox and cancels
my $sub_port = PostgreSQL::Test::Cluster::get_free_port();
my $sub_log = "$tmp/subscriber.log";
# its share scope: one channel of the ledger; records of other devices never reach it
$node->safe_psql('postgres', qq{
SELECT vms.viid_client_add('34020000002000000003', 'upper-pw', '{"share_scope": {"channels": ["44030402001320000001"]}}');
SELECT vms.viid_add_upstream('province', 'http://127.0.0.1:$sub_port', '34020000002000000003', 'admin', 'admin',
                             '{"keepalive_s": 10, "batch_size": 20, "timeout_ms": 3000}');});
ok(wait_known('--as', '34020000002000000003', 'upper-pw'), 'the upper library is a known client');
my $subscriber = IPC::Run::start(
	[ '/usr/bin/python3', "$root/test/peers/viid_receiver.py", '--port', $sub_port, '--log', $sub_log,
		'--subscribe', "http://127.0.0.1:$port", '--subscribe-user', '34020000002000000003', '--subscribe-password', 'upper-pw',
		'--subscribe-id', 'sub-1', '--subscribe-detail', '13,12', '--cancel-after', '3' ],
	'>', "$tmp/subscriber.out", '2>', "$tmp/subscriber.err");
wait_ok($node, "SELECT state = 'active' AND upstream = 'province' AND kinds = '{Face,MotorVehicle}' FROM vms.viid_subscription WHERE subscribe_id = 'sub-1'",
	'the upper library subscribed (POST /VIID/Subscribes): motor vehicles and faces, delivered through upstream province');
($a) = client('--as', '34020000002000000003', 'upper-pw', 'raw', '--path', '/VIID/Subscribes', '--body',
	'{"SubscribeListObject": {"SubscribeObject": [{"SubscribeID": "sub-2", "SubscribeDetail": "13", "ReceiveAddr": "http://192.0.2.1/VIID/SubscribeNotifications"}, {"SubscribeID": "sub-1", "SubscribeDetail": "13"}]}}');
is(codes($a), '8,8', 'a ReceiveAddr that is no upstream, and a POST of an existing subscription: refused per item');
like(reasons($a), qr/not the address of a configured upstream.*PUT changes it/, '... with their reasons');
($a) = client('--as', '34020000002000000003', 'upper-pw', 'raw', '--method', 'PUT', '--path', '/VIID/Subscribes', '--body',
	'{"SubscribeListObject": {"SubscribeObject": [{"SubscribeID": "sub-1", "Title": "renamed"}]}}');
is(codes($a), '0', 'PUT /VIID/Subscribes changes it');
is($node->safe_psql('postgres', "SELECT title || ' ' || array_to_string(kinds, ',') FROM vms.viid_subscription WHERE subscribe_id = 'sub-1'"),
	'renamed Face,MotorVehicle', 'the change kept what it did not name');
# first records outside the scope (a channel of the ledger it does not
# cover, a device not in the ledger), while the subscription is surely active
($a) = client('--device', '44030402001320000002', 'post', 'MotorVehicles', '--count', '2', '--serial', '820', '--images', '1');
my @outside = @{ $a->{ids} };
($a) = client('post', 'MotorVehicles', '--count', '1', '--serial', '830', '--images', '1');
push @outside, @{ $a->{ids} };
($a) = client('--device', '44030402001320000002', 'post', 'Faces', '--count', '1', '--serial', '820');
push @outside, @{ $a->{ids} };
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_record WHERE object_id IN ('" . join("','", @outside) . "')"),
	scalar @outside, 'records of devices outside the subscriber\'s share scope are stored');
($a) = client('--device', '44030402001320000001', 'post', 'MotorVehicles', '--count', '2', '--serial', '800', '--images', '1');
my @notified = @{ $a->{ids} };
($a) = client('--device', '44030402001320000001', 'post', 'Faces', '--count', '2', '--serial', '800');
push @notified, @{ $a->{ids} };
client('--device', '44030402001320000001', 'post', 'Persons', '--count', '1', '--serial', '800');
wait_ok($node, "SELECT count(*) = 4 FROM vms.viid_outbox WHERE upstream = 'province' AND state = 'delivered'",
	'notifications delivered to the subscriber');
is($node->safe_psql('postgres', "SELECT string_agg(doc ->> 'InfoIDs', ',' ORDER BY doc ->> 'InfoIDs') FROM vms.viid_outbox WHERE upstream = 'province'"),
	join(',', sort @notified), 'only records of the channel its share scope covers were notified');
wait_ok($node, "SELECT state = 'cancelled' FROM vms.viid_subscription WHERE subscribe_id = 'sub-1'",
	'the subscriber cancelled (DELETE /VIID/Subscribes?IDList=sub-1)');
my %notes;
open(my $sl, '<', $sub_log) or die;
while (<$sl>) { chomp; my ($k, $id) = split / /; $notes{$id}++ if $k eq 'SubscribeNotification'; }
close $sl;
is(join(',', sort map { "$_=" . ($notes{"sub-1-$_"} // 0) } @notified), join(',', sort map { "$_=1" } @notified),
	'one notification per subscribed record, none for persons');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_outbox WHERE upstream = 'province' AND doc -> 'MotorVehicleObjectList' -> 'MotorVehicleObject' -> 0 -> 'SubImageList' -> 'SubImageInfoObject' -> 0 ? 'Data'"),
	'2', 'vehicle notifications carry the record with its image');
client('--device', '44030402001320000001', 'post', 'MotorVehicles', '--count', '1', '--serial', '810');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_outbox WHERE upstream = 'province'"), '4',
	'after the cancel, new records notify nobody');
# a subscriber whose share scope is broken (no valid code) gets nothing,
# and the records of everyone are stored all the same
$node->safe_psql('postgres', qq{
UPDATE vms.viid_client SET options = '{"share_scope": {"channels": ["not-a-code"]}}' WHERE client_id = '34020000002000000003';
INSERT INTO vms.viid_subscription (subscribe_id, client_id, upstream, details, kinds, begin_time, end_time, receive_addr, doc)
VALUES ('sub-broken', '34020000002000000003', 'province', '{13}', '{MotorVehicle}', now() - interval '1 hour', 'infinity',
        'http://127.0.0.1:$sub_port', '{}');});
($a) = client('--device', '44030402001320000001', 'post', 'MotorVehicles', '--count', '3', '--serial', '840', '--images', '1');
is(codes($a), '0,0,0', 'a subscriber with a broken share scope does not stop the ingest');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_outbox WHERE upstream = 'province'"), '4', '... and is notified of nothing');
$node->safe_psql('postgres', "SELECT vms.viid_subscription_cancel('sub-broken')");
$subscriber->kill_kill;
$subscriber->finish;

# directory and status subscriptions: ledger changes within the
# subscriber's share scope are notified (3 APEs, 4 status, 7 tollgates, 9 lanes)
$node->safe_psql('postgres', q{UPDATE vms.viid_client SET options = '{"share_scope": {"channels": ["44030402001320000001"]}}'
 WHERE client_id = '34020000002000000003'});
($a) = client('--as', '34020000002000000003', 'upper-pw', 'raw', '--path', '/VIID/Subscribes', '--body',
	qq{{"SubscribeListObject": {"SubscribeObject": [{"SubscribeID": "sub-dir", "SubscribeDetail": "3,4,7,9", "ReceiveAddr": "http://127.0.0.1:$sub_port/VIID/SubscribeNotifications"}]}}});
is(codes($a), '0', 'a directory and status subscription');
sub dir_notes
{
	return $node->safe_psql('postgres', q{
SELECT coalesce(string_agg(doc ->> 'InfoIDs' || ':' || (SELECT string_agg(k, '') FROM jsonb_object_keys(doc) k WHERE k LIKE '%ObjectList'), ',' ORDER BY id), '')
  FROM vms.viid_outbox WHERE doc ->> 'SubscribeID' = 'sub-dir'});
}
$node->safe_psql('postgres', "UPDATE vms.channel SET online = true WHERE code IN ('44030402001320000001', '44030402001320000002')");
is(dir_notes(), '44030402001320000001:APEObjectList', 'a status change in scope notified, the one outside not');
$node->safe_psql('postgres', q{
UPDATE vms.channel SET name = name || '（改）' WHERE code = '44030402001320000001';
UPDATE vms.checkpoint SET name = '南园卡口（改）' WHERE code = '44030402001210000009';
UPDATE vms.lane SET name = '一号' WHERE checkpoint_code = '44030402001210000009';});
is(dir_notes(), '44030402001320000001:APEObjectList,44030402001320000001:APEObjectList,44030402001210000009:TollgateObjectList,4403040200121000000901:LaneObjectList',
	'an APE change, its tollgate and its lane notified; the lane it does not watch not');
is($node->safe_psql('postgres', "SELECT vms.viid_subscription_cancel('sub-dir')"), 't', 'cancelled from SQL');
$node->safe_psql('postgres', "UPDATE vms.channel SET online = false WHERE code = '44030402001320000001'");
is(scalar(split /,/, dir_notes()), 4, 'after the cancel, ledger changes notify nobody');

# one item that fails does not fail the others: a trigger of this test makes
# cancelling sub-bad fail, and writing the session row of client 3
$node->safe_psql('postgres', qq{
INSERT INTO vms.viid_subscription (subscribe_id, client_id, upstream, details, kinds, begin_time, end_time, receive_addr, doc)
SELECT id, '34020000002000000003', 'province', '{13}', '{MotorVehicle}', now(), 'infinity', 'http://127.0.0.1:$sub_port', '{}'
  FROM unnest(ARRAY['sub-ok', 'sub-bad']) id;
CREATE FUNCTION public.test_refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF TG_TABLE_NAME = 'viid_subscription' THEN
        IF NEW.subscribe_id = 'sub-bad' THEN
            RAISE EXCEPTION 'refused by the test';
        END IF;
    ELSIF NEW.client_id = '34020000002000000003' THEN
        RAISE EXCEPTION 'refused by the test';
    END IF;
    RETURN NEW;
END \$\$;
CREATE TRIGGER test_refuse BEFORE UPDATE ON vms.viid_subscription FOR EACH ROW EXECUTE FUNCTION public.test_refuse();
CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE ON vms.viid_client_session FOR EACH ROW EXECUTE FUNCTION public.test_refuse();});
($a) = client('--as', '34020000002000000003', 'upper-pw', 'raw', '--method', 'DELETE', '--path', '/VIID/Subscribes?IDList=sub-bad,sub-ok', '--body', '');
is(codes($a), '8,0', 'DELETE /VIID/Subscribes: the id that fails is answered 8, the other is cancelled');
like(reasons($a), qr/refused by the test/, '... with its reason');
is($node->safe_psql('postgres', "SELECT string_agg(subscribe_id || '=' || state, ',' ORDER BY subscribe_id) FROM vms.viid_subscription WHERE subscribe_id IN ('sub-ok', 'sub-bad')"),
	'sub-bad=active,sub-ok=cancelled', '... and only that one stays active');
my $internal = counter('internal_errors');
($a) = client('--as', '34020000002000000003', 'upper-pw', 'register');
is($a->{status} . ' ' . ($a->{body}{ResponseStatusObject}{StatusString} =~ /refused by the test/ ? 'reason' : 'no reason'), '500 reason',
	'a Register whose session row cannot be written: 500 with the reason');
($a) = client('keepalive');
is($a->{status}, 200, 'and the next request is served');
wait_ok($node, "SELECT (counters ->> 'internal_errors')::bigint > $internal FROM vms.worker_status WHERE name = 'viid-server'",
	'counted as an internal error');
$node->safe_psql('postgres', q{
DROP TRIGGER test_refuse ON vms.viid_subscription;
DROP TRIGGER test_refuse ON vms.viid_client_session;
DROP FUNCTION public.test_refuse();
SELECT vms.viid_subscription_cancel('sub-bad');});

# ---------------------------------------------------------------- bad input
my %before = map { $_ => counter($_) } qw(auth_failures not_found too_large bad_content_type bad_requests);
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--body', '{"MotorVehicleListObject": {');
is($a->{status} . ' ' . $a->{body}{ResponseStatusObject}{StatusCode}, '400 7', 'malformed JSON: 400, StatusCode 7');
like($a->{body}{ResponseStatusObject}{StatusString}, qr/malformed JSON/, '... with the reason');
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--body', '{"Nothing": 1}');
is($a->{status}, 400, 'JSON that is no list object: 400');
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--body-hex', unpack('H*', '{"MotorVehicleListObject": {"MotorVehicleObject": [{"PlateNo": "') . 'c328ff' . unpack('H*', '"}]}}'));
is($a->{status} . ' ' . $a->{body}{ResponseStatusObject}{StatusString}, '400 the body is not valid UTF-8', 'a body with invalid UTF-8: 400 with the reason');
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--body-hex', unpack('H*', '{"MotorVehicleListObject": {"MotorVehicleObject": [{"PlateNo": "A') . '00' . unpack('H*', '"}]}}'));
is($a->{status} . ' ' . $a->{body}{ResponseStatusObject}{StatusString}, '400 the body contains a NUL byte', 'a body with a NUL byte: 400 with the reason');
($a) = client('raw', '--method', 'DELETE', '--path', '/VIID/Subscribes?IDList=%FF%FE', '--body', '');
is($a->{status} . ' ' . $a->{body}{ResponseStatusObject}{StatusString}, '400 the body is not valid UTF-8', 'an IDList with invalid UTF-8: 400 with the reason');
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--ctype', 'text/plain', '--body', '{}');
is($a->{status}, 415, 'wrong Content-Type: 415');
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--announce', 100 * 1024 * 1024);
is($a->{status}, 413, 'announced body over the limit: 413 before it is sent');
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--body-size', 5 * 1024 * 1024, '--ctype', 'application/json');
like($a->{status}, qr/^(413|closed)$/, 'a body over the limit: 413, or closed while it was being sent');
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--auth', 'none', '--body', '{}');
is($a->{status}, 401, 'no digest: 401');
($a) = client('raw', '--path', '/VIID/MotorVehicles', '--auth', 'forged', '--body', '{}');
is($a->{status}, 401, 'forged digest: 401');
like($a->{body}{ResponseStatusObject}{StatusString}, qr/digest does not match/, '... with the reason');
my @r = client('raw', '--path', '/VIID/System/Keepalive', '--auth', 'replay', '--body', qq{{"KeepaliveObject": {"DeviceID": "$client_id"}}});
is(join(' ', map { $_->{status} } @r), '200 401', 'a replayed nonce count: the first use 200, the replay 401');
# libmicrohttpd 0.9.75 alone (its nonce: a hash of the second, method and
# URI) forgets a nonce's counts on nc=00000000 (checked before the response)
# and on every new challenge for the same method and URI in the same second:
# a captured header was then accepted again, with another body.  The worker
# refuses nc 0 before libmicrohttpd sees it, and every digest accepted before.
my $refused_before = counter('stale_nonces') + counter('auth_failures');
my %attack;
for my $attack (qw(plain reset fresh401))
{
	($a) = client('replay', '--attack', $attack, '--serial', { plain => 970, reset => 972, fresh401 => 974 }->{$attack});
	$attack{$attack} = $a;
	is("$a->{first} $a->{replay}", '200 401', "replay ($attack): the first use 200, its header again with another body 401");
	like($a->{replay_reason}, qr/replayed digest|nonce count was used before/, "... with the reason ($attack)");
	is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_record WHERE object_id = '$a->{ids}[1]'"), '0',
		"... and the replayed body is not stored ($attack)");
}
is($attack{reset}{reset}, 401, 'nc=00000000 with a garbage response: 401');
like($attack{reset}{reset_reason}, qr/nc 00000000 is not a nonce count/, '... refused before libmicrohttpd, with the reason');
is($attack{fresh401}{fresh401}, 401, 'a fresh challenge for the same URI before the replay: 401');
note('the fresh challenge ' . ($attack{fresh401}{same_nonce} ? 'gave the same nonce (same second)' : 'gave another nonce'));
# each replay is counted: as replayed (libmicrohttpd accepted it again) or as a reused nonce count
cmp_ok(counter('stale_nonces') + counter('auth_failures'), '>=', $refused_before + 4, 'the replays and the nc=0 request counted');
for my $what (qw(nc0 nc7 nc9 nchex nocnonce longcnonce dupnc noqop))
{
	($a) = client('badauth', '--what', $what);
	is($a->{status}, 401, "a digest with a bad field ($what): 401");
	like($a->{body}{ResponseStatusObject}{StatusString}, qr/^digest Authorization: /, "... with the reason ($what)");
}
($a) = client('concurrent', '--clients', '8', '--rounds', '10');
is("$a->{ok} of $a->{of}", '80 of 80', '8 clients sharing a nonce, each with its counts out of order: every request accepted');
($a) = client('--as', '34020000002000000009', 'nobody', 'register');
is($a->{status}, 401, 'unknown client: 401');
($a) = client('raw', '--path', '/VIID/../../etc/passwd', '--body', '{}');
is($a->{status}, 404, 'path traversal: 404');
like($a->{body}{ResponseStatusObject}{StatusString}, qr/traversal/, '... named as such');
($a) = client('raw', '--path', '/VIID/Nothing', '--body', '{}');
is($a->{status} . ' ' . $a->{body}{ResponseStatusObject}{StatusString}, '404 unknown resource', 'unknown resource: 404');
($a) = client('raw', '--method', 'DELETE', '--path', '/VIID/MotorVehicles', '--body', '');
is($a->{status}, 405, 'a method the resource does not take: 405');
cmp_ok(counter('auth_failures'), '>=', $before{auth_failures} + 3, 'authentication failures counted');
cmp_ok(counter('not_found'), '>=', $before{not_found} + 2, 'unknown resources counted');
cmp_ok(counter('too_large'), '>=', $before{too_large} + 1, 'oversize bodies counted');
cmp_ok(counter('bad_content_type'), '>=', $before{bad_content_type} + 1, 'wrong Content-Type counted');
cmp_ok(counter('bad_requests'), '>=', $before{bad_requests} + 5, 'malformed requests (invalid UTF-8 and NUL bytes among them) counted');
client('--as', $client_id, 'wrong password', 'time', '--repeat', '20');
my $log = slurp_file($node->logfile);
like($log, qr/vms viid-server: authentication failure from 127\.0\.0\.1/, 'bad input logged');
my $auth_lines = () = $log =~ /vms viid-server: authentication failure/g;
cmp_ok($auth_lines, '<', counter('auth_failures'), 'logged rate-limited: a burst of 40 failures, fewer lines');

# request rate per client
$node->append_conf('postgresql.conf', "vms.viid_server_rate = 3\n");
$node->reload;
my $limited = 0;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	$limited = grep { $_->{status} == 429 } client('time', '--repeat', '20');
	last if $limited;
	usleep(100_000);
}
ok($limited > 0, 'over vms.viid_server_rate: 429');
cmp_ok(counter('rate_limited'), '>=', 1, 'rate limiting counted');

# the replay memory per client: at most what its rate lets it send within
# the nonce lifetime (rate 1: 303 digests), so one client cannot fill the
# table and lock the others out; another client is still served
$node->append_conf('postgresql.conf', "vms.viid_server_rate = 1\n");
$node->reload;
my $capped = 0;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	$capped = grep { $_->{status} == 429 && $json->encode($_->{body} // {}) =~ /within the nonce lifetime/ }
	  client('time', '--repeat', '400');
	last if $capped;
	usleep(100_000);
}
ok($capped > 0, 'a client over its share of the replay memory: 429');
($a) = client('--as', '34020000002000000002', 'pw2', 'time');
is($a->{status}, 200, '... and another client is served');
$node->append_conf('postgresql.conf', "vms.viid_server_rate = 10000\n");
$node->reload;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	last unless grep { $_->{status} == 429 } client('time', '--repeat', '20');
	usleep(100_000);
}

# slow clients: half a header, then nothing; vms.viid_server_timeout closes them
($a) = client('slowloris', '--connections', '50');
is($a->{closed}, 50, 'slow-loris connections closed by the server');
# a client trickling a header a byte at a time resets the idle timeout with
# every byte; the request deadline cuts it off, and others are served meanwhile
my $timeouts = counter('timeouts');
$node->append_conf('postgresql.conf', "vms.viid_server_request_timeout = 3\n");
$node->reload;
my ($trickle_out, $trickle_err) = ('', '');
my $trickler = IPC::Run::start(
	[ '/usr/bin/python3', "$root/test/peers/viid_client.py", '--port', $port, '--user', $client_id, '--password', $password,
		'trickle', '--every', '0.25', '--pad', '400' ],
	'>', \$trickle_out, '2>', \$trickle_err);
($a) = client('time');
is($a->{status}, 200, 'while a client trickles a header, another is served');
$trickler->finish;
($a) = map { $json->decode($_) } grep { /^\{/ } split /\n/, $trickle_out;
ok($a->{closed} && $a->{sent} < $a->{of}, "the trickling client was cut off before its header was all sent ($a->{sent} of $a->{of} bytes, $a->{seconds} s)");
wait_ok($node, "SELECT (counters ->> 'timeouts')::bigint > $timeouts FROM vms.worker_status WHERE name = 'viid-server'",
	'counted as a timeout');

# ten thousand connections at once: the limit refuses the excess, the server keeps serving
my $conns = counter('connections');
($a) = client('flood', '--connections', '10000');
cmp_ok($a->{opened}, '>=', 1000, "flood: $a->{opened} connections opened at once");
cmp_ok(counter('connections') - $conns, '>=', 200, 'the server took them up to its limit');
is($a->{status}, 200, 'an authenticated request right after the flood is answered');
is($node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'viid-server'"), $pid,
	'the worker survived all bad input (same process)');

# ---------------------------------------------------------------- TLS
# a self-signed certificate (OpenSSL): with vms.viid_server_tls_cert and
# _key the server speaks HTTPS only, verified by the client against it
my ($cert, $tkey) = ("$tmp/server.crt", "$tmp/server.key");
IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
		'-keyout', $tkey, '-out', $cert ], '>', '/dev/null', '2>', '/dev/null')
  or die 'openssl req failed';
$node->append_conf('postgresql.conf', "vms.viid_server_tls_cert = '$cert'\nvms.viid_server_tls_key = '$tkey'\n");
$node->reload;
wait_ok($node, "SELECT state = 'listening (HTTPS)' FROM vms.worker_status WHERE name = 'viid-server'",
	'with a certificate and key the server listens for HTTPS');
($a) = client('--tls', '--tls-ca', $cert, 'time');
is($a->{status}, 200, 'digest over HTTPS, the server verified against its certificate');
($a) = client('--tls', '--tls-ca', $cert, 'post', 'Faces', '--count', '1', '--serial', '950');
is(codes($a), '0', 'records over HTTPS');
my ($plain_out, $plain_err) = ('', '');
IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', "http://127.0.0.1:$port/VIID/System/Time" ],
	'>', \$plain_out, '2>', \$plain_err);
isnt($plain_out, '200', 'plain HTTP is not answered on the HTTPS port');
$node->append_conf('postgresql.conf', "vms.viid_server_tls_cert = ''\nvms.viid_server_tls_key = ''\n");
$node->reload;
wait_ok($node, "SELECT state = 'listening' FROM vms.worker_status WHERE name = 'viid-server'",
	'back to plain HTTP');
wait_known();

# ---------------------------------------------------------------- ALTER EXTENSION
# while the extension is being changed the worker runs no SQL: it keeps
# listening and answers 503 (nothing stored), then carries on
my $bg = $node->background_psql('postgres');
$bg->query_safe('SET client_min_messages = warning');
$bg->query_safe('BEGIN');
$bg->query_safe('ALTER EXTENSION vms UPDATE');
wait_ok($node, "SELECT state LIKE 'waiting for ALTER or DROP EXTENSION%' FROM vms.worker_status WHERE name = 'viid-server'",
	'the worker waits while ALTER EXTENSION holds the extension');
($a) = client('post', 'Persons', '--count', '1', '--serial', '960');
is($a->{status}, 503, 'records meanwhile: 503');
like($a->{body}{ResponseStatusObject}{StatusString}, qr/send it again/, '... with the reason');
$bg->query_safe('COMMIT');
$bg->quit;
wait_ok($node, "SELECT state = 'listening' FROM vms.worker_status WHERE name = 'viid-server'",
	'listening again after the commit');
($a) = client('post', 'Persons', '--count', '1', '--serial', '960');
is(codes($a), '0', 'the record sent again is stored');

# ---------------------------------------------------------------- cancel during an ingest
# pg_cancel_backend on the worker while requests are in flight (perhaps
# inside libmicrohttpd's callbacks): the round ends, the worker carries on,
# every request is answered and every record stored once.  Enough records
# that the ingest is still under way at every cancel: with 1000 the worker,
# now faster, sometimes finished before the first one was sent.
my $cn = 5000;
my $acked_c = "$tmp/acked_cancel";
my ($cout, $cerr) = ('', '');
my $cingest = IPC::Run::start(
	[ '/usr/bin/python3', "$root/test/peers/viid_client.py", '--port', $port, '--at', $at, '--user', $client_id,
		'--password', $password, '--device', '34020000001320000003', 'ingest', '--count', $cn, '--batch', '20',
		'--image-bytes', '1024', '--acked', $acked_c ],
	'>', \$cout, '2>', \$cerr);
my $clines = sub { open(my $fh, '<', $acked_c) or return 0; my @l = <$fh>; close $fh; return scalar @l; };
my $cpid = $node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'viid-server'");
my $cancels = 0;
# the first cancel once the ingest has begun (its first answer)
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	last if $clines->() >= 1;
	usleep(50_000);
}
for my $round (1 .. 5)
{
	my $before_cancel = $clines->();
	last if $before_cancel >= $cn;
	$cancels++ if $node->safe_psql('postgres', "SELECT pg_cancel_backend($cpid)") eq 't';
	# the ingest goes on after the cancel
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		last if $clines->() >= $before_cancel + 40 || $clines->() >= $cn;
		usleep(50_000);
	}
}
$cingest->finish or diag("ingest with cancels: $cerr");
cmp_ok($cancels, '>=', 1, "the worker was cancelled during the ingest ($cancels times)");
like($cout, qr/"sent": $cn\b/, "the client sent all $cn records despite the cancels");
my %cack;
open(my $cfh, '<', $acked_c) or die;
while (<$cfh>) { chomp; $cack{$_} = 1; }
close $cfh;
is(scalar(keys %cack), $cn, 'every record acknowledged');
is($node->safe_psql('postgres', "SELECT count(*) || ' ' || count(DISTINCT object_id) FROM vms.viid_record WHERE device_id = '34020000001320000003'"),
	"$cn $cn", 'every record stored once');
is($node->safe_psql('postgres', "SELECT pid FROM vms.worker_status WHERE name = 'viid-server'"), $cpid,
	'the worker survived the cancels (same process)');

# ---------------------------------------------------------------- crash during an ingest
my $acked = "$tmp/acked";
my ($iout, $ierr) = ('', '');
my $ingest = IPC::Run::start(
	[ '/usr/bin/python3', "$root/test/peers/viid_client.py", '--port', $port, '--at', $at, '--user', $client_id,
		'--password', $password, '--device', '34020000001320000002', 'ingest', '--count', '3000', '--batch', '50',
		'--image-bytes', '4096', '--acked', $acked ],
	'>', \$iout, '2>', \$ierr);
my $lines = sub { open(my $fh, '<', $acked) or return 0; my @l = <$fh>; close $fh; return scalar @l; };
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	last if $lines->() >= 300;
	usleep(50_000);
}
cmp_ok($lines->(), '>=', 300, 'ingest under way');
$node->stop('immediate');
my $at_crash = $lines->();
$node->start;
$ingest->finish or diag("ingest: $ierr");
like($iout, qr/"sent": 3000/, 'the client sent all 3000 records');
like($iout, qr/"retries": [1-9]/, 'and had to send some again');
cmp_ok($at_crash, '<', 3000, "the crash came during the ingest ($at_crash acknowledged before it)");
my %ack;
open(my $fh, '<', $acked) or die;
while (<$fh>) { chomp; $ack{$_} = 1; }
close $fh;
is(scalar(keys %ack), 3000, 'every record acknowledged in the end');
$node->safe_psql('postgres', "CREATE TABLE acked (id text)");
$node->safe_psql('postgres', "COPY acked FROM '$acked'");
is($node->safe_psql('postgres', "SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT FROM vms.viid_record r WHERE r.object_id = a.id)"),
	'0', 'every acknowledged record is stored');
is($node->safe_psql('postgres', "SELECT count(*) || ' ' || count(DISTINCT object_id) FROM vms.viid_record WHERE device_id = '34020000001320000002'"),
	'3000 3000', 'every record stored once');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_image WHERE object_id LIKE '34020000001320000002%'"),
	'3000', 'with its image, once');

# an acknowledged record survives a crash even with synchronous_commit = off
# on the server: the worker flushes its batch's commit itself.  With the
# walwriter woken only every 10 s, an asynchronous commit would still be in
# the WAL buffers when the server is killed right after the answer.
$node->append_conf('postgresql.conf', "synchronous_commit = off\nwal_writer_delay = 10000ms\n");
$node->restart;
wait_ok($node, "SELECT state = 'listening' FROM vms.worker_status WHERE name = 'viid-server'",
	'the server listens again with synchronous_commit = off');
($a) = client('post', 'Persons', '--count', '1', '--serial', '950');
is(codes($a), '0', 'a record acknowledged with synchronous_commit = off');
my $async_id = $a->{body}{ResponseStatusListObject}{ResponseStatusObject}[0]{Id};
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_record WHERE object_id = '$async_id'"), '1',
	'and it is stored after a crash right after its answer');
$node->append_conf('postgresql.conf', "synchronous_commit = on\nwal_writer_delay = 200ms\n");
$node->reload;
wait_ok($node, "SELECT state = 'listening' FROM vms.worker_status WHERE name = 'viid-server'",
	'the server listens after the crash');

# ---------------------------------------------------------------- unregister, retention
($a) = client('unregister');
is($a->{body}{ResponseStatusObject}{StatusCode}, '0', 'unregister: StatusCode 0');
is($node->safe_psql('postgres', "SELECT state || ' ' || online FROM vms.viid_client_status WHERE client_id = '$client_id'"),
	'unregistered false', 'the client is shown offline');
($a) = client('post', 'Faces', '--count', '1', '--serial', '900');
is($a->{status}, 401, 'records from an unregistered client: 401');
$node->safe_psql('postgres', "UPDATE vms.viid_record_retention SET keep_days = 1, image_days = 1 WHERE kind = 'Face'");
$node->safe_psql('postgres', "SELECT vms._viid_record_partition(now() - interval '3 days')");
$node->safe_psql('postgres', "UPDATE vms.viid_record SET captured_at = captured_at - interval '3 days' WHERE kind = 'Face'");
is($node->safe_psql('postgres', "SELECT vms.viid_record_prune() >= 2"), 't', 'retention per kind prunes old records');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_record WHERE kind = 'Face'"), '0', 'old faces gone');
is($node->safe_psql('postgres', "SELECT count(*) FROM vms.viid_record WHERE kind = 'MotorVehicle' AND client_id = '$client_id'"),
	4022 - 1000 + $cn, 'other kinds kept (with the forwarded, the notified, the out-of-scope, the broken-scope, the one-by-one ones and the replay tests\' first records)');

$node->stop;
done_testing();
