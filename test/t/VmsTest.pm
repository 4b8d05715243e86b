# Shared set-up for the TAP tests in test/t (prove runs with -I test/t).
#
#   my $node = vms_node('sip', 'vms.sip_port' => $port, 'vms.sip_keepalive_count' => 2);
#
# makes a PostgreSQL::Test::Cluster, writes shared_preload_libraries = 'vms',
# vms.database = 'postgres' and the given settings (in the order given) into
# postgresql.conf, starts it and runs CREATE EXTENSION vms CASCADE.  An options
# hash ref may come first among the settings:
#   { extension => 0 }             no CREATE EXTENSION (the test does its own)
#   { extension => 'SQL' }         run this instead of CREATE EXTENSION vms CASCADE
#   { database => 0 }              no vms.database line
#   { init => [ %init_args ] }     arguments for $node->init
#   { secret_key => 1 }            a random 32-byte key in <data_dir>/vms_secret.key (mode 0600),
#                                  named by vms.secret_key_file
#
# wait_ok($node, $sql, $name [, $expected]) is a poll_query_until whose result
# is a test; wait_or_die($node, $sql, $msg) dies with $msg when it times out.
package VmsTest;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(vms_node wait_ok wait_or_die sip_running gbsim_path gbsim_cmd $SIP_SERVER_ID $SIP_REALM);

# the SIP server code and realm every SIP test uses
our $SIP_SERVER_ID = '34020000002000000001';
our $SIP_REALM = '3402000000';

sub vms_node
{
	my ($name, @settings) = @_;
	my %opt = (ref $settings[0] eq 'HASH') ? %{ shift @settings } : ();
	die 'vms_node: settings come in name => value pairs' if @settings % 2;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(@{ $opt{init} // [] });
	my $conf = "shared_preload_libraries = 'vms'\n";
	$conf .= "vms.database = 'postgres'\n" unless exists $opt{database} && !$opt{database};
	if ($opt{secret_key})
	{
		my $key = $node->data_dir . '/vms_secret.key';
		open(my $kf, '>:raw', $key) or die "$key: $!";
		print $kf join('', map { chr(int(rand(256))) } 1 .. 32);
		close $kf;
		chmod 0600, $key;
		$conf .= "vms.secret_key_file = '$key'\n";
	}
	while (my ($k, $v) = splice(@settings, 0, 2))
	{
		(my $q = $v) =~ s/'/''/g;
		$conf .= "$k = '$q'\n";
	}
	$node->append_conf('postgresql.conf', $conf);
	$node->start;
	my $ext = exists $opt{extension} ? $opt{extension} : 'CREATE EXTENSION vms CASCADE';
	$node->safe_psql('postgres', $ext) if $ext;
	return $node;
}

sub wait_ok
{
	my ($node, $sql, $name, @expected) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;    # a failure names the test file's line
	return ok($node->poll_query_until('postgres', $sql, @expected), $name);
}

sub wait_or_die
{
	my ($node, $sql, $msg) = @_;
	$node->poll_query_until('postgres', $sql) or die $msg;
	return 1;
}

# the SIP worker's row says running (dies otherwise)
sub sip_running
{
	my ($node) = @_;
	return wait_or_die($node, "SELECT state = 'running' FROM vms.worker_status WHERE name = 'sip'",
		'sip worker not running');
}

# test/sim/gbsim, bailing out when it is not built
sub gbsim_path
{
	my $root = $ENV{VMS_ROOT} or die "VMS_ROOT not set";
	my $gbsim = "$root/test/sim/gbsim";
	-x $gbsim or BAIL_OUT("build test/sim/gbsim first (make -C test/sim)");
	return $gbsim;
}

# the gbsim command line against our SIP server on $port
sub gbsim_cmd
{
	my ($port, @args) = @_;
	return [ gbsim_path(), '--server', "127.0.0.1:$port", '--server-id', $SIP_SERVER_ID, '--domain', $SIP_REALM, @args ];
}

1;
