# The extension in a server that preloads vms: install, import a template
# file in UTF-8 and GB18030 with a bad row, privileges, and durability of the
# ledger and its history across an immediate restart.
use strict;
use warnings;
use utf8;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VmsTest;
use Encode qw(encode decode);

my $node = vms_node('ledger', { database => 0 });

# psql answers in UTF-8 bytes; compare as text
sub sql_text { return decode('UTF-8', $node->safe_psql('postgres', $_[0])); }

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), 'vms', 'vms preloaded');
# the default version named in vms.control
my ($control_version) = `cat $ENV{VMS_ROOT}/vms.control` =~ /^default_version = '([^']+)'/m;
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'vms'"),
	$control_version, 'extension installed with postgis at the default version');

my $csv = "监控点编码,监控点名称,设备编码,经度,纬度,坐标系\n"
  . "11010500001320000001,建国路东向西-001,11010500001180000001,116.46,39.91,GCJ02\n"
  . "11010500001320000002,建国路西向东-002,11010500001180000001,116.47,39.91,BD09\n"
  . "11010500001320000003,坏经度,11010500001180000001,361,39.91,WGS84\n";
my $dir = PostgreSQL::Test::Utils::tempdir;
# cp936 (GBK) text is valid GB18030; Perl's core Encode has no GB18030 table
for my $enc ('UTF-8', 'cp936')
{
	open(my $fh, '>:raw', "$dir/ledger-$enc.csv") or die;
	print $fh ($enc eq 'UTF-8' ? "\xEF\xBB\xBF" : '') . encode($enc, $csv);
	close $fh;
	my $res = $node->safe_psql('postgres',
		"SELECT total_rows, loaded_rows, rejected_rows FROM vms.ledger_import_file('$dir/ledger-$enc.csv')");
	is($res, '3|2|1', "$enc file: two rows loaded, one rejected");
}
is(sql_text("SELECT string_agg(DISTINCT array_to_string(reasons, ';'), ',') FROM vms.import_rejection"),
	'longitude "361" is not a number in [-180, 180]', 'rejection reason kept per row');
is(sql_text("SELECT name FROM vms.channel WHERE code = '11010500001320000001'"),
	'建国路东向西-001', 'GB18030 and UTF-8 read the same text');

# reading server files is a privilege, as with COPY FROM a file
$node->safe_psql('postgres', 'CREATE ROLE clerk LOGIN; GRANT USAGE ON SCHEMA vms TO clerk; GRANT SELECT, INSERT ON vms.import_job TO clerk; GRANT USAGE ON ALL SEQUENCES IN SCHEMA vms TO clerk');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT vms.ledger_import_file('$dir/ledger-UTF-8.csv')", extra_params => [ '-U', 'clerk' ]);
isnt($rc, 0, 'non-privileged role cannot read server files');
like($err, qr/permission denied to read server file/, 'clear privilege error');

# export through COPY TO STDOUT, as a client would do
my $export = sql_text(
	"COPY (SELECT * FROM vms.ledger_export ORDER BY 1) TO STDOUT WITH (FORMAT csv, HEADER)");
like($export, qr/^监控点编码,监控点名称,设备编码/, 'export header is the template');
like($export, qr/11010500001320000002,建国路西向东-002/, 'exported rows');

# the ledger and its history survive a crash restart
$node->safe_psql('postgres', "UPDATE vms.channel SET azimuth = 90 WHERE code = '11010500001320000001'");
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', "SELECT azimuth FROM vms.channel WHERE code = '11010500001320000001'"),
	'90', 'committed update kept after immediate restart');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM vms.ledger_history WHERE code = '11010500001320000001'"),
	'2', 'history: the insert and the update; the identical re-import recorded nothing');

$node->stop;
done_testing();
